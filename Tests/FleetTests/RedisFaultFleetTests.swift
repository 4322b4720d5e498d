import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// Redis fails under load, each way a real one does — stopped, restarted with and without its data, paused
/// (`CLIENT PAUSE`: replies arrive late, so admissions' replies are lost), partitioned (`iptables` DROP:
/// packets vanish) — while three nodes behind nginx serve a strict provider whose rolling window the outage
/// finds half used. Each test ends with the audit (``FleetAudit``): the mock never over its limits, no lease
/// left, and, where Redis kept its data, its counters equal to the mock's.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct RedisFaultFleetTests {
    /// strict: 60 requests per rolling minute, 6 at once; spare (fallback) takes the rest. ~13 requests/s for
    /// ~11 s: the fault (at 1.5 s) finds strict's window about a third used, and it fills after recovery.
    ///
    /// strict does not announce its limits (no `x-ratelimit-*`), so only the fleet's own windows keep it within them.
    func plan(persistent: Bool) -> FleetPlan {
        var strict = FleetPlan.Provider(name: "strict", limits: .init(rpm: 60, maxConcurrent: 6), latency: .milliseconds(40))
        strict.mock = { $0.announcesLimits = false }
        var plan = fleetPlan([strict, .init(name: "spare", tier: .fallback, latency: .milliseconds(40))])
        plan.redisPersistence = persistent
        return plan
    }

    /// Runs the load with `fault` 1.5 s into it; every client request must succeed; then the audit.
    func run(_ plan: FleetPlan, counters: Bool, _ fault: @escaping @Sendable (LocalFleet) async throws -> Void) async throws {
        try await LocalFleet.run(plan) { [plan] fleet in
            async let load = LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(
                total: 150, concurrency: 4, spacing: .milliseconds(250))
            try await Task.sleep(for: .milliseconds(1500))
            try await fault(fleet)
            let results = await load
            #expect(results.statuses == [200: 150], "every request served, before, during and after the fault")
            #expect((results.providers["strict"] ?? 0) >= 55, "strict served its minute: \(results.providers)")
            let caughtUp = await fleet.eventually(within: .seconds(15)) {
                guard counters, let s = try? await fleet.fleetStats() else { return true }
                let mocks = fleet.mockCounters()
                return s.providers.allSatisfy { $0.usage.success == mocks[$0.name]?.served }
            }
            #expect(caughtUp, "every node wrote what it owed Redis")
            // ARCHITECTURE §8: an outage may let the strict provider see what the fleet admitted between each node's
            // last reply and the outage — at most one request per node with steady traffic. Measured: 0 on a quiet
            // machine, 1–2 while the other fleet suites load it (the replies before the outage arrive later).
            let audit = await fleet.audit(counters: counters, settleWithin: .seconds(5), outageAllowance: plan.nodes)
            #expect(audit.isClean, "\(audit)")
            let strict = fleet.mocks["strict"]!.state.counters
            print("audit: strict served \(strict.served), overshoot \(strict.overshoot), max in flight \(strict.maxInFlight); \(audit)")
        }
    }

    @Test func redisStoppedAndStartedWithItsData() async throws {
        try await self.run(self.plan(persistent: true), counters: true) { fleet in
            let redis = try #require(fleet.redis)
            await offloaded { redis.stop(signal: SIGTERM) }
            try await Task.sleep(for: .seconds(3))
            try await offloaded { try redis.start() }
            // Every change of state is logged (ARCHITECTURE §5): lost at warning, back and replayed at info.
            let wanted = ["warning multiplexer : live_nodes=", "Redis lost", "Redis back", "counters replayed"]
            func missing() -> [String] {
                let log = (try? String(contentsOfFile: fleet.directory + "/gw-1.log", encoding: .utf8)) ?? ""
                return wanted.filter { !log.contains($0) }
            }
            let logged = await fleet.eventually(within: .seconds(10)) { missing().isEmpty }
            #expect(logged, "the node logged Redis lost, back and replayed; missing: \(missing())")

        }
    }

    @Test func redisRestartedEmpty() async throws {
        // Killed and started with nothing: each node writes back its own last minute, so the windows do
        // not start from zero (counters of before are gone: no counter check).
        try await self.run(self.plan(persistent: false), counters: false) { fleet in
            let redis = try #require(fleet.redis)
            await offloaded { redis.stop(signal: SIGKILL) }
            try await Task.sleep(for: .milliseconds(500))
            try await offloaded { try redis.start() }
        }
    }

    @Test func redisPausedSoRepliesArriveLate() async throws {
        try await self.run(self.plan(persistent: false), counters: true) { fleet in
            _ = try await fleet.redisCLI(["CLIENT", "PAUSE", "2000", "ALL"])
        }
    }

    @Test(.enabled(if: Firewall.isAvailable, "needs root and iptables"))
    func redisPartitionedSoPacketsVanish() async throws {
        try await self.run(self.plan(persistent: false), counters: true) { fleet in
            let redis = try #require(fleet.redis)
            let wall = try Firewall.dropLoopback(port: redis.port)
            try await Task.sleep(for: .seconds(3))
            try wall.remove()
        }
    }
}

/// `iptables` rules that make a loopback port's packets vanish (both directions), as a partition does:
/// connects and commands hang instead of being refused.
struct Firewall {
    let rules: [[String]]

    static var isAvailable: Bool { getuid() == 0 && ManagedProcess.which("iptables") != nil }

    static func dropLoopback(port: Int) throws -> Firewall {
        let rules = [
            ["INPUT", "-i", "lo", "-p", "tcp", "--dport", String(port), "-j", "DROP"],
            ["INPUT", "-i", "lo", "-p", "tcp", "--sport", String(port), "-j", "DROP"],
        ]
        for r in rules { try Self.iptables(["-I"] + r) }
        return Firewall(rules: rules)
    }

    func remove() throws {
        for r in self.rules { try Self.iptables(["-D"] + r) }
    }

    private static func iptables(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ManagedProcess.which("iptables") ?? "/usr/sbin/iptables")
        p.arguments = ["-w"] + args
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw POSIXError(.EPERM) }
    }
}

/// Runs blocking work (a process stop or start) off the cooperative pool.
func offloaded<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        DispatchQueue.global().async { c.resume(with: Result { try work() }) }
    }
}

func offloaded(_ work: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { c in
        DispatchQueue.global().async {
            work()
            c.resume()
        }
    }
}
