import MultiplexerCore
import MultiplexerRedis
import MultiplexerProcesses
import MultiplexerTestSupport

/// A quota store under test plus control over its clock.
///
/// Every implementation of ``QuotaStore`` gets one harness; the contract suite runs each test against
/// each harness, so all stores honour one contract.
protocol StoreHarness: Sendable {
    var store: any QuotaStore { get }
    /// Moves the store's time forward (no real waiting).
    func advance(by duration: Duration) async throws
    /// Releases whatever the harness started.
    func shutdown() async
}

/// ``InMemoryQuotaStore`` on a ``ManualClock``.
struct InMemoryHarness: StoreHarness {
    let clock = ManualClock()
    let store: any QuotaStore

    init() {
        self.store = InMemoryQuotaStore(clock: self.clock)
    }

    func advance(by duration: Duration) async throws {
        self.clock.advance(by: duration)
    }

    func shutdown() async {}
}

/// The stores the contract suite runs against.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory
    case redis
    /// A 3-master Redis Cluster (one per test process, ``RedisCluster/shared``).
    case redisCluster

    var testDescription: String { self.rawValue }

    func makeHarness() async throws -> any StoreHarness {
        switch self {
        case .memory: InMemoryHarness()
        case .redis: try await RedisHarness()
        case .redisCluster: try await RedisHarness(topology: RedisTopology(cluster: RedisCluster.sharedCluster().seeds))
        }
    }
}

import Testing

/// Runs `body` with a fresh harness of `kind` and shuts it down afterwards.
func withHarness(_ kind: StoreKind, _ body: (any StoreHarness) async throws -> Void) async throws {
    let h = try await kind.makeHarness()
    do {
        try await body(h)
    } catch {
        await h.shutdown()
        throw error
    }
    await h.shutdown()
}

/// One real `redis-server` for the whole test process; every harness gets its own namespace.
let sharedRedisServer: Result<RedisServer, any Error> = Result { try RedisServer() }

/// ``RedisQuotaStore`` against a real `redis-server` (or a real Redis Cluster), in a fresh namespace.
///
/// Virtual time: the store's scripts add `{ns}:clock_offset_ms` to Redis's `TIME`, so advancing moves
/// that offset — and shortens the TTLs of cooldown keys by the same amount, since Redis expires keys on
/// its real clock.
struct RedisHarness: StoreHarness {
    let redisStore: RedisQuotaStore
    let namespace: String
    var store: any QuotaStore { self.redisStore }

    /// - Parameter topology: where Redis is; the shared single server if `nil`.
    /// - The command timeout is generous: the contract suite tests Redis's semantics, and a timeout under the
    ///   load of 40 suites at once would put an admission on the degraded local share instead.
    init(
        topology: RedisTopology? = nil, namespace: String? = nil, onUnavailable: RedisQuotaStore.UnavailablePolicy = .local,
        commandTimeout: Duration = .seconds(3)
    ) async throws {
        self.namespace = namespace ?? "t\(UInt32.random(in: 0...UInt32.max))"
        var config = RedisQuotaStore.Configuration(
            topology: try topology ?? .standalone(RedisEndpoint(url: sharedRedisServer.get().url)), namespace: self.namespace,
            connectTimeout: .seconds(1), commandTimeout: commandTimeout, onUnavailable: onUnavailable, nodeID: "test-node")
        config.virtualClockForTesting = true
        self.redisStore = RedisQuotaStore(configuration: config)
        try await self.redisStore.connect()
    }

    func advance(by duration: Duration) async throws {
        let ms = duration.millisecondsRoundedUp
        let c = self.redisStore.client
        _ = try await c.execute(["INCRBY", "{\(self.namespace)}:clock_offset_ms", String(ms)])
        var cursor = "0"
        repeat {
            let v = try await c.execute(["SCAN", cursor, "MATCH", "{\(self.namespace)}:provider:*:cooldown", "COUNT", "1000"])
            guard let a = v.array, a.count == 2 else { throw RedisError(.protocolError, "SCAN") }
            cursor = a[0].text ?? "0"
            for k in a[1].array ?? [] {
                guard let key = k.text, let ttl = try await c.execute(["PTTL", key]).int, ttl > 0 else { continue }
                _ = try await c.execute(ttl - ms <= 0 ? ["DEL", key] : ["PEXPIRE", key, String(ttl - ms)])
            }
        } while cursor != "0"
    }

    func shutdown() async {
        self.redisStore.shutdown()
    }
}
