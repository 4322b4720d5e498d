import Foundation
import HTTPTypes
import Hummingbird
import MultiplexerCore
import NIOCore

extension MockProvider {
    /// Whose rate-limit headers and 429s the mock imitates.
    ///
    /// | dialect | on every answer | on a 429 |
    /// |---|---|---|
    /// | `openai` | `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as `1m30s` / `20s` / `250ms` | `Retry-After` (seconds), `{"error":{"message","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}` |
    /// | `anthropic` | `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, resets as RFC 3339 times | `retry-after` (seconds), `{"type":"error","error":{"type":"rate_limit_error","message"}}` |
    /// | `azure` | `x-ratelimit-{limit,remaining}-{requests,tokens}` (no reset) | `retry-after`, `retry-after-ms`, `x-ms-retry-after-ms`, `{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation …"}}` |
    ///
    /// A limit the mock does not have is not announced.
    public enum Dialect: String, Sendable, CaseIterable {
        case openai
        case anthropic
        case azure
    }
}

extension MockProvider.Dialect {
    /// The rate-limit headers of `snapshot`, at wall-clock time `now` (Anthropic's resets are times).
    func rateLimitHeaders(_ snapshot: RateLimitSnapshot, now: Date = Date()) -> HTTPFields {
        var h = HTTPFields()
        func set(_ name: String, _ value: String) { h[HTTPField.Name(name)!] = value }
        for (kind, limit) in [("requests", snapshot.requests), ("tokens", snapshot.tokens)] {
            guard let limit else { continue }
            switch self {
            case .openai:
                set("x-ratelimit-limit-\(kind)", String(limit.limit))
                set("x-ratelimit-remaining-\(kind)", String(limit.remaining))
                set("x-ratelimit-reset-\(kind)", Self.openAIDuration(limit.reset))
            case .anthropic:
                set("anthropic-ratelimit-\(kind)-limit", String(limit.limit))
                set("anthropic-ratelimit-\(kind)-remaining", String(limit.remaining))
                set("anthropic-ratelimit-\(kind)-reset", Self.rfc3339(now.addingTimeInterval(limit.reset.seconds)))
            case .azure:
                set("x-ratelimit-limit-\(kind)", String(limit.limit))
                set("x-ratelimit-remaining-\(kind)", String(limit.remaining))
            }
        }
        return h
    }

    /// A 429 asking the client to wait `wait`, with the rate-limit headers of `snapshot`.
    func rateLimited(wait: Duration, snapshot: RateLimitSnapshot, message: String) -> Response {
        var h = self.rateLimitHeaders(snapshot)
        let seconds = max(1, Int(wait.seconds.rounded(.up)))
        h[.retryAfter] = String(seconds)
        let body: String
        switch self {
        case .openai:
            body = #"{"error":{"message":"\#(message)","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#
        case .anthropic:
            body = #"{"type":"error","error":{"type":"rate_limit_error","message":"\#(message)"}}"#
        case .azure:
            let ms = max(1, Int((wait.seconds * 1000).rounded(.up)))
            h[HTTPField.Name("retry-after-ms")!] = String(ms)
            h[HTTPField.Name("x-ms-retry-after-ms")!] = String(ms)
            body =
                #"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after \#(seconds) seconds. (\#(message))"}}"#
        }
        return MockProvider.json(.tooManyRequests, body, headers: h)
    }

    /// OpenAI's reset form: `250ms` below a second, else hours, minutes and seconds (`1m30s`, `20s`, `1h0m5.5s`).
    static func openAIDuration(_ d: Duration) -> String {
        let ms = max(0, Int((d.seconds * 1000).rounded(.up)))
        if ms < 1000 { return "\(ms)ms" }
        let h = ms / 3_600_000
        let m = ms / 60_000 % 60
        let s = ms % 60_000
        var out = ""
        if h > 0 { out += "\(h)h" }
        if h > 0 || m > 0 { out += "\(m)m" }
        out += s % 1000 == 0 ? "\(s / 1000)s" : String(format: "%.3f", Double(s) / 1000).replacingOccurrences(of: #"0+$"#, with: "", options: .regularExpression) + "s"
        return out
    }

    /// `2026-01-02T03:04:05Z` (UTC, whole seconds rounded up).
    static func rfc3339(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.up))
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour),
            Int(parts.tm_min), Int(parts.tm_sec))
    }
}
