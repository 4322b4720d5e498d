import Foundation
import MultiplexerCore
import MultiplexerRedis
import MultiplexerProcesses
import MultiplexerTestSupport

/// Stores on a dedicated `redis-server` (tests here stop and restart it).
struct RedisFixture {
    let server: RedisServer
    let namespace = "r\(UInt32.random(in: 0...UInt32.max))"

    init(persistent: Bool = false) throws {
        self.server = try RedisServer(persistent: persistent)
    }

    /// `ZCARD` of a key of the fixture's namespace (`provider:p:rpm` …). Like every call that starts a
    /// process or waits for one, it runs off the cooperative pool, which the stores under test need.
    func zcard(_ key: String) async throws -> Int {
        Int(try await self.cli(["ZCARD", "{\(self.namespace)}:\(key)"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// The `_sum` of a token window (`provider:p:tpm` …).
    func tokenSum(_ key: String) async throws -> Int {
        Int(try await self.cli(["HGET", "{\(self.namespace)}:\(key):amounts", "_sum"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// `redis-cli --raw` against the fixture's server, off the cooperative pool.
    func cli(_ args: [String]) async throws -> String {
        let server = self.server
        return try await offCooperativePool { try server.rawCLI(args) }
    }

    /// Stops the server (off the cooperative pool: a SIGTERM waits for Redis to write its AOF and exit).
    func stop(signal: Int32 = SIGKILL) async throws {
        let server = self.server
        await offCooperativePool { server.stop(signal: signal) }
    }

    /// Starts the server again (off the cooperative pool: it waits until Redis listens).
    func start() async throws {
        let server = self.server
        try await offCooperativePool { try server.start() }
    }

    func store(
        node: String = "node-1", onUnavailable: RedisQuotaStore.UnavailablePolicy = .local, commandTimeout: Duration = .seconds(1),
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
