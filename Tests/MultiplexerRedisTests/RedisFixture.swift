import MultiplexerCore
import MultiplexerRedis
import MultiplexerTestSupport

/// Stores on a dedicated `redis-server` (tests here stop and restart it).
struct RedisFixture {
    let server: RedisServer
    let namespace = "r\(UInt32.random(in: 0...UInt32.max))"

    init() throws {
        self.server = try RedisServer()
    }

    func store(
        node: String = "node-1", onUnavailable: RedisQuotaStore.UnavailablePolicy = .local, commandTimeout: Duration = .milliseconds(200),
        heartbeat: Duration = .milliseconds(100)
    ) throws -> RedisQuotaStore {
        RedisQuotaStore(configuration: .init(
            endpoint: try RedisEndpoint(url: self.server.url), namespace: self.namespace, connectTimeout: .milliseconds(200),
            commandTimeout: commandTimeout, onUnavailable: onUnavailable, nodeID: node, heartbeatInterval: heartbeat))
    }

    static func candidate(_ name: String, _ limits: ProviderLimits, tokens: Int = 10) -> AdmissionCandidate {
        AdmissionCandidate(provider: name, limits: limits, tokens: tokens, lease: .seconds(60))
    }
}

func admitted(_ d: AdmissionDecision) -> Reservation? {
    if case .admitted(let r) = d { return r }
    return nil
}
