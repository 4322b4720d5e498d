import MultiplexerCore
import Testing

/// The router over the in-memory store, on a virtual clock: every wait runs instantly.
struct RouterTests {
    struct Fixture {
        let clock = ManualClock(autoAdvance: true)
        let store: InMemoryQuotaStore<ManualClock>
        let router: Router<ManualClock>
        let table: RoutingTable

        init(providers: [Provider], group: ModelGroup, seed: UInt64 = 1) throws {
            self.store = InMemoryQuotaStore(clock: self.clock)
            self.table = try RoutingTable(providers: providers, groups: [group])
            self.router = Router(table: self.table, store: self.store, clock: self.clock, random: SeededRandomSource(seed: seed), wallClock: { 1_700_000_000 })
        }

        var group: ModelGroup { self.table.groups[0] }

        func route(_ t: ScriptedTransport, key: ClientKey? = nil, cost: RequestCost = RequestCost(promptTokens: 10, maxTokens: 10), deadline: ManualClock.Instant? = nil) async throws -> RouteResult<String> {
            try await self.router.route("req", group: self.group, cost: cost, key: key, deadline: deadline, via: t)
        }

        func stats(_ name: String) async throws -> ProviderStats {
            try #require(try await self.store.stats(StatsQuery(providers: [name], keys: [], models: [])).providers.first)
        }
    }

    static func p(_ name: String, _ limits: ProviderLimits = .unlimited, contextWindow: Int? = nil, failureThreshold: Int = 3) -> Provider {
        Provider(name: name, baseURL: "http://127.0.0.1:9", apiKey: "k", model: "m-\(name)", limits: limits, failureThreshold: failureThreshold, contextWindow: contextWindow)
    }
    static func w(_ name: String, _ weight: Int = 1) -> WeightedProvider { WeightedProvider(provider: name, weight: weight) }

    static func servedBy(_ r: RouteResult<String>) -> String? {
        if case .served(let s, _) = r.outcome { return s.provider.name }
        return nil
    }

    // MARK: What an attempt costs

    /// ARCHITECTURE §3 step 6: an attempt that failed with an error status or a connection that never carried
    /// it refunds its tokens at once; one that failed after it was sent keeps the estimate; every attempt
    /// sent counts in the request window.
    @Test func failedAttemptsRefundTheirTokensUnlessTheProviderMayHaveProcessedThem() async throws {
        let limits = ProviderLimits(rpm: 100, tpm: 10_000)
        let f = try Fixture(
            providers: [Self.p("e503", limits, failureThreshold: 10), Self.p("refused", limits, failureThreshold: 10),
                Self.p("slow", limits, failureThreshold: 10), Self.p("ok", limits)],
            group: ModelGroup(name: "g", primary: [Self.w("e503", 1000), Self.w("refused", 100), Self.w("slow", 10)], fallback: [Self.w("ok")]))
        let t = ScriptedTransport([
            "e503": { _ in .success(.status(503)) },
            "refused": { _ in .failure(UpstreamError(.connectionRefused)) },
            "slow": { _ in .failure(UpstreamError(.timeout)) },
        ])
        let r = try await f.route(t)
        #expect(Self.servedBy(r) == "ok")
        #expect(Set(t.callLog.prefix(3)) == ["e503", "refused", "slow"])
        for name in ["e503", "refused"] {
            let s = try await f.stats(name)
            #expect(s.window.tpm == 0 && s.window.rpm == 1, "\(name): refunded, but counted as sent: \(s.window)")
        }
        let slow = try await f.stats("slow")
        #expect(slow.window.tpm == 20 && slow.window.rpm == 1, "a call timeout keeps the estimate (prompt 10 + max 10): \(slow.window)")
        #expect(try await f.stats("ok").window.tpm == 15)
    }

    // MARK: Weights and tiers

    @Test func trafficFollowsWeightsWhileAllHaveCapacity() async throws {
        let f = try Fixture(providers: [Self.p("a"), Self.p("b"), Self.p("c")], group: ModelGroup(name: "g", primary: [Self.w("a", 5), Self.w("b", 3), Self.w("c", 2)]), seed: 2024)
        let t = ScriptedTransport([:])
        var served: [String: Int] = [:]
        for _ in 0..<10_000 { served[Self.servedBy(try await f.route(t)) ?? "none", default: 0] += 1 }
        #expect(abs(Double(served["a", default: 0]) / 100 - 50) <= 2, "\(served)")
        #expect(abs(Double(served["b", default: 0]) / 100 - 30) <= 2, "\(served)")
        #expect(abs(Double(served["c", default: 0]) / 100 - 20) <= 2, "\(served)")
    }

    @Test func fallbackServesOnlyWhileNoPrimaryCanBeAdmitted() async throws {
        let f = try Fixture(
            providers: [Self.p("p1", ProviderLimits(rpm: 2)), Self.p("p2", ProviderLimits(rpm: 1)), Self.p("fb")],
            group: ModelGroup(name: "g", primary: [Self.w("p1"), Self.w("p2")], fallback: [Self.w("fb")], tierWait: .zero))
        let t = ScriptedTransport([:])
        var order: [String] = []
        for _ in 0..<6 { order.append(Self.servedBy(try await f.route(t)) ?? "none") }
        #expect(order.prefix(3).sorted() == ["p1", "p1", "p2"], "\(order)")
        #expect(order.suffix(3) == ["fb", "fb", "fb"])
        f.clock.advance(by: .seconds(60))
        #expect(Self.servedBy(try await f.route(t)) != "fb", "primaries are used again as soon as they can serve")
        let m = try await f.store.stats(StatsQuery(providers: [], keys: [], models: ["g"])).models[0].counters
        #expect(m.requests == 7 && m.fallbacks == 3 && m.exhausted == 0)
        #expect(try await f.stats("fb").usage.fallbackServed == 3)
    }

    @Test func aRateLimitedPrimaryIsWaitedForWithinTheTierWait() async throws {
        let f = try Fixture(
            providers: [Self.p("p"), Self.p("fb")],
            group: ModelGroup(name: "g", primary: [Self.w("p")], fallback: [Self.w("fb")], tierWait: .seconds(3)))
        let t = ScriptedTransport(["p": { n in n == 1 ? .success(.status(429, headers: ["Retry-After": "2"])) : .success(.ok()) }])
        let r = try await f.route(t)
        #expect(Self.servedBy(r) == "p")
        #expect(t.callLog == ["p", "p"])
        #expect(r.attempts.map(\.outcome) == [.rateLimited(cooldown: .seconds(2)), .success])
        #expect(f.clock.totalSlept >= .seconds(2) && f.clock.totalSlept < .seconds(3))
    }

    @Test func aLongerRetryAfterSendsTheRequestToTheFallback() async throws {
        let f = try Fixture(
            providers: [Self.p("p"), Self.p("fb")],
            group: ModelGroup(name: "g", primary: [Self.w("p")], fallback: [Self.w("fb")], tierWait: .seconds(3)))
        let t = ScriptedTransport(["p": always(.status(429, headers: ["Retry-After": "30"]))])
        let r = try await f.route(t)
        #expect(Self.servedBy(r) == "fb")
        #expect(t.callLog == ["p", "fb"])
        #expect(f.clock.totalSlept < .milliseconds(100))
        let s = try await f.stats("p")
        #expect(s.cooldownReason == .rateLimited && s.cooldownRemaining == .seconds(30))
        // The cooldown is shared: the next request goes straight to the fallback.
        _ = try await f.route(t)
        #expect(t.callLog == ["p", "fb", "fb"])
    }

    @Test func withoutAFallbackTierTheRequestWaitsForAPrimaryOrGets429() async throws {
        let f = try Fixture(providers: [Self.p("p", ProviderLimits(rpm: 1))], group: ModelGroup(name: "g", primary: [Self.w("p")], tierWait: .seconds(3)))
        let t = ScriptedTransport([:])
        #expect(Self.servedBy(try await f.route(t)) == "p")
        let r = try await f.route(t)  // frees in 60 s: more than the tier wait
        guard case .exhausted(let ra, let blocked) = r.outcome else { Issue.record("\(r.outcome)"); return }
        #expect(ra == .seconds(60) && blocked.first?.reason == .rpm)
        #expect(t.callLog == ["p"])
        f.clock.advance(by: .seconds(58))
        #expect(Self.servedBy(try await f.route(t)) == "p", "frees in 2 s, within the tier wait")
        #expect(try await f.store.stats(StatsQuery(providers: [], keys: [], models: ["g"])).models[0].counters.exhausted == 1)
    }

    @Test func queueTimeoutWaitsForCapacity() async throws {
        let f = try Fixture(providers: [Self.p("p", ProviderLimits(maxConcurrent: 1))], group: ModelGroup(name: "g", primary: [Self.w("p")], tierWait: .zero, queueTimeout: .seconds(5)))
        let hold = try await f.store.admit(AdmissionRequest(candidates: [AdmissionCandidate(provider: "p", limits: ProviderLimits(maxConcurrent: 1), tokens: 1, lease: .seconds(3))]))
        guard case .admitted = hold else { Issue.record("\(hold)"); return }
        let r = try await f.route(ScriptedTransport([:]))
        #expect(Self.servedBy(r) == "p", "the stuck lease expired within the queue timeout")
        #expect(f.clock.totalSlept >= .seconds(3))
    }

    @Test func waitingNeverPassesTheDeadline() async throws {
        let f = try Fixture(providers: [Self.p("p"), Self.p("fb")], group: ModelGroup(name: "g", primary: [Self.w("p")], fallback: [Self.w("fb")], tierWait: .seconds(3)))
        try await f.store.setCooldown(provider: "p", for: .seconds(2), reason: .manual)
        let r = try await f.route(ScriptedTransport([:]), deadline: f.clock.now.advanced(by: .seconds(1)))
        #expect(Self.servedBy(r) == "fb")
        #expect(f.clock.totalSlept == .zero)
    }

    // MARK: Failures

    @Test func serverErrorsFailOverToTheNextPrimary() async throws {
        let f = try Fixture(providers: [Self.p("a"), Self.p("b")], group: ModelGroup(name: "g", primary: [Self.w("a", 1000), Self.w("b", 1)]))
        let t = ScriptedTransport(["a": always(.status(502))])
        let r = try await f.route(t)
        #expect(Self.servedBy(r) == "b")
        #expect(t.callLog == ["a", "b"])
        #expect(try await f.stats("a").consecutiveFailures == 1)
    }

    @Test func aTransientFailureIsRetriedOnTheLastPrimaryBeforeFallingBack() async throws {
        let f = try Fixture(providers: [Self.p("p"), Self.p("fb")], group: ModelGroup(name: "g", primary: [Self.w("p")], fallback: [Self.w("fb")], retriesPerProvider: 1))
        let t = ScriptedTransport(["p": { n in n == 1 ? .success(.status(503)) : .success(.ok()) }])
        let r = try await f.route(t)
        #expect(Self.servedBy(r) == "p")
        #expect(t.callLog == ["p", "p"])
        #expect(f.clock.totalSlept >= .milliseconds(100), "backoff before the retry")
        // A reset before headers counts as transient too; a timeout never does.
        let reset = ScriptedTransport(["p": { n in n == 1 ? .failure(UpstreamError(.connectionReset)) : .success(.ok()) }])
        #expect(Self.servedBy(try await f.route(reset)) == "p")
        let silent = ScriptedTransport(["p": always(UpstreamError(.timeout))])
        #expect(Self.servedBy(try await f.route(silent)) == "fb")
        #expect(silent.callLog == ["p", "fb"])
    }

    @Test func failuresOpenACooldownAtTheThreshold() async throws {
        let f = try Fixture(providers: [Self.p("a", failureThreshold: 2), Self.p("b")], group: ModelGroup(name: "g", primary: [Self.w("a", 1_000_000), Self.w("b", 1)], retriesPerProvider: 0))
        let t = ScriptedTransport(["a": always(UpstreamError(.connectionRefused))])
        for _ in 0..<3 { #expect(Self.servedBy(try await f.route(t)) == "b") }
        #expect(t.callLog == ["a", "b", "a", "b", "b"], "after two failures a cools down")
        #expect(try await f.stats("a").cooldownReason == .failures)
    }

    @Test func maxAttemptsBoundsUpstreamCalls() async throws {
        let f = try Fixture(providers: ["a", "b", "c", "d"].map { Self.p($0) }, group: ModelGroup(name: "g", primary: ["a", "b", "c", "d"].map { Self.w($0) }, maxAttempts: 2))
        let t = ScriptedTransport(Dictionary(uniqueKeysWithValues: ["a", "b", "c", "d"].map { ($0, always(.status(500))) }))
        let r = try await f.route(t)
        guard case .upstreamFailed(let last) = r.outcome else { Issue.record("\(r.outcome)"); return }
        #expect(last.status == 500)
        #expect(t.callLog.count == 2 && r.attempts.count == 2)
    }

    @Test func clientErrorsAreReturnedWithoutRetry() async throws {
        let f = try Fixture(providers: [Self.p("a"), Self.p("b")], group: ModelGroup(name: "g", primary: [Self.w("a", 1000), Self.w("b", 1)]))
        let t = ScriptedTransport(["a": always(.status(400, errorCode: "content_policy_violation"))])
        let r = try await f.route(t)
        guard case .clientError(let resp, let provider) = r.outcome else { Issue.record("\(r.outcome)"); return }
        #expect(resp.status == 400 && provider.name == "a")
        #expect(t.callLog == ["a"])
        let s = try await f.stats("a")
        #expect(s.cooldownRemaining == nil && s.consecutiveFailures == 0 && s.usage.errors == 1)
    }

    @Test func unauthorizedProvidersCoolDownAndTheNextServes() async throws {
        let f = try Fixture(providers: [Self.p("a"), Self.p("b")], group: ModelGroup(name: "g", primary: [Self.w("a", 1000), Self.w("b", 1)]))
        let t = ScriptedTransport(["a": always(.status(401))])
        #expect(Self.servedBy(try await f.route(t)) == "b")
        #expect(try await f.stats("a").cooldownReason == .unauthorized)
    }

    @Test func contextLengthExceededTriesTheNextWithoutPenalty() async throws {
        let f = try Fixture(providers: [Self.p("small"), Self.p("big")], group: ModelGroup(name: "g", primary: [Self.w("small", 1000), Self.w("big", 1)]))
        let t = ScriptedTransport(["small": always(.status(400, errorCode: "context_length_exceeded"))])
        #expect(Self.servedBy(try await f.route(t)) == "big")
        let s = try await f.stats("small")
        #expect(s.cooldownRemaining == nil && s.consecutiveFailures == 0)
    }

    @Test func contextWindowsSkipProvidersUpFront() async throws {
        let f = try Fixture(providers: [Self.p("small", contextWindow: 100), Self.p("big", contextWindow: 10_000)], group: ModelGroup(name: "g", primary: [Self.w("small", 1000), Self.w("big", 1)]))
        let t = ScriptedTransport([:])
        #expect(Self.servedBy(try await f.route(t, cost: RequestCost(promptTokens: 500, maxTokens: 100))) == "big")
        #expect(t.callLog == ["big"])
        let r = try await f.route(t, cost: RequestCost(promptTokens: 20_000, maxTokens: 100))
        guard case .contextTooLarge = r.outcome else { Issue.record("\(r.outcome)"); return }
    }

    @Test func allRateLimitedEndsExhausted() async throws {
        let f = try Fixture(providers: [Self.p("a"), Self.p("b")], group: ModelGroup(name: "g", primary: [Self.w("a"), Self.w("b")], tierWait: .zero))
        let t = ScriptedTransport(["a": always(.status(429, headers: ["Retry-After": "20"])), "b": always(.status(429, headers: ["Retry-After": "10"]))])
        let r = try await f.route(t)
        guard case .exhausted(let ra, _) = r.outcome else { Issue.record("\(r.outcome)"); return }
        #expect(ra == .seconds(10))
        #expect(t.callLog.sorted() == ["a", "b"])
    }

    // MARK: Keys and streams

    @Test func keyLimitsRejectBeforeAnyProviderIsTouched() async throws {
        let f = try Fixture(providers: [Self.p("a")], group: ModelGroup(name: "g", primary: [Self.w("a")]))
        let key = ClientKey(name: "team", limits: KeyLimits(rpm: 1))
        let t = ScriptedTransport([:])
        #expect(Self.servedBy(try await f.route(t, key: key)) == "a")
        let r = try await f.route(t, key: key)
        guard case .keyLimited(let ra) = r.outcome else { Issue.record("\(r.outcome)"); return }
        #expect(ra == .seconds(60))
        #expect(t.callLog == ["a"])
        #expect(try await f.stats("a").window.inFlight == 0)
    }

    @Test func streamsHoldTheirReservationUntilSettled() async throws {
        let f = try Fixture(providers: [Self.p("a", ProviderLimits(tpm: 10_000, maxConcurrent: 5))], group: ModelGroup(name: "g", primary: [Self.w("a")]))
        let t = ScriptedTransport(["a": always(UpstreamResponse(status: 200, body: "stream", settlesLater: true))])
        let r = try await f.route(t, cost: RequestCost(promptTokens: 100, maxTokens: 400))
        guard case .served(_, let pending?) = r.outcome else { Issue.record("\(r.outcome)"); return }
        var s = try await f.stats("a")
        #expect(s.window.inFlight == 1 && s.window.tpm == 500)
        await pending.settle(.success(usage: TokenUsage(promptTokens: 90, completionTokens: 60)))
        s = try await f.stats("a")
        #expect(s.window.inFlight == 0 && s.window.tpm == 150 && s.usage.success == 1 && s.usage.completionTokens == 60)
    }
}
