import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The bounded chaos run (ARCHITECTURE §9): ~45 s of mixed plain and streamed traffic through nginx and
/// three nodes, with misbehaving clients throughout, while Redis restarts, one node is SIGTERMed and
/// restarted, and Redis pauses. It ends with the audit: the strict provider never over its limits, no
/// lease left; every well-behaved client served.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ChaosFleetTests {
    @Test func aChaosRunEndsWithACleanAudit() async throws {
        var strict = FleetPlan.Provider(
            name: "strict", limits: .init(rpm: 150, maxConcurrent: 4), latency: .milliseconds(100), settings: ["stream_idle_timeout_seconds: 10"])
        strict.mock = {
            $0.announcesLimits = false
            $0.streamChunks = 10
            $0.tokenInterval = .milliseconds(50)
        }
        var spare = FleetPlan.Provider(name: "spare", tier: .fallback, latency: .milliseconds(50), settings: ["stream_idle_timeout_seconds: 10"])
        spare.mock = {
            $0.streamChunks = 10
            $0.tokenInterval = .milliseconds(50)
        }
        var plan = fleetPlan([strict, spare])
        plan.redisPersistence = true
        plan.drainSeconds = 1
        plan.shutdownTimeoutSeconds = 5
        plan.serverSettings = ["client_write_timeout_seconds: 2"]
        try await LocalFleet.run(plan) { [plan] fleet in
            let origin = ContinuousClock.now
            let streamBody = #"{"model":"\#(plan.model)","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"stream":true}"#
            let stop = StopFlag()
            let ports = fleet.nodes.map(\.port)

            // Well-behaved plain clients.
            async let plain = LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(
                total: 300, concurrency: 3, spacing: .milliseconds(100), origin: origin)
            // Well-behaved streaming clients: every stream must end with [DONE].
            async let streams: [String] = withTaskGroup(of: [String].self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        var bad: [String] = []
                        var n = 0
                        while !stop.isSet {
                            n += 1
                            let r = await fleet.http.post(fleet.entryURL + "/v1/chat/completions", json: streamBody, timeout: .seconds(20))
                            if r?.status != 200 || !(r?.body.contains("data: [DONE]") ?? false) {
                                bad.append("\(r?.status ?? 0): \(r?.body.suffix(200) ?? "no answer")")
                            }
                            try? await Task.sleep(for: .milliseconds(150))
                        }
                        return bad + ["\(n) streams"]
                    }
                }
                return await group.reduce(into: []) { $0 += $1 }
            }
            // Misbehaving clients, straight at the nodes: reset before the first event, reset mid-stream,
            // never read (4 KiB buffer) and vanish.
            async let hostile: Int = Task {
                var sent = 0
                while !stop.isSet && ProcessInfo.processInfo.environment["CHAOS_NO_HOSTILE"] == nil {
                    let port = ports[sent % ports.count]
                    if let c = try? RawClient(port: port, receiveBuffer: sent % 3 == 2 ? 4096 : nil) {
                        c.post("/v1/chat/completions", json: streamBody)
                        try? await Task.sleep(for: .milliseconds(sent % 3 == 0 ? 30 : 400))
                        if sent % 3 == 2 { try? await Task.sleep(for: .seconds(1)) }
                        c.reset()
                    }
                    sent += 1
                    try? await Task.sleep(for: .milliseconds(300))
                }
                return sent
            }.value

            // The faults.
            let redis = try #require(fleet.redis)
            try await Task.sleep(for: .seconds(5))
            await offloaded { redis.stop(signal: SIGTERM) }
            try await Task.sleep(for: .seconds(3))
            try await offloaded { try redis.start() }
            try await Task.sleep(for: .seconds(5))
            let balancer = try #require(fleet.nginx)
            try await balancer.setDown(ports[1], true)
            fleet.signal(node: 1, SIGTERM)
            #expect(await fleet.waitForExit(node: 1, timeout: .seconds(15)), "node 1 stopped gracefully")
            try await fleet.restart(node: 1)
            try await balancer.setDown(ports[1], false)
            try await Task.sleep(for: .seconds(4))
            _ = try await fleet.redisCLI(["CLIENT", "PAUSE", "1500", "ALL"])
            try await Task.sleep(for: .seconds(6))
            stop.set()

            let results = await plain
            let badStreams = await streams
            let misbehaved = await hostile
            let elapsed = origin.duration(to: .now)
            #expect(results.statuses == [200: 300], "every plain request served")
            #expect(badStreams.count == 2, "every well-behaved stream ended with [DONE]: \(badStreams.prefix(5))")
            #expect(misbehaved > 20)
            let audit = await fleet.audit(counters: false, settleWithin: .seconds(15))
            #expect(audit.isClean, "\(audit)")
            let c = fleet.mocks["strict"]!.state.counters
            print(
                "chaos: \(elapsed) s, plain \(results.statuses) by \(results.providers), streams \(badStreams.suffix(2)), misbehaving \(misbehaved); "
                    + "strict served \(c.served), overshoot \(c.overshoot), max in flight \(c.maxInFlight) of 4; \(audit)")
        }
    }
}

/// Tells the traffic loops to stop.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { self.flag.load(ordering: .relaxed) }
    func set() { self.flag.store(true, ordering: .relaxed) }
}
