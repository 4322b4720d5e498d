public import MultiplexerCore
public import MultiplexerUpstream

/// The gateway's configuration: the YAML file of ARCHITECTURE §4, validated.
///
/// Load it with ``ConfigurationLoader``. Provider API keys, client keys and the admin key are secrets:
/// ``description`` never shows them.
public struct GatewayConfiguration: Sendable, CustomStringConvertible {
    /// `server:`
    public struct Server: Sendable, Hashable {
        public var host = "127.0.0.1"
        public var port = 8080
        /// This node's id in the live-node registry; default `hostname-pid`.
        public var nodeID: String?
        public var maxBodyBytes = 10_485_760
        /// `client_write_timeout_seconds`: a client whose connection accepts no bytes this long (counted from
        /// when the gateway's writes stop making progress) is disconnected, its upstream transfer cancelled and
        /// its reservation settled.
        public var clientWriteTimeout: Duration = .seconds(30)
        /// `header_timeout_seconds`: a request head must be complete this long after the connection's accept
        /// (first request) or the first byte of the next request (keep-alive); a request body whose bytes stop
        /// arriving this long is abandoned too.
        public var headerTimeout: Duration = .seconds(10)
        /// `idle_timeout_seconds`: a keep-alive connection on which no byte of a next request arrives this long
        /// after the previous response's end is closed.
        public var idleTimeout: Duration = .seconds(75)
        /// `max_connections`: client connections accepted at once; beyond, new ones wait in the listen backlog.
        public var maxConnections = 10_000
        /// `passthrough`: `POST /v1/<op>` routed by the body's `model` besides chat/completions, completions and
        /// embeddings; any other `/v1` path answers 404 `unknown_route`.
        public var passthrough: [String] = ["responses", "messages", "moderations", "rerank", "images/generations", "audio/speech"]
        /// `log_format`: `text` (one line per record, the README's shape) or `json` (one JSON object per line).
        public var logFormat: LogFormat = .text
        public init() {}
    }

    /// How log records are written.
    public enum LogFormat: String, Sendable, Hashable, CaseIterable {
        case text
        case json
    }

    /// `tracing:` — OpenTelemetry traces over OTLP/HTTP (protobuf).
    public struct Tracing: Sendable, Hashable {
        /// `otlp_endpoint`: the collector's base URL; spans go to `<otlp_endpoint>/v1/traces`.
        public var otlpEndpoint: String
        /// `service_name` (`service.name` of every span).
        public var serviceName = "multiplexer"
        /// `sample_ratio`: the share of the traces this node starts that are sampled (a client's `traceparent`
        /// decides for the traces it continues).
        public var sampleRatio = 1.0
        public init(otlpEndpoint: String) {
            self.otlpEndpoint = otlpEndpoint
        }

        /// Where spans are sent: the endpoint with `/v1/traces` appended.
        public var tracesURL: String {
            var base = Substring(self.otlpEndpoint)
            while base.last == "/" { base.removeLast() }
            return base + "/v1/traces"
        }
    }

    /// How to reach Redis.
    public enum RedisTopology: Sendable, Hashable {
        case standalone(url: String)
        case sentinel(sentinels: [String], masterName: String)
        case cluster(seeds: [String])
    }

    /// What a node does while Redis is unreachable.
    public enum UnavailablePolicy: String, Sendable, Hashable {
        case local
        case reject
    }

    /// `redis:`; absent means a single node with the in-memory store.
    public struct Redis: Sendable, Hashable {
        public var topology: RedisTopology
        public var namespace = "mux"
        public var timeoutMs = 50
        public var onUnavailable = UnavailablePolicy.local
        /// AUTH password for Sentinel- or Cluster-managed data nodes (a `url` carries its own).
        public var password: String?
        public init(topology: RedisTopology) {
            self.topology = topology
        }
    }

    /// A client key's credential.
    public enum KeySecret: Sendable, Hashable {
        /// The key itself (from the file or an environment variable).
        case plain(String)
        /// Lower-case hex SHA-256 of the key.
        case sha256(String)
    }

    /// `keys[]`
    public struct Key: Sendable, Hashable {
        public var name: String
        public var secret: KeySecret
        public var limits = KeyLimits()
        /// Allowed model groups (by group name); `nil` allows all.
        public var models: Set<String>?

        /// The key as the router sees it.
        public var clientKey: ClientKey { ClientKey(name: self.name, limits: self.limits, models: self.models) }
    }

    public var server = Server()
    public var redis: Redis?
    public var providers: [Provider] = []
    public var models: [ModelGroup] = []
    public var defaultModel: String?
    /// Client keys; empty allows anonymous use.
    public var keys: [Key] = []
    /// The file has a `keys` section (even `keys: []`): clients must present a key. Without one, anonymous use
    /// is allowed while no run-time key exists.
    public var keysRequired = false
    /// Protects `/admin/*`; without it `/admin/*` is off.
    public var adminKey: String?
    /// `tracing:`; absent: no traces.
    public var tracing: Tracing?
    /// Valid but risky settings (e.g. `tls.verify: false`), each with its key path and line.
    public var warnings: [ConfigurationError.Problem] = []

    public init() {}

    /// The routing table of these providers and model groups.
    public func routingTable() throws -> RoutingTable {
        let groupName = self.defaultModel.flatMap { d in self.models.first { $0.name == d || $0.aliases.contains(d) }?.name }
        return try RoutingTable(providers: self.providers, groups: self.models, defaultGroup: groupName)
    }

    /// The upstream connection pool for these providers.
    ///
    /// Concurrent calls to one provider never wait for one another: no per-host or total connection limit is
    /// set (the fleet-wide `max_concurrent` limits, enforced at admission, are the bound), so each call gets
    /// its own HTTP/1.1 connection or an HTTP/2 stream at once. Connections are kept alive for reuse: the
    /// cache keeps as many as the providers may have in flight (each provider's `max_concurrent`, or 256 for
    /// one without), at least 256 and at most 8,192 in all.
    public var upstreamClientConfiguration: CurlClient.Configuration {
        let perProvider = self.providers.map { $0.limits.maxConcurrent ?? 256 }.reduce(0, +)
        return CurlClient.Configuration(
            maxCachedConnections: min(8192, max(256, perProvider)), maxConnectionsPerHost: 0, maxTotalConnections: 0,
            maxIdleHandles: min(8192, max(256, perProvider)))
    }

    public var description: String {
        "GatewayConfiguration(server: \(self.server.host):\(self.server.port), redis: \(self.redis.map { "\($0.namespace)" } ?? "none"), providers: \(self.providers.map(\.name)), models: \(self.models.map(\.name)), keys: \(self.keys.map(\.name)), adminKey: \(self.adminKey == nil ? "none" : "<redacted>"))"
    }
}
