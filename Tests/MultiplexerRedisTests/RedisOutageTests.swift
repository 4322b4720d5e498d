import Foundation
import MultiplexerCore
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

@testable import MultiplexerRedis

/// ARCHITECTURE §8 against a real `redis-server`: lost replies, degraded shares of what the fleet has
/// left, degraded admissions written back into the windows, and a Redis that lost its data.
@Suite struct RedisOutageTests {
    /// Heartbeats until the store has written everything it owes Redis.
    private func recover(_ store: RedisQuotaStore, node: String = "node-1") async throws {
        // Up to 15 s: under load a restarted Redis may miss the 200 ms connect timeout a few times, and the
        // client's breaker then waits a second between tries.
        for _ in 0..<300 {
            _ = try? await store.heartbeat(nodeID: node)
            if !store.hasPendingReplay && store.availability == .connected { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the store did not recover")
    }

    /// A reply lost to a timeout (Redis paused: the command arrives, its answer comes too late) may have
    /// admitted: the node serves the request from its degraded share and cancels the id when Redis answers,
    /// so the request counts once in every window and leaves no lease.
    @Test func aLostAdmissionReplyIsCancelledNotDoubleSpent() async throws {
        let f = try RedisFixture()
        // A pause well beyond the command timeout, and a timeout a loaded machine's normal replies stay within.
        let store = try f.store(commandTimeout: .milliseconds(500))
        defer { store.shutdown() }
        let c = RedisFixture.candidate("p-lost", ProviderLimits(rpm: 100, tpm: 10_000, maxConcurrent: 10), tokens: 50)
        let first = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
        #expect(!first.id.hasPrefix("L"))

        _ = try await f.cli(["CLIENT", "PAUSE", "2000", "ALL"])
        let lost = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
        #expect(lost.id.hasPrefix("L"), "served from the degraded share")
        #expect(store.hasPendingReplay)
        try await Task.sleep(for: .milliseconds(2100))
        try await self.recover(store)

        // The paused admission may have run after the pause: cancelled. The degraded one was written back.
        #expect(try await f.zcard("provider:p-lost:rpm") == 2)
        #expect(try await f.tokenSum("provider:p-lost:tpm") == 100)
        #expect(try await f.zcard("provider:p-lost:inflight") == 2)
        await store.settle(Settlement(reservation: first, result: .success(usage: TokenUsage(promptTokens: 5, completionTokens: 5))))
        await store.settle(Settlement(reservation: lost, result: .success(usage: TokenUsage(promptTokens: 10, completionTokens: 10))))
        #expect(try await f.zcard("provider:p-lost:inflight") == 0, "no lease left")
        #expect(try await f.tokenSum("provider:p-lost:tpm") == 30)
        let s = try await store.stats(StatsQuery(providers: ["p-lost"], keys: [], models: []))
        #expect(s.providers[0].usage.requests == 2)
    }

    /// Degraded, a node admits `(limit − fleet use it last saw) / live nodes` until a window has passed:
    /// what the fleet already used in the window is never admitted again.
    @Test func aDegradedShareIsWhatTheFleetHasLeft() async throws {
        let f = try RedisFixture()
        // A stopped Redis refuses connections at once: the timeout only has to cover a loaded machine.
        let a = try f.store(node: "node-a", commandTimeout: .seconds(2))
        let b = try f.store(node: "node-b", commandTimeout: .seconds(2))
        defer {
            a.shutdown()
            b.shutdown()
        }
        _ = try await a.heartbeat(nodeID: "node-a")
        _ = try await b.heartbeat(nodeID: "node-b")
        #expect(try await a.heartbeat(nodeID: "node-a") == 2)
        let limits = ProviderLimits(rpm: 20, maxConcurrent: 6)
        let c = RedisFixture.candidate("p-share", limits)
        // The fleet uses 12 of 20 requests (b 10, a 2); 4 of 6 slots stay in flight (a 2, b 2).
        var open: [Reservation] = []
        for i in 0..<10 {
            let r = try #require(admitted(try await b.admit(AdmissionRequest(candidates: [c]))))
            if i < 2 { open.append(r) } else { await b.settle(Settlement(reservation: r, result: .success(usage: nil))) }
        }
        for _ in 0..<2 { open.append(try #require(admitted(try await a.admit(AdmissionRequest(candidates: [c]))))) }

        try await f.stop()
        // a saw 12 used and 4 in flight: its share is (20 − 12) / 2 = 4 requests and (6 − 4) / 2 = 1 slot.
        var degraded: [Reservation] = []
        for _ in 0..<6 {
            if let r = admitted(try await a.admit(AdmissionRequest(candidates: [c]))) { degraded.append(r) }
        }
        #expect(degraded.count == 1, "one slot")
        #expect(degraded.allSatisfy { $0.id.hasPrefix("L") })
        for r in degraded { await a.settle(Settlement(reservation: r, result: .success(usage: nil))) }
        var more = 0
        for _ in 0..<6 {
            guard let r = admitted(try await a.admit(AdmissionRequest(candidates: [c]))) else { continue }
            more += 1
            await a.settle(Settlement(reservation: r, result: .success(usage: nil)))
        }
        #expect(more == 3, "4 requests in all")
        #expect(a.availability == .degraded)
        for r in open.prefix(2) { await b.settle(Settlement(reservation: r, result: .success(usage: nil))) }
    }

    /// Coming back (Redis kept its data), the node writes its degraded admissions into the windows with
    /// their times, the running ones with a lease, then their counters — once; the running ones then
    /// settle through Redis.
    @Test func degradedAdmissionsAreWrittenIntoTheWindowsOnRecovery() async throws {
        let f = try RedisFixture(persistent: true)
        let store = try f.store(commandTimeout: .seconds(2))
        defer { store.shutdown() }
        let c = RedisFixture.candidate("p-back", ProviderLimits(rpm: 100, tpm: 10_000, maxConcurrent: 10), tokens: 40)
        let before = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
        await store.settle(Settlement(reservation: before, result: .success(usage: TokenUsage(promptTokens: 5, completionTokens: 5))))

        try await f.stop(signal: SIGTERM)
        let done = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
        let running = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
        #expect(done.id.hasPrefix("L") && running.id.hasPrefix("L"))
        await store.settle(Settlement(reservation: done, result: .success(usage: TokenUsage(promptTokens: 10, completionTokens: 10))))

        try await f.start()
        try await self.recover(store)
        #expect(try await f.zcard("provider:p-back:rpm") == 3)
        #expect(try await f.tokenSum("provider:p-back:tpm") == 10 + 20 + 40)
        #expect(try await f.zcard("provider:p-back:inflight") == 1, "the running one holds a lease")
        _ = try? await store.heartbeat(nodeID: "node-1")  // a second recovery writes nothing twice
        #expect(try await f.zcard("provider:p-back:rpm") == 3)

        try await store.renewLease(running, for: .seconds(60))
        await store.settle(Settlement(reservation: running, result: .success(usage: TokenUsage(promptTokens: 15, completionTokens: 15))))
        #expect(try await f.zcard("provider:p-back:inflight") == 0)
        #expect(try await f.tokenSum("provider:p-back:tpm") == 10 + 20 + 30)
        let s = try await store.stats(StatsQuery(providers: ["p-back"], keys: [], models: []))
        #expect(s.providers[0].usage.requests == 3)
        #expect(s.providers[0].usage.promptTokens == 30)
    }

    /// Redis restarted empty: the node notices (the epoch is gone) and writes back its own admissions of the
    /// last minute and its running leases before it admits again, so the windows do not start from zero.
    @Test func aRedisThatLostItsDataGetsTheNodesLastMinuteBack() async throws {
        let f = try RedisFixture()
        let store = try f.store(commandTimeout: .seconds(2))
        defer { store.shutdown() }
        let c = RedisFixture.candidate("p-empty", ProviderLimits(rpm: 5, maxConcurrent: 10))
        var open: Reservation?
        for i in 0..<4 {
            let r = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
            if i == 0 { open = r } else { await store.settle(Settlement(reservation: r, result: .success(usage: nil))) }
        }
        _ = try await f.cli(["FLUSHALL"])
        // The heartbeat sees the epoch gone and restores; then only one more request fits the rpm of 5.
        try await self.recover(store)
        #expect(try await f.zcard("provider:p-empty:rpm") == 4)
        #expect(try await f.zcard("provider:p-empty:inflight") == 1)
        #expect(admitted(try await store.admit(AdmissionRequest(candidates: [c]))) != nil)
        #expect(admitted(try await store.admit(AdmissionRequest(candidates: [c]))) == nil)
        await store.settle(Settlement(reservation: try #require(open), result: .success(usage: nil)))
        #expect(try await f.zcard("provider:p-empty:inflight") == 1, "the fifth is still running")
    }

    /// A lease that expired while Redis was away is entered again by the next renewal; a settled one is not.
    @Test func aRenewalEntersALostLeaseAgainUnlessSettled() async throws {
        let f = try RedisFixture()
        let store = try f.store()
        defer { store.shutdown() }
        let c = RedisFixture.candidate("p-renew", ProviderLimits(maxConcurrent: 2))
        let r = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
        _ = try await f.cli(["DEL", "{\(f.namespace)}:provider:p-renew:inflight"])
        try await store.renewLease(r, for: .seconds(30))
        #expect(try await f.zcard("provider:p-renew:inflight") == 1)
        await store.settle(Settlement(reservation: r, result: .success(usage: nil)))
        try await store.renewLease(r, for: .seconds(30))
        #expect(try await f.zcard("provider:p-renew:inflight") == 0)
    }

    /// Ids come in blocks of 2^20 that never start below Redis's unix second, so ids of reservations from
    /// before a data loss are not handed out again.
    @Test func idBlocksLieAboveEveryEarlierBlock() async throws {
        let f = try RedisFixture()
        let store = try f.store()
        defer { store.shutdown() }
        let c = RedisFixture.candidate("p-ids", ProviderLimits())
        let r1 = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
        let id = try #require(UInt64(r1.id))
        #expect(id >> 20 >= UInt64(Date().timeIntervalSince1970) - 5)
        #expect(id < 1 << 53)
        let other = try f.store(node: "node-2")
        defer { other.shutdown() }
        let r2 = try #require(admitted(try await other.admit(AdmissionRequest(candidates: [c]))))
        #expect(UInt64(r2.id)! >> 20 > id >> 20, "another node's block")
    }
}

extension RedisOutageTests {
    /// A node whose heartbeat has gone quiet (3–10 s old) may be serving on its degraded share, cut off from
    /// Redis: the others' admissions count that share as used until it is back.
    @Test func aQuietNodesShareCountsAsUsedUntilItIsBack() async throws {
        let f = try RedisFixture()
        func store(_ node: String) throws -> RedisQuotaStore {
            var c = RedisQuotaStore.Configuration(
                endpoint: try RedisEndpoint(url: f.server.url), namespace: f.namespace, commandTimeout: .seconds(2), nodeID: node)
            c.virtualClockForTesting = true
            return RedisQuotaStore(configuration: c)
        }
        let a = try store("node-a"), b = try store("node-b")
        defer {
            a.shutdown()
            b.shutdown()
        }
        _ = try await b.heartbeat(nodeID: "node-b")
        _ = try await f.cli(["SET", "{\(f.namespace)}:clock_offset_ms", "4000"])  // b is quiet now
        #expect(try await a.heartbeat(nodeID: "node-a") == 2)
        let c = RedisFixture.candidate("p-quiet", ProviderLimits(rpm: 10, maxConcurrent: 4))
        var served: [Reservation] = []
        for _ in 0..<10 {
            guard let r = admitted(try await a.admit(AdmissionRequest(candidates: [c]))) else { break }
            served.append(r)
        }
        #expect(served.count == 2, "b's share of 4 slots (2) is held for it")
        for r in served { await a.settle(Settlement(reservation: r, result: .success(usage: nil))) }
        for _ in 0..<10 {
            guard let r = admitted(try await a.admit(AdmissionRequest(candidates: [c]))) else { break }
            served.append(r)
            await a.settle(Settlement(reservation: r, result: .success(usage: nil)))
        }
        #expect(served.count == 5, "b's share of 10 requests (5) is held for it")
        // b is back (and a heartbeats too: on a loaded machine this test may have taken seconds, and a node
        // whose own heartbeat is 3 s old is quiet to the others' recount).
        _ = try await b.heartbeat(nodeID: "node-b")
        _ = try await a.heartbeat(nodeID: "node-a")
        #expect(admitted(try await a.admit(AdmissionRequest(candidates: [c]))) != nil)
    }

    @Test func aLostAdmissionsCostIsRefundedAndADegradedShareOfABudgetIsWhatIsLeft() async throws {
        let f = try RedisFixture()
        let store = try f.store(commandTimeout: .milliseconds(500))
        defer { store.shutdown() }
        let pricing = Pricing(inputPerMillionUSD: 2, outputPerMillionUSD: 6)
        let priced = AdmissionCandidate(provider: "p-cost", limits: .unlimited, tokens: 50, lease: .seconds(60), pricing: pricing, cost: 300)
        let budgeted = AdmissionCandidate(
            provider: "p-budgeted", limits: ProviderLimits(dailyBudgetMicroUSD: 1000), tokens: 50, lease: .seconds(60), pricing: pricing, cost: 100)
        let unseen = AdmissionCandidate(
            provider: "p-unseen", limits: ProviderLimits(dailyBudgetMicroUSD: 1000), tokens: 50, lease: .seconds(60), pricing: pricing, cost: 100)
        let day = BudgetCalendar.day(WallClock.epochMilliseconds())
        func spent(_ p: String) async throws -> Int {
            Int(try await f.cli(["GET", "{\(f.namespace)}:provider:\(p):spend:\(day)"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        let first = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [priced]))))
        #expect(try await spent("p-cost") == 300)
        // 6 × 100 of p-budgeted's 1000 spent through Redis: the node has seen 600.
        var viaRedis: [Reservation] = []
        for _ in 0..<6 { viaRedis.append(try #require(admitted(try await store.admit(AdmissionRequest(candidates: [budgeted]))))) }

        // Redis frozen for every step below, however long a loaded machine takes (each degraded decision waits out
        // the 500 ms timeout): a CLIENT PAUSE of a fixed length ran out on a slow CI machine, and CLIENT UNPAUSE
        // waits for the pause itself.
        f.server.send(SIGSTOP)
        var frozen = true
        defer { if frozen { f.server.send(SIGCONT) } }
        // The reply is lost: served from the degraded share.
        let lost = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [priced]))))
        #expect(lost.id.hasPrefix("L"))
        // p-budgeted's degraded share is what was left when last seen (one live node: all 400 of it); never-seen p-unseen
        // takes nothing that costs.
        var degraded: [Reservation] = []
        while case .admitted(let r) = try await store.admit(AdmissionRequest(candidates: [budgeted])) { degraded.append(r) }
        #expect(degraded.count <= 4 && degraded.allSatisfy { $0.id.hasPrefix("L") }, "\(degraded.count) admitted on the degraded share of 400")
        guard case .exhausted(_, let blocked) = try await store.admit(AdmissionRequest(candidates: [unseen])) else {
            Issue.record("a provider whose spend was never seen admitted without Redis")
            return
        }
        #expect(blocked.first?.reason == .budget)
        let key = KeyAdmission(name: "k-budget", limits: KeyLimits(dailyBudgetMicroUSD: 100_000))
        guard case .keyLimited = try await store.admit(AdmissionRequest(key: key, candidates: [priced])) else {
            Issue.record("a key whose spend was never seen admitted without Redis")
            return
        }
        f.server.send(SIGCONT)
        frozen = false
        try await self.recover(store)
        // The degraded admissions' costs were written back; the admission whose reply was lost was cancelled with its cost.
        #expect(try await spent("p-budgeted") == 600 + 100 * degraded.count, "written back once")
        #expect(try await spent("p-cost") == 300 + 300, "the first, and the degraded one; the lost one refunded by its cancel")
        #expect(try await spent("p-budgeted") <= 1000, "never over the budget")
        await store.settle(Settlement(reservation: first, result: .success(usage: TokenUsage(promptTokens: 10, completionTokens: 10))))
        await store.settle(Settlement(reservation: lost, result: .success(usage: TokenUsage(promptTokens: 10, completionTokens: 10))))
        #expect(try await spent("p-cost") == 160, "both settled to the real cost: 2 × (10 × 2 + 10 × 6)")
        for r in viaRedis + degraded { await store.settle(Settlement(reservation: r, result: .failure)) }
        #expect(try await spent("p-budgeted") == 0, "failures refund")
        #expect(try await f.cli(["KEYS", "{\(f.namespace)}:cost:*"]).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "no cost record left")
    }
}
