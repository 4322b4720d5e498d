import Foundation
import Synchronization
public import Logging
public import MultiplexerCore
public import MultiplexerRedis
public import MultiplexerUpstream
public import Tracing

/// Everything one gateway node needs to serve: configuration, the router, the quota store, the upstream
/// client, key authentication, metrics and readiness. Routes call into it; it holds no per-request state.
public final class Gateway: Sendable {
    /// The configuration in force (replaced by a reload, §4 Reload). A request takes one ``snapshot`` when it
    /// starts and is served by it to its end, whatever is reloaded meanwhile.
    public var configuration: GatewayConfiguration { self.snapshot.configuration }
    public var table: RoutingTable { self.snapshot.table }
    public var router: Router<ContinuousClock> { self.snapshot.router }
    /// The quota store (Redis, or in-memory without a `redis:` section).
    public let store: any QuotaStore
    /// The Redis store, when configured (for readiness and heartbeats).
    public let redisStore: RedisQuotaStore?
    public let transport: OpenAIUpstreamTransport
    public let metrics: GatewayMetrics
    public let logger: Logger
    /// Traces requests, admissions and upstream attempts (`tracing:`); `nil`: no spans.
    public let tracer: (any Tracer)?
    /// `server.log_format: json`: records are JSON objects (fixed at start).
    let jsonLogs: Bool
    public let nodeID: String
    var keys: KeyAuthenticator { self.snapshot.keys }
    /// Client keys created at run time (`/admin/keys`, `multiplexer keys`): shared by every configuration.
    let runtimeKeys = RuntimeKeyRegistry()
    /// The last upstream failures seen by this node (the dashboard's "recent errors").
    let recentErrors = RecentErrors()
    /// Where a reload reads the configuration from; `nil`: this node cannot reload (built from a value).
    let source: ConfigurationSource?
    private let current: Mutex<GatewaySnapshot>
    /// Serialises reloads (SIGHUP, `POST /admin/reload` and the file watcher may coincide).
    let reloading = Mutex<Void>(())
    let state = GatewayState()
    private let requestCounter = RequestIDs()

    /// Assembles a node from its configuration.
    ///
    /// - Parameters:
    ///   - configuration: the validated configuration.
    ///   - client: the libcurl client (owned by the caller, who runs and shuts it down).
    ///   - logger: the application's logger.
    ///   - store: overrides the store the configuration implies (tests).
    ///   - source: the file (and command-line overrides) a reload reads; `nil`: no reload.
    ///   - tracer: traces requests (a server span each), admissions and upstream attempts; `nil`: none.
    ///   - metrics: the node's metrics (made here when `nil`).
    public init(
        configuration: GatewayConfiguration, client: CurlClient, logger: Logger, store: (any QuotaStore)? = nil, source: ConfigurationSource? = nil,
        tracer: (any Tracer)? = nil, metrics: GatewayMetrics? = nil
    ) throws {
        self.tracer = tracer
        self.jsonLogs = configuration.server.logFormat == .json
        let table = try configuration.routingTable()
        self.source = source
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
        self.metrics = metrics ?? GatewayMetrics()
        let router = Router(
            table: table, store: InstrumentedQuotaStore(base: self.store, metrics: self.metrics, logger: logger), clock: ContinuousClock(),
            wallClock: { Date().timeIntervalSince1970 }, tracer: tracer, observer: self.metrics)
        self.current = Mutex(GatewaySnapshot(configuration: configuration, table: table, router: router, keys: KeyAuthenticator(keys: configuration.keys), generation: 1))
        self.transport = OpenAIUpstreamTransport(client: client)
        self.logger = logger
    }

    /// The configuration, routing table, router and file keys in force now.
    var snapshot: GatewaySnapshot { self.current.withLock { $0 } }

    /// Makes `configuration` (validated) the one in force; returns the new snapshot.
    func install(_ configuration: GatewayConfiguration, table: RoutingTable) -> GatewaySnapshot {
        let router = Router(
            table: table, store: InstrumentedQuotaStore(base: self.store, metrics: self.metrics, logger: self.logger), clock: ContinuousClock(),
            wallClock: { Date().timeIntervalSince1970 }, tracer: self.tracer, observer: self.metrics)
        return self.current.withLock { s in
            s = GatewaySnapshot(configuration: configuration, table: table, router: router, keys: KeyAuthenticator(keys: configuration.keys), generation: s.generation + 1)
            return s
        }
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
    /// `req-<node>-<start>-` for the last node id asked for (built once, not per request).
    private let prefix = Mutex<(node: String, prefix: String)?>(nil)

    func next(node: String) -> String {
        let n = self.counter.add(1, ordering: .relaxed).newValue
        let prefix = self.prefix.withLock { cached -> String in
            if let c = cached, c.node == node { return c.prefix }
            let safe = String(String.UnicodeScalarView(node.unicodeScalars.prefix(64).filter {
                $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-")
            }))
            let built = "req-\(safe)-\(self.start)-"
            cached = (node, built)
            return built
        }
        return prefix + String(n, radix: 36)
    }
}

import Synchronization

/// One configuration in force: what a request is served by from its start to its end.
final class GatewaySnapshot: Sendable {
    let configuration: GatewayConfiguration
    let table: RoutingTable
    let router: Router<ContinuousClock>
    /// The configuration file's client keys.
    let keys: KeyAuthenticator
    /// 1 at start, one more per reload applied.
    let generation: Int

    init(configuration: GatewayConfiguration, table: RoutingTable, router: Router<ContinuousClock>, keys: KeyAuthenticator, generation: Int) {
        self.configuration = configuration
        self.table = table
        self.router = router
        self.keys = keys
        self.generation = generation
    }
}

/// Where a node's configuration comes from, for reloads: the file, and the command-line values that
/// override it (they keep overriding after a reload).
public struct ConfigurationSource: Sendable {
    public var path: String
    public var host: String?
    public var port: Int?
    public var nodeID: String?

    public init(path: String, host: String? = nil, port: Int? = nil, nodeID: String? = nil) {
        self.path = path
        self.host = host
        self.port = port
        self.nodeID = nodeID
    }

    /// Loads and validates the file, with the overrides applied.
    ///
    /// - Throws: ``ConfigurationError`` with every problem (key path and line).
    public func load() throws(ConfigurationError) -> GatewayConfiguration {
        var c = try ConfigurationLoader.load(path: self.path)
        if let h = self.host { c.server.host = h }
        if let p = self.port { c.server.port = p }
        if let n = self.nodeID { c.server.nodeID = n }
        return c
    }
}
