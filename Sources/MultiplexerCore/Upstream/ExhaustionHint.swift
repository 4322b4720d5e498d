/// Reads a provider's own view of its limits from the headers of a 2xx answer (ARCHITECTURE §3 step 6,
/// "The provider's own view"): when it says that no requests remain, or fewer tokens than a request of
/// this gateway reserves, the provider is cooled down until its announced reset (reason
/// ``CooldownReason/exhausted``), so the next request goes elsewhere instead of collecting a 429.
///
/// Two dialects are read:
/// - OpenAI (and most OpenAI-compatible providers): `x-ratelimit-remaining-requests` /
///   `x-ratelimit-remaining-tokens`, reset by `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens`
///   as a duration (`20s`, `1m30s`, `250ms`, `6m0s`, or plain seconds).
/// - Anthropic: `anthropic-ratelimit-requests-remaining` / `anthropic-ratelimit-tokens-remaining`, reset by
///   `anthropic-ratelimit-requests-reset` / `anthropic-ratelimit-tokens-reset` as an RFC 3339 time
///   (`2026-12-02T10:15:30Z`).
///
/// The rules:
/// - Requests are exhausted when their remaining count is `0`; tokens when their remaining count is below
///   the provider's `default_max_tokens` (what the gateway reserves for a request that sets no
///   `max_tokens`).
/// - A remaining count that is missing or not a non-negative integer says nothing: no cooldown.
/// - The cooldown lasts until the matching reset. A reset that is missing or malformed while its remaining
///   count says "exhausted" falls back to the provider's `cooldown_seconds` (the same fallback as a 429
///   without a hint): the provider did say it is out, it only did not say for how long.
/// - When several limits are exhausted, the latest reset wins. The result is clamped like every hint
///   (``RetryHint/minimum`` … ``RetryHint/maximum``): a reset already past parks the provider briefly.
public enum ExhaustionHint {
    /// How long `provider` should cool down after a 2xx with these headers, or `nil` when the headers do
    /// not announce exhaustion (the usual case).
    ///
    /// - Parameters:
    ///   - headers: the 2xx response's headers.
    ///   - provider: the provider that answered (its `defaultMaxTokens` and fallback `cooldown`).
    ///   - nowEpochSeconds: the wall-clock time, for Anthropic's absolute reset times.
    public static func cooldown(from headers: UpstreamHeaders, provider: Provider, nowEpochSeconds: Double) -> Duration? {
        var longest: Double?
        func exhausted(for seconds: Double?) {
            let s = seconds ?? provider.cooldown.seconds
            longest = max(longest ?? s, s)
        }
        // OpenAI: relative durations.
        if let n = remaining(headers["x-ratelimit-remaining-requests"]), n == 0 {
            exhausted(for: headers["x-ratelimit-reset-requests"].flatMap(RetryHint.parseResetDuration))
        }
        if let n = remaining(headers["x-ratelimit-remaining-tokens"]), n < provider.defaultMaxTokens {
            exhausted(for: headers["x-ratelimit-reset-tokens"].flatMap(RetryHint.parseResetDuration))
        }
        // Anthropic: absolute times.
        func until(_ name: String) -> Double? {
            headers[name].flatMap(RFC3339Date.parse).map { $0 - nowEpochSeconds }
        }
        if let n = remaining(headers["anthropic-ratelimit-requests-remaining"]), n == 0 {
            exhausted(for: until("anthropic-ratelimit-requests-reset"))
        }
        if let n = remaining(headers["anthropic-ratelimit-tokens-remaining"]), n < provider.defaultMaxTokens {
            exhausted(for: until("anthropic-ratelimit-tokens-reset"))
        }
        return longest.map(RetryHint.clamp)
    }

    /// A non-negative decimal integer (`"0"`, `"149984"`); `nil` for anything else (signs, fractions, blanks).
    static func remaining(_ value: String?) -> Int? {
        guard let v = value, !v.isEmpty, v.utf8.count <= 18, v.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(v)
    }
}

/// Parses RFC 3339 date-times (`2026-12-02T10:15:30Z`, `2026-12-02T10:15:30.250+01:00`); `T`/`Z` may be in
/// lower case and the `T` may be a blank (RFC 3339 §5.6 note).
enum RFC3339Date {
    /// Seconds since the Unix epoch, or `nil` when `s` is not such a time.
    static func parse(_ s: String) -> Double? {
        let b = Array(s.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in i..<(i + n) {
                guard b[k] >= 48 && b[k] <= 57 else { return nil }
                v = v * 10 + Int(b[k] - 48)
            }
            i += n
            return v
        }
        func expect(_ c: UInt8...) -> Bool {
            guard i < b.count, c.contains(b[i]) else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(UInt8(ascii: "-")), let month = digits(2), expect(UInt8(ascii: "-")), let day = digits(2),
            expect(UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")), let hour = digits(2), expect(UInt8(ascii: ":")),
            let minute = digits(2), expect(UInt8(ascii: ":")), let second = digits(2)
        else { return nil }
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60 else { return nil }
        var fraction = 0.0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 48 && b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
        }
        var offset = 0
        if expect(UInt8(ascii: "Z"), UInt8(ascii: "z")) {
            offset = 0
        } else if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = digits(2), expect(UInt8(ascii: ":")), let om = digits(2), oh < 24, om < 60 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = HTTPDate.daysFromCivil(year, month, day)
        return Double(days * 86_400 + hour * 3600 + minute * 60 + second - offset) + fraction
    }
}
