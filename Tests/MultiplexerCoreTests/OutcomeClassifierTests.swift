import MultiplexerCore
import Testing

struct OutcomeClassifierTests {
    static let provider = Provider(name: "p", baseURL: "http://127.0.0.1:1", model: "m", cooldown: .seconds(60))

    static func classify(_ status: Int, _ headers: UpstreamHeaders = [:], code: String? = nil) -> Outcome {
        OutcomeClassifier.classify(status: status, headers: headers, errorCode: code, provider: Self.provider, nowEpochSeconds: 1_700_000_000)
    }

    @Test(arguments: [200, 201, 204, 299])
    func twoHundredsSucceed(_ status: Int) {
        #expect(Self.classify(status) == .success)
    }

    @Test(arguments: [429, 529])
    func rateLimitsCoolDownForTheProvidersDefaultWithoutAHint(_ status: Int) {
        #expect(Self.classify(status) == .rateLimited(cooldown: .seconds(60)))
        #expect(Self.classify(status, ["Retry-After": "7"]) == .rateLimited(cooldown: .seconds(7)))
    }

    @Test(arguments: [500, 502, 503, 504, 599])
    func serverErrorsAreRetryableFailures(_ status: Int) {
        #expect(Self.classify(status) == .failure(retryable: true))
        #expect(Self.classify(status).triesNext)
    }

    @Test func requestTimeoutIsAFailureButNotRetriedOnTheSameProvider() {
        #expect(Self.classify(408) == .failure(retryable: false))
    }

    @Test(arguments: [401, 403])
    func authFailuresMeanAMisconfiguredProvider(_ status: Int) {
        #expect(Self.classify(status) == .unauthorized(cooldown: .seconds(60)))
        #expect(Self.classify(status).triesNext)
    }

    @Test func contextLengthExceededMovesOnWithoutPenalty() {
        #expect(Self.classify(400, code: "context_length_exceeded") == .contextLengthExceeded)
        #expect(Self.classify(400, code: "context_length_exceeded").triesNext)
    }

    @Test(arguments: [(400, nil), (400, "content_policy_violation"), (404, "model_not_found"), (409, nil), (413, nil), (422, nil)] as [(Int, String?)])
    func otherClientErrorsAreReturnedAsIs(_ status: Int, _ code: String?) {
        #expect(Self.classify(status, code: code) == .clientError)
        #expect(!Self.classify(status, code: code).triesNext)
    }

    @Test func transportErrorsClassifyByKind() {
        for kind in UpstreamError.Kind.allCases {
            let o = OutcomeClassifier.classify(UpstreamError(kind))
            switch kind {
            case .cancelled: #expect(o == .cancelled)
            case .connectionReset: #expect(o == .failure(retryable: true))
            default: #expect(o == .failure(retryable: false), "\(kind)")
            }
        }
        #expect(UpstreamError(.firstTokenTimeout).isTimeout && !UpstreamError(.connectionReset).isTimeout)
    }
}

struct RetryHintTests {
    static let now: Double = 784_111_777  // Sun, 06 Nov 1994 08:49:37 GMT

    static func hint(_ h: UpstreamHeaders) -> Duration? { RetryHint.cooldown(from: h, nowEpochSeconds: Self.now) }

    @Test func retryAfterDeltaSeconds() {
        #expect(Self.hint(["Retry-After": "2"]) == .seconds(2))
        #expect(Self.hint(["retry-after": " 1.5 "]) == .milliseconds(1500))
        #expect(Self.hint(["RETRY-AFTER": "0"]) == RetryHint.minimum)
    }

    @Test(arguments: [
        "Sun, 06 Nov 1994 08:50:07 GMT",  // IMF-fixdate
        "Sunday, 06-Nov-94 08:50:07 GMT",  // RFC 850
        "Sun Nov  6 08:50:07 1994",  // asctime
    ])
    func retryAfterHTTPDates(_ date: String) {
        #expect(Self.hint(["Retry-After": date]) == .seconds(30))
    }

    @Test func aDateInThePastGivesTheMinimum() {
        #expect(Self.hint(["Retry-After": "Sun, 06 Nov 1994 08:00:00 GMT"]) == RetryHint.minimum)
    }

    @Test func millisecondHeadersWinOverSeconds() {
        #expect(Self.hint(["retry-after-ms": "250", "Retry-After": "9"]) == .milliseconds(250))
        #expect(Self.hint(["x-ms-retry-after-ms": "1200"]) == .milliseconds(1200))
    }

    @Test(arguments: [("1m30s", 90_000), ("250ms", 250), ("6s", 6000), ("0.5s", 500), ("2h3m", 7_380_000), ("1m0.5s", 60_500), ("17", 17_000)] as [(String, Int64)])
    func openAIResetForms(_ value: String, _ ms: Int64) {
        #expect(Self.hint(["x-ratelimit-reset-requests": value]) == .milliseconds(ms))
    }

    @Test func theLaterOfTheTwoResetsCounts() {
        #expect(Self.hint(["x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "1m"]) == .seconds(60))
    }

    @Test(arguments: ["soon", "-5", "", "1.2.3", "Mon, 99 Foo 2020 10:00:00 GMT", "5x", "ms", "1m30", "NaN", "Infinity", "1e9"])
    func malformedValuesFallBackSafely(_ bad: String) {
        #expect(Self.hint(["Retry-After": bad]) == nil)
        #expect(Self.hint(["retry-after-ms": bad]) == nil)
        #expect(Self.hint(["x-ratelimit-reset-tokens": bad]) == nil)
        // A malformed precise header falls through to the next usable one.
        #expect(Self.hint(["retry-after-ms": bad, "Retry-After": "3"]) == .seconds(3))
        let p = Provider(name: "p", baseURL: "x", model: "m", cooldown: .seconds(42))
        #expect(OutcomeClassifier.classify(status: 429, headers: ["Retry-After": bad], errorCode: nil, provider: p, nowEpochSeconds: 0)
            == .rateLimited(cooldown: .seconds(42)))
    }

    @Test func absurdHintsAreCappedAtADay() {
        #expect(Self.hint(["Retry-After": "99999999"]) == RetryHint.maximum)
    }
}
