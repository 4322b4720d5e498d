import MultiplexerCore
import Testing

/// The router with real providers' habits: 2xx answers whose body is not one, and 2xx answers that say
/// the provider is out of quota (ARCHITECTURE §3 step 6).
struct RouterProviderViewTests {
    typealias F = RouterTests.Fixture

    /// `a` (almost always drawn first) and `b`.
    static func twoProviders() throws -> F {
        try F(providers: [RouterTests.p("a"), RouterTests.p("b")], group: ModelGroup(name: "g", primary: [RouterTests.w("a", 1_000_000), RouterTests.w("b", 1)]))
    }

    static func invalid(_ why: String = "the body has no 'choices' array") -> UpstreamResponse<String> {
        UpstreamResponse(status: 200, body: "<html>", invalidBody: why)
    }

    static func exhausted(_ headers: UpstreamHeaders) -> UpstreamResponse<String> {
        UpstreamResponse(status: 200, headers: headers, body: "ok", usage: TokenUsage(promptTokens: 10, completionTokens: 5))
    }

    // MARK: A 2xx is a success only when its body is one

    @Test func aTwoHundredWithAnInvalidBodyFailsOverAndCountsAFailure() async throws {
        let f = try Self.twoProviders()
        let t = ScriptedTransport(["a": always(Self.invalid())])
        let r = try await f.route(t)
        #expect(RouterTests.servedBy(r) == "b")
        #expect(t.callLog == ["a", "b"])
        #expect(r.attempts.first?.outcome == .failure(retryable: false) && r.attempts.first?.error == .invalidResponse && r.attempts.first?.status == 200)
        let s = try await f.stats("a")
        #expect(s.consecutiveFailures == 1 && s.usage.success == 0 && s.usage.errors == 1)
    }

    @Test func invalidBodiesOpenAFailureCooldownAtTheThreshold() async throws {
        let f = try F(
            providers: [RouterTests.p("a", failureThreshold: 2), RouterTests.p("b")],
            group: ModelGroup(name: "g", primary: [RouterTests.w("a", 1_000_000), RouterTests.w("b", 1)], retriesPerProvider: 0))
        let t = ScriptedTransport(["a": always(Self.invalid("the body is not a JSON object"))])
        for _ in 0..<3 { #expect(RouterTests.servedBy(try await f.route(t)) == "b") }
        #expect(t.callLog == ["a", "b", "a", "b", "b"])
        #expect(try await f.stats("a").cooldownReason == .failures)
    }

    @Test func anInvalidBodyFromTheLastCandidateIsAnUpstreamFailureNotASuccess() async throws {
        let f = try F(providers: [RouterTests.p("only")], group: ModelGroup(name: "g", primary: [RouterTests.w("only")], retriesPerProvider: 1))
        let t = ScriptedTransport(["only": always(Self.invalid())])
        let r = try await f.route(t)
        guard case .upstreamFailed(let last) = r.outcome else { Issue.record("\(r.outcome)"); return }
        #expect(last.error == .invalidResponse && last.status == 200)
        #expect(t.callLog == ["only"], "an invalid body is not retried on the same provider")
    }

    // MARK: The provider's own view

    @Test func aProviderThatAnnouncesExhaustionIsSkippedByTheNextRequest() async throws {
        let f = try Self.twoProviders()
        let t = ScriptedTransport([
            "a": { n in .success(n == 1 ? Self.exhausted(["x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"]) : .ok("a again")) }
        ])
        let first = try await f.route(t)
        #expect(RouterTests.servedBy(first) == "a", "the announcing answer itself is served")
        #expect(first.attempts.first?.exhaustedCooldown == .seconds(30))
        let s = try await f.stats("a")
        #expect(s.cooldownReason == .exhausted && s.cooldownRemaining == .seconds(30))
        #expect(s.usage.success == 1 && s.consecutiveFailures == 0)
        // The next request goes elsewhere instead of collecting a 429…
        #expect(RouterTests.servedBy(try await f.route(t)) == "b")
        #expect(t.callLog == ["a", "b"])
        // …until the announced reset.
        f.clock.advance(by: .seconds(30))
        #expect(RouterTests.servedBy(try await f.route(t)) == "a")
    }

    @Test func anthropicTokensBelowTheReservationCoolTheProviderDown() async throws {
        // wallClock is 1_700_000_000 = 2023-11-14T22:13:20Z; the provider reserves 1024 tokens by default.
        let f = try Self.twoProviders()
        let t = ScriptedTransport([
            "a": always(Self.exhausted(["anthropic-ratelimit-tokens-remaining": "512", "anthropic-ratelimit-tokens-reset": "2023-11-14T22:14:20Z"]))
        ])
        #expect(RouterTests.servedBy(try await f.route(t)) == "a")
        #expect(try await f.stats("a").cooldownRemaining == .seconds(60))
        #expect(RouterTests.servedBy(try await f.route(t)) == "b")
    }

    @Test func anExhaustionCooldownOnlyExtends() async throws {
        let f = try Self.twoProviders()
        let t = ScriptedTransport(["a": always(Self.exhausted(["x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "10s"]))])
        _ = try await f.route(t)
        try await f.store.setCooldown(provider: "a", for: .seconds(2), reason: .manual)
        let s = try await f.stats("a")
        #expect(s.cooldownReason == .exhausted && s.cooldownRemaining == .seconds(10), "a shorter cooldown does not replace it")
    }

    @Test func aStreamThatAnnouncesExhaustionCoolsTheProviderDownBeforeItEnds() async throws {
        let f = try Self.twoProviders()
        var stream = Self.exhausted(["x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m"])
        stream.settlesLater = true
        let t = ScriptedTransport(["a": always(stream)])
        let r = try await f.route(t)
        guard case .served(_, let pending?) = r.outcome else { Issue.record("\(r.outcome)"); return }
        #expect(try await f.stats("a").cooldownReason == .exhausted, "set while the stream is still open")
        await pending.settle(.success(usage: nil))
        #expect(try await f.stats("a").cooldownRemaining == .seconds(60), "the stream's end does not move it")
    }

    @Test func malformedOrMissingHeadersDoNothing() async throws {
        let f = try Self.twoProviders()
        let t = ScriptedTransport(["a": always(Self.exhausted(["x-ratelimit-remaining-requests": "none", "anthropic-ratelimit-tokens-remaining": "-3"]))])
        for _ in 0..<3 { #expect(RouterTests.servedBy(try await f.route(t)) == "a") }
        #expect(try await f.stats("a").cooldownRemaining == nil)
    }

    @Test func aRateLimitHeaderOnAnErrorAnswerIsNotAnExhaustionAnnouncement() async throws {
        let f = try Self.twoProviders()
        let t = ScriptedTransport(["a": always(.status(500, headers: ["x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1h"]))])
        #expect(RouterTests.servedBy(try await f.route(t)) == "b")
        let s = try await f.stats("a")
        #expect(s.cooldownRemaining == nil && s.consecutiveFailures == 1)
    }
}
