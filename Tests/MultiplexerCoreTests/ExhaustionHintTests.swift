import MultiplexerCore
import Testing

/// A provider's own view of its limits, read from a 2xx's headers (ARCHITECTURE §3 step 6).
struct ExhaustionHintTests {
    /// 2023-11-14T22:13:20Z.
    static let now = 1_700_000_000.0
    static let provider = Provider(name: "p", baseURL: "http://127.0.0.1:9", model: "m", cooldown: .seconds(60), defaultMaxTokens: 1024)

    static func hint(_ headers: UpstreamHeaders) -> Duration? {
        ExhaustionHint.cooldown(from: headers, provider: Self.provider, nowEpochSeconds: Self.now)
    }

    // MARK: OpenAI dialect

    @Test(arguments: [
        ("20s", Duration.seconds(20)), ("1m30s", .seconds(90)), ("250ms", .milliseconds(250)), ("6m0s", .seconds(360)), ("2", .seconds(2)),
        ("1h2m3s", .seconds(3723)),
    ])
    func openAINoRequestsLeftCoolsDownUntilTheRequestsReset(_ reset: String, _ expected: Duration) {
        let h: UpstreamHeaders = ["x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": reset, "x-ratelimit-reset-tokens": "9m"]
        #expect(Self.hint(h) == expected)
    }

    @Test func openAITokensBelowTheReservationCoolDownUntilTheTokensReset() {
        let h: UpstreamHeaders = [
            "X-RateLimit-Remaining-Requests": "12", "X-RateLimit-Remaining-Tokens": "1023", "X-RateLimit-Reset-Requests": "1s",
            "X-RateLimit-Reset-Tokens": "6m0s",
        ]
        #expect(Self.hint(h) == .seconds(360))
    }

    @Test func enoughLeftAnnouncesNothing() {
        #expect(Self.hint(["x-ratelimit-remaining-requests": "1", "x-ratelimit-remaining-tokens": "1024", "x-ratelimit-reset-requests": "20s"]) == nil)
        #expect(Self.hint(["anthropic-ratelimit-requests-remaining": "3", "anthropic-ratelimit-tokens-remaining": "50000"]) == nil)
        #expect(Self.hint([:]) == nil)
    }

    @Test func bothExhaustedTakesTheLaterReset() {
        let h: UpstreamHeaders = [
            "x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-requests": "2s",
            "x-ratelimit-reset-tokens": "45s",
        ]
        #expect(Self.hint(h) == .seconds(45))
    }

    // MARK: Anthropic dialect

    @Test(arguments: [
        ("2023-11-14T22:13:50Z", Duration.seconds(30)), ("2023-11-14t22:14:20z", .seconds(60)), ("2023-11-14T23:13:50+01:00", .seconds(30)),
        ("2023-11-14T21:13:50-01:00", .seconds(30)), ("2023-11-14T22:13:20.5Z", .milliseconds(500)),
        ("2023-11-14 22:13:25Z", .seconds(5)),
    ])
    func anthropicNoRequestsLeftCoolsDownUntilTheRFC3339Reset(_ reset: String, _ expected: Duration) {
        let h: UpstreamHeaders = ["anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": reset]
        #expect(Self.hint(h) == expected)
    }

    @Test func anthropicTokensBelowTheReservationCoolDownUntilTheTokensReset() {
        let h: UpstreamHeaders = [
            "anthropic-ratelimit-requests-remaining": "40", "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:21Z",
            "anthropic-ratelimit-tokens-remaining": "100", "anthropic-ratelimit-tokens-reset": "2023-11-14T22:15:20Z",
        ]
        #expect(Self.hint(h) == .seconds(120))
    }

    @Test func aResetAlreadyPastParksTheProviderOnlyBriefly() {
        let h: UpstreamHeaders = ["anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "2023-11-14T22:00:00Z"]
        #expect(Self.hint(h) == RetryHint.minimum)
    }

    // MARK: Malformed and missing values

    @Test(arguments: ["", "-1", "0.0", "zero", " 0x", "1e3", "00 0", "99999999999999999999999"])
    func aMalformedRemainingCountDoesNothing(_ remaining: String) {
        #expect(Self.hint(["x-ratelimit-remaining-requests": remaining, "x-ratelimit-reset-requests": "20s"]) == nil)
        #expect(Self.hint(["x-ratelimit-remaining-tokens": remaining, "x-ratelimit-reset-tokens": "20s"]) == nil)
        #expect(Self.hint(["anthropic-ratelimit-requests-remaining": remaining, "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:50Z"]) == nil)
    }

    @Test(arguments: [nil, "", "soon", "20 parsecs", "-5s", "2023-11-14T22:13:50Z"] as [String?])
    func aMissingOrMalformedOpenAIResetFallsBackToTheProvidersCooldown(_ reset: String?) {
        var h: UpstreamHeaders = ["x-ratelimit-remaining-requests": "0"]
        if let reset { h.add(name: "x-ratelimit-reset-requests", value: reset) }
        #expect(Self.hint(h) == .seconds(60))
    }

    @Test(arguments: [nil, "", "tomorrow", "2023-11-14T22:13:50", "2023-13-14T22:13:50Z", "2023-11-14T22:13:50+0100", "20s", "Tue, 14 Nov 2023 22:13:50 GMT"]
        as [String?])
    func aMissingOrMalformedAnthropicResetFallsBackToTheProvidersCooldown(_ reset: String?) {
        var h: UpstreamHeaders = ["anthropic-ratelimit-tokens-remaining": "0"]
        if let reset { h.add(name: "anthropic-ratelimit-tokens-reset", value: reset) }
        #expect(Self.hint(h) == .seconds(60))
    }

    @Test func anAbsurdResetIsCappedAtADay() {
        #expect(Self.hint(["x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "900h"]) == RetryHint.maximum)
    }
}
