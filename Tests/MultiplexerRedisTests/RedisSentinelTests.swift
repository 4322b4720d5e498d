import MultiplexerCore
import MultiplexerRedis
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension RedisTopologyIntegrationTests {
    @Suite("RedisQuotaStore behind Redis Sentinel (master, replica, 3 sentinels)")
    struct RedisSentinelTests {
        static func topology(_ setup: RedisSentinelSetup) throws -> RedisTopology {
            try RedisTopology(sentinels: setup.sentinelAddresses, masterName: setup.masterName)
        }

        /// The master is killed while four tasks admit and settle. The sentinels promote the replica; the
        /// store serves on local shares meanwhile, then follows the new master and replays what it buffered.
        @Test func aKilledMasterIsFollowedToThePromotedReplicaWithoutLosingCounts() async throws {
            let setup = try await RedisSentinelSetup.start()
            let oldPort = setup.master.port
            let store = RedisQuotaStore(
                configuration: .init(
                    topology: try Self.topology(setup), namespace: "fo\(UInt32.random(in: 0...UInt32.max))", connectTimeout: .milliseconds(200),
                    commandTimeout: .milliseconds(300), nodeID: "sentinel-node", heartbeatInterval: .milliseconds(100)))
            defer { store.shutdown() }
            try await store.connect()
            let c = RedisFixture.candidate("p-fo", ProviderLimits(rpm: 1_000_000), tokens: 7)
            let clock = ContinuousClock()
            let start = clock.now

            struct Event: Sendable {
                var at: Duration
                var local: Bool
            }
            struct Tally: Sendable {
                var events: [Event] = []
                var errors: [String] = []
                var stop = false
            }
            let tally = Locked(Tally())
            var killedAt = Duration.zero
            var promotedAt = Duration.zero
            var newPort = 0

            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await store.run() }  // heartbeats, live-node count, replay
                for _ in 0..<4 {
                    group.addTask {
                        while !tally.withLock({ $0.stop }) {
                            do {
                                if let r = admitted(try await store.admit(AdmissionRequest(candidates: [c]))) {
                                    let usage = TokenUsage(promptTokens: 3, completionTokens: 4)
                                    await store.settle(Settlement(reservation: r, result: .success(usage: usage)))
                                    let e = Event(at: start.duration(to: clock.now), local: r.id.hasPrefix("L"))
                                    tally.withLock { $0.events.append(e) }
                                } else {
                                    tally.withLock { $0.errors.append("not admitted") }
                                }
                            } catch {
                                tally.withLock { $0.errors.append("\(error)") }
                            }
                            try await Task.sleep(for: .milliseconds(5))
                        }
                    }
                }

                try await Task.sleep(for: .milliseconds(700))
                killedAt = start.duration(to: clock.now)
                setup.master.stop(signal: SIGKILL)
                // Wait (bounded) for the sentinels to promote the replica.
                while true {
                    if let p = await offCooperativePool({ setup.promotedMasterPort(otherThan: oldPort) }) {
                        newPort = p
                        promotedAt = start.duration(to: clock.now)
                        break
                    }
                    try #require(start.duration(to: clock.now) - killedAt < .seconds(20), "no failover within 20 s")
                    try await Task.sleep(for: .milliseconds(100))
                }
                // Keep the load on until the store serves from the new master and has replayed its buffer.
                while true {
                    let servedByRedisAgain = tally.withLock { t in t.events.filter { $0.at > promotedAt && !$0.local }.count }
                    if servedByRedisAgain >= 50 && !store.hasPendingReplay && store.availability == .connected { break }
                    try #require(start.duration(to: clock.now) - killedAt < .seconds(30), "the store did not recover within 30 s")
                    try await Task.sleep(for: .milliseconds(50))
                }
                tally.withLock { $0.stop = true }
                group.cancelAll()
            }
            // Anything settled after the last heartbeat is written through now.
            for _ in 0..<50 where store.hasPendingReplay {
                _ = try? await store.heartbeat(nodeID: "sentinel-node")
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(!store.hasPendingReplay)

            let t = tally.withLock { $0 }
            #expect(t.errors.isEmpty, "\(t.errors.prefix(5))")
            #expect(newPort == setup.replica.port)
            let local = t.events.filter(\.local)
            #expect(!local.isEmpty, "degraded mode served the gap")
            let firstLocal = try #require(local.first?.at)
            let backOnRedis = try #require(t.events.first { $0.at > firstLocal && !$0.local }?.at)
            let gap = backOnRedis - killedAt

            let settled = t.events.count
            let stats = try await store.stats(StatsQuery(providers: ["p-fo"], keys: [], models: []))
            let counted = stats.providers.first?.usage.requests ?? 0
            let lost = settled - counted
            // Redis replicates asynchronously: what the old master acknowledged just before it died may
            // never have reached the replica. Everything settled while degraded is replayed exactly once.
            let acknowledgedJustBefore = t.events.filter { !$0.local && $0.at > killedAt - .seconds(1) && $0.at <= killedAt }.count
            #expect(counted <= settled, "counted twice")
            #expect(lost <= acknowledgedJustBefore)
            #expect(stats.providers.first?.usage.promptTokens == counted * 3)
            print(
                "sentinel failover: killed at \(killedAt), sentinels promoted \(newPort) after \(promotedAt - killedAt), "
                    + "store back on Redis after \(gap); \(local.count) admissions served locally in the gap; settled \(settled), "
                    + "counted \(counted), lost \(lost) (settled through Redis in the last second before the kill: \(acknowledgedJustBefore)); "
                    + "client: \(store.client.statistics)")
        }

        /// A master demoted while the client's connection stays open answers `READONLY`: the client asks the
        /// sentinels again, checks `ROLE` and runs the command on the new master, once.
        @Test func aReadOnlyReplyRediscoversTheMasterAndRunsTheCommandOnce() async throws {
            let setup = try await RedisSentinelSetup.start()
            let client = RedisClient(configuration: .init(topology: try Self.topology(setup), commandTimeout: .seconds(1)))
            defer { client.shutdown() }
            #expect(try await client.execute(["SET", "k", "before"]) == .status("OK"))
            // A hand-made switch-over that (unlike Sentinel's) leaves client connections open.
            try await offCooperativePool {
                _ = try setup.replica.cli(["REPLICAOF", "NO", "ONE"])
                _ = try setup.master.cli(["REPLICAOF", "127.0.0.1", String(setup.replica.port)])
                try setup.sentinelCLI(["SENTINEL", "REMOVE", setup.masterName])
                try setup.sentinelCLI(["SENTINEL", "MONITOR", setup.masterName, "127.0.0.1", String(setup.replica.port), "2"])
            }
            #expect(try await client.execute(["INCR", "counter"]) == .integer(1))
            #expect(client.statistics.readOnly == 1)
            #expect(try setup.replica.rawCLI(["GET", "counter"]).hasPrefix("1"))
            #expect(try setup.replica.rawCLI(["GET", "k"]).hasPrefix("before"))
            #expect(try await client.execute(["INCR", "counter"]) == .integer(2))
        }
    }
}
