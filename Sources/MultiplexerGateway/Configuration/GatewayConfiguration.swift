public import MultiplexerCore

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
        public init() {}
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
    /// Protects `/admin/*`; without it `/admin/*` is off.
    public var adminKey: String?

    public init() {}

    /// The routing table of these providers and model groups.
    public func routingTable() throws -> RoutingTable {
        let groupName = self.defaultModel.flatMap { d in self.models.first { $0.name == d || $0.aliases.contains(d) }?.name }
        return try RoutingTable(providers: self.providers, groups: self.models, defaultGroup: groupName)
    }

    public var description: String {
        "GatewayConfiguration(server: \(self.server.host):\(self.server.port), redis: \(self.redis.map { "\($0.namespace)" } ?? "none"), providers: \(self.providers.map(\.name)), models: \(self.models.map(\.name)), keys: \(self.keys.map(\.name)), adminKey: \(self.adminKey == nil ? "none" : "<redacted>"))"
    }
}
