import Foundation
public import Logging
public import MultiplexerCore
public import MultiplexerRedis
public import MultiplexerUpstream

/// Everything one gateway node needs to serve: configuration, the router, the quota store, the upstream
/// client, key authentication, metrics and readiness. Routes call into it; it holds no per-request state.
public final class Gateway: Sendable {
    public let configuration: GatewayConfiguration
    public let table: RoutingTable
    public let router: Router<ContinuousClock>
    /// The quota store (Redis, or in-memory without a `redis:` section).
    public let store: any QuotaStore
    /// The Redis store, when configured (for readiness and heartbeats).
    public let redisStore: RedisQuotaStore?
    public let transport: OpenAIUpstreamTransport
    public let metrics: GatewayMetrics
    public let logger: Logger
    public let nodeID: String
    let keys: KeyAuthenticator
    let state = GatewayState()
    private let requestCounter = RequestIDs()

    /// Assembles a node from its configuration.
    ///
    /// - Parameters:
    ///   - configuration: the validated configuration.
    ///   - client: the libcurl client (owned by the caller, who runs and shuts it down).
    ///   - logger: the application's logger.
    ///   - store: overrides the store the configuration implies (tests).
    public init(configuration: GatewayConfiguration, client: CurlClient, logger: Logger, store: (any QuotaStore)? = nil) throws {
        self.configuration = configuration
        self.table = try configuration.routingTable()
        self.nodeID = configuration.server.nodeID ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        if let store {
            self.store = store
            self.redisStore = store as? RedisQuotaStore
        } else if let redis = configuration.redis {
            let topology: RedisTopology
            switch redis.topology {
            case .standalone(let url): topology = try RedisTopology(url: url)
            case .sentinel(let sentinels, let master):
                topology = try RedisTopology(sentinels: sentinels, masterName: master, password: redis.password)
            case .cluster(let seeds): topology = try RedisTopology(cluster: seeds, password: redis.password)
            }
            let r = RedisQuotaStore(configuration: .init(
                topology: topology, namespace: redis.namespace, connectTimeout: .milliseconds(max(200, Int64(redis.timeoutMs))),
                commandTimeout: .milliseconds(Int64(redis.timeoutMs)),
                onUnavailable: redis.onUnavailable == .local ? .local : .reject, nodeID: self.nodeID))
            self.store = r
            self.redisStore = r
        } else {
            self.store = InMemoryQuotaStore()
            self.redisStore = nil
        }
        self.metrics = GatewayMetrics()
        self.router = Router(
            table: self.table, store: InstrumentedQuotaStore(base: self.store, metrics: self.metrics), clock: ContinuousClock(),
            wallClock: { Date().timeIntervalSince1970 })
        self.transport = OpenAIUpstreamTransport(client: client)
        self.logger = logger
        self.keys = KeyAuthenticator(keys: configuration.keys)
    }

    /// A new request id: node-unique, sortable by time.
    func nextRequestID() -> String { self.requestCounter.next(node: self.nodeID) }

    /// `ready`, `degraded`, or `nil` while starting or draining.
    var readiness: String? {
        guard self.state.current == .ready else { return nil }
        guard let r = self.redisStore else { return "ready" }
        switch r.availability {
        case .connected: return "ready"
        case .degraded: return "degraded"
        case .unavailable: return nil
        }
    }
}

/// Request ids: `req-<node>-<process start, base 36>-<counter, base 36>`, unique across the fleet (node ids
/// are) and across restarts of one node (the start time). The node id is cut to 64 characters of
/// `[A-Za-z0-9._-]`.
final class RequestIDs: Sendable {
    private let counter = Atomic<UInt64>(0)
    private let start = String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36)
    func next(node: String) -> String {
        let n = self.counter.add(1, ordering: .relaxed).newValue
        let safe = String(String.UnicodeScalarView(node.unicodeScalars.prefix(64).filter {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-")
        }))
        return "req-\(safe)-\(self.start)-\(String(n, radix: 36))"
    }
}

import Synchronization
