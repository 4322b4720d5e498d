import Testing
import Tracing

@testable import MultiplexerCore

/// How attempts are labelled in spans and reported to the metrics.
struct AttemptTraceTests {
    @Test func outcomesMapToTheContractsLabels() {
        #expect(AttemptOutcome(.success, error: nil) == .success)
        #expect(AttemptOutcome(.rateLimited(cooldown: .seconds(1)), error: nil) == .rateLimited)
        #expect(AttemptOutcome(.failure(retryable: true), error: nil) == .failure)
        #expect(AttemptOutcome(.failure(retryable: false), error: .timeout) == .timeout)
        #expect(AttemptOutcome(.failure(retryable: false), error: .firstTokenTimeout) == .timeout)
        #expect(AttemptOutcome(.failure(retryable: false), error: .tlsFailure) == .failure)
        #expect(AttemptOutcome(.unauthorized(cooldown: .seconds(1)), error: nil) == .failure)
        #expect(AttemptOutcome(.contextLengthExceeded, error: nil) == .clientError)
        #expect(AttemptOutcome(.clientError, error: nil) == .clientError)
        #expect(AttemptOutcome(.cancelled, error: .cancelled) == .cancelled)
        #expect(AttemptOutcome.brokenStream.rawValue == "broken_stream")
    }

    @Test func serverAddressIsTheHostOnlyNeverUserInfoPathOrQuery() {
        #expect(AttemptTrace.host(of: "https://api.groq.com/openai/v1") == "api.groq.com")
        #expect(AttemptTrace.host(of: "https://user:sk-secret@proxy.example:8443/v1?key=sk-other") == "proxy.example")
        #expect(AttemptTrace.host(of: "http://[::1]:8000/v1") == "::1")
        #expect(AttemptTrace.host(of: "http://127.0.0.1:9000") == "127.0.0.1")
        #expect(AttemptTrace.host(of: "not a url") == nil)
    }

    /// A served stream's attempt is reported once, when its settlement says how it ended.
    @Test func aStreamsAttemptIsReportedOnceWithHowItEnded() {
        final class Seen: AttemptObserver, @unchecked Sendable {
            // Safety: written and read on the test's task only (the trace calls the observer synchronously).
            var ends: [AttemptEnd] = []
            func attemptEnded(_ record: AttemptRecord, _ ended: AttemptEnd) { self.ends.append(ended) }
        }
        let seen = Seen()
        let provider = Provider(name: "p", baseURL: "http://127.0.0.1:1/v1", apiKey: "sk-secret", model: "m")
        let trace = AttemptTrace(
            tracer: nil, parent: .topLevel, operation: "chat", provider: provider, tier: .primary, number: 1, key: "team", continued: false,
            observer: seen)
        #expect(trace.propagation.isEmpty, "no tracer: nothing to propagate")
        trace.responded(AttemptRecord(provider: "p", tier: .primary, outcome: .success, status: 200, error: nil, latency: .milliseconds(5)))
        trace.markFirstEvent()
        trace.end(settled: .broken(usage: TokenUsage(promptTokens: 3, completionTokens: 2)))
        trace.end(settled: .success(usage: nil))
        #expect(seen.ends.count == 1)
        #expect(seen.ends.first?.outcome == .brokenStream && seen.ends.first?.key == "team")
        #expect(seen.ends.first?.usage == TokenUsage(promptTokens: 3, completionTokens: 2))
        #expect(seen.ends.first?.timeToFirstToken != nil)
    }
}
