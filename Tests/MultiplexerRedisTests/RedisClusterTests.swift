import MultiplexerCore
import MultiplexerRedis
import MultiplexerProcesses
import MultiplexerTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A value shared by a test's child tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { self.mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { self.mutex.withLock { body(&$0) } }
}

/// The tests that start whole topologies (clusters, sentinels) and put them under load run one at a
/// time, so that they leave CPU to the other suites on a small machine.
@Suite("Redis topologies", .serialized)
struct RedisTopologyIntegrationTests {}

extension RedisTopologyIntegrationTests {
    @Suite("RedisQuotaStore on a real Redis Cluster")
    struct RedisClusterTests {
        static func topology(_ cluster: RedisCluster) throws -> RedisTopology {
            try RedisTopology(cluster: cluster.seeds)
        }

        static func store(
            _ cluster: RedisCluster, namespace: String, commandTimeout: Duration = .seconds(2), redirectTimeout: Duration = .seconds(1)
        ) throws -> RedisQuotaStore {
            var config = RedisQuotaStore.Configuration(
                topology: try Self.topology(cluster), namespace: namespace, connectTimeout: .seconds(1), commandTimeout: commandTimeout,
                nodeID: "cluster-node")
            config.redirectTimeout = redirectTimeout
            return RedisQuotaStore(configuration: config)
        }

        @Test func namespacesOnDifferentShardsEachWorkOnTheirOwnMaster() async throws {
            let cluster = try await RedisCluster.sharedCluster()
            // Two namespaces whose slots belong to different masters.
            let base = UInt32.random(in: 0...UInt32.max / 2)
            let first = "shard\(base)"
            let firstOwner = try cluster.owner(ofSlot: RedisHashSlot.slot(forKey: "{\(first)}:schema"))
            var second = ""
            var secondOwner = firstOwner
            for i in 1...100 where secondOwner.port == firstOwner.port {
                second = "shard\(base + UInt32(i))"
                secondOwner = try cluster.owner(ofSlot: RedisHashSlot.slot(forKey: "{\(second)}:schema"))
            }
            try #require(secondOwner.port != firstOwner.port)

            let a = try Self.store(cluster, namespace: first)
            let b = try Self.store(cluster, namespace: second)
            defer {
                a.shutdown()
                b.shutdown()
            }
            try await a.connect()
            try await b.connect()
            let c = RedisFixture.candidate("p-shard", ProviderLimits(rpm: 5))
            for (store, ns, owner, other) in [(a, first, firstOwner, secondOwner), (b, second, secondOwner, firstOwner)] {
                var admitted = 0
                for _ in 0..<8 {
                    if let r = MultiplexerRedisTests.admitted(try await store.admit(AdmissionRequest(candidates: [c]))) {
                        #expect(!r.id.hasPrefix("L"))
                        admitted += 1
                        await store.settle(Settlement(reservation: r, result: .success(usage: TokenUsage(promptTokens: 1, completionTokens: 2))))
                    }
                }
                #expect(admitted == 5, "\(ns)")
                // The keys are on the slot's master (asked directly, without following redirections), not elsewhere.
                #expect(try owner.rawCLI(["ZCARD", "{\(ns)}:provider:p-shard:rpm"]).hasPrefix("5"))
                #expect(try other.rawCLI(["EXISTS", "{\(ns)}:provider:p-shard:rpm"]).hasPrefix("MOVED"))
                let stats = try await store.stats(StatsQuery(providers: ["p-shard"], keys: [], models: []))
                #expect(stats.providers.first?.usage.requests == 5 && stats.providers.first?.usage.completionTokens == 10)
                #expect(store.availability == .connected)
            }
        }

        /// Admissions race on one namespace while its slot moves to another master (IMPORTING/MIGRATING,
        /// one MIGRATE of all its keys, SETSLOT NODE): the client follows the refusals, ASK and MOVED, and
        /// the rpm limit holds exactly — nothing lost, nothing doubled, nothing failed.
        @Test func aSlotMigrationUnderLoadLosesAndDoublesNothing() async throws {
            let cluster = try await offCooperativePool { try RedisCluster() }
            let namespace = "mig\(UInt32.random(in: 0...UInt32.max))"
            let slot = RedisHashSlot.slot(forKey: "{\(namespace)}:schema")
            let source = try cluster.owner(ofSlot: slot)
            let target = try #require(cluster.nodes.first { $0.port != source.port })
            // Generous timeouts: this test is about exactness; a machine busy with other tests must not
            // push it into degraded mode (local admissions would break the exact count).
            let store = try Self.store(cluster, namespace: namespace, redirectTimeout: .seconds(3))
            defer { store.shutdown() }
            try await store.connect()

            let limit = 300
            let c = RedisFixture.candidate("p-mig", ProviderLimits(rpm: limit), tokens: 1)
            struct Tally: Sendable {
                var admitted = 0
                var rejected = 0
                var other: [String] = []
                var migrating = false
                var done = false
                var admittedWhenMigrationStarted = -1
                var admittedWhenMigrationEnded = -1
                var attemptsAfterMigration = 0
            }
            let tally = Locked(Tally())
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        while true {
                            let stop = tally.withLock { $0.done && $0.attemptsAfterMigration >= 100 && $0.admitted + $0.rejected >= limit + 100 }
                            if stop { return }
                            let d: AdmissionDecision
                            do {
                                d = try await store.admit(AdmissionRequest(candidates: [c]))
                            } catch {
                                tally.withLock { $0.other.append("threw \(error)") }
                                continue
                            }
                            tally.withLock { t in
                                switch d {
                                case .admitted(let r) where !r.id.hasPrefix("L"): t.admitted += 1
                                case .exhausted(_, let blocked) where blocked.map(\.reason) == [.rpm]: t.rejected += 1
                                default: t.other.append("\(d)")
                                }
                                if t.done { t.attemptsAfterMigration += 1 }
                            }
                            try await Task.sleep(for: .milliseconds(2))
                        }
                    }
                }
                group.addTask {
                    // Migrate once some (not all) of the limit is used, so admissions straddle every phase.
                    while tally.withLock({ $0.admitted }) < limit / 6 { try await Task.sleep(for: .milliseconds(2)) }
                    tally.withLock { $0.admittedWhenMigrationStarted = $0.admitted }
                    try await offCooperativePool {
                        // Hold each phase until the store has met it (bounded), however slow the machine.
                        try cluster.migrate(slot: slot, to: target) { phase in
                            let deadline = ContinuousClock.now + (phase == .migrating ? .milliseconds(300) : .seconds(3))
                            while ContinuousClock.now < deadline {
                                let s = store.client.statistics
                                if phase == .migrating ? s.retried > 0 : s.asked >= 20 { break }
                                usleep(2000)
                            }
                        }
                    }
                    tally.withLock { t in
                        t.admittedWhenMigrationEnded = t.admitted
                        t.done = true
                    }
                }
                try await group.waitForAll()
            }
            let t = tally.withLock { $0 }
            #expect(t.other.isEmpty, "\(t.other.prefix(5))")
            #expect(t.admitted == limit)
            #expect(t.rejected > 0)
            #expect(t.admittedWhenMigrationStarted < limit, "the migration started after the limit was used up")
            #expect(try cluster.owner(ofSlot: slot).port == target.port)
            // Every window entry is on the new master; the old one holds none of the namespace's keys.
            #expect(try target.rawCLI(["ZCARD", "{\(namespace)}:provider:p-mig:rpm"]).hasPrefix("\(limit)"))
            #expect(try source.rawCLI(["CLUSTER", "COUNTKEYSINSLOT", String(slot)]).hasPrefix("0"))
            let stats = store.client.statistics
            #expect(stats.moved > 0 && stats.asked > 0, "\(stats)")
            #expect(store.availability == .connected)
            print(
                "slot migration: \(t.admitted) admitted, \(t.rejected) rejected for rpm, \(t.other.count) other; admitted before/after migration: "
                    + "\(t.admittedWhenMigrationStarted)/\(t.admittedWhenMigrationEnded); commands re-sent: \(stats.redirects) "
                    + "(MOVED \(stats.moved), ASK \(stats.asked), retried \(stats.retried)); connects: \(stats.connects)")
        }
    }
}
