/// Where a ``RedisClient`` finds the server that takes its commands.
///
/// - ``standalone(_:)``: one server at a fixed address (`redis.url`).
/// - ``sentinel(_:)``: a master found through Redis Sentinel (`redis.sentinels` + `redis.master_name`),
///   re-discovered after a failover.
/// - ``cluster(_:)``: a Redis Cluster found through seed nodes (`redis.cluster`); the client sends its
///   commands to the master that owns its routing key's hash slot and follows `MOVED`/`ASK`.
///
/// hiredis 0.14 knows none of this: the resolution lives in the client's worker thread (`RedisRouter`).
public enum RedisTopology: Sendable, Hashable, CustomStringConvertible {
    case standalone(RedisEndpoint)
    case sentinel(RedisSentinelConfiguration)
    case cluster(RedisClusterConfiguration)

    public var description: String {
        switch self {
        case .standalone(let e): e.description
        case .sentinel(let s): "sentinel(\(s.masterName) via \(s.sentinels.map(\.description).joined(separator: ",")))"
        case .cluster(let c): "cluster(\(c.seeds.map(\.description).joined(separator: ",")))"
        }
    }

    /// Builds the topology from the `redis:` configuration keys (ARCHITECTURE §4): exactly one of `url`,
    /// `sentinels` (with `master_name`) or `cluster`.
    ///
    /// - Parameters:
    ///   - url: `redis.url`, a `redis://` URL.
    ///   - sentinels: `redis.sentinels`, `host:port` of each sentinel (port defaults to 26379).
    ///   - masterName: `redis.master_name`, the name the sentinels monitor.
    ///   - cluster: `redis.cluster`, `host:port` seed nodes (port defaults to 6379).
    ///   - username: `redis.username`, the ACL user of the data nodes (sentinel and cluster only).
    ///   - password: `redis.password`, the data nodes' password (sentinel and cluster only; a URL carries its own).
    ///   - sentinelPassword: `redis.sentinel_password`, the sentinels' own password (`requirepass` in sentinel.conf).
    ///   - database: `redis.database`, sentinel only (a cluster has only database 0).
    /// - Throws: ``RedisError`` with code `invalidConfiguration`, naming the key path.
    public init(
        url: String? = nil, sentinels: [String]? = nil, masterName: String? = nil, cluster: [String]? = nil,
        username: String? = nil, password: String? = nil, sentinelPassword: String? = nil, database: Int = 0
    ) throws(RedisError) {
        let chosen = [url != nil, sentinels != nil, cluster != nil].filter { $0 }.count
        guard chosen == 1 else {
            throw RedisError(.invalidConfiguration, "redis: set exactly one of url, sentinels (with master_name) or cluster")
        }
        if let url {
            guard masterName == nil, password == nil, username == nil, sentinelPassword == nil else {
                throw RedisError(
                    .invalidConfiguration,
                    "redis: master_name, username, password and sentinel_password go with sentinels or cluster; put url credentials in the url")
            }
            do {
                self = .standalone(try RedisEndpoint(url: url))
            } catch {
                throw RedisError(.invalidConfiguration, "redis.url: \((error as? RedisError)?.message ?? "invalid")")
            }
        } else if let sentinels {
            guard let masterName, !masterName.isEmpty else { throw RedisError(.invalidConfiguration, "redis.master_name: required with sentinels") }
            guard !sentinels.isEmpty else { throw RedisError(.invalidConfiguration, "redis.sentinels: list at least one sentinel") }
            guard database >= 0 else { throw RedisError(.invalidConfiguration, "redis.database: must be a non-negative integer") }
            var addresses: [RedisAddress] = []
            for (i, s) in sentinels.enumerated() {
                do {
                    addresses.append(try RedisAddress(s, defaultPort: 26379))
                } catch {
                    throw RedisError(.invalidConfiguration, "redis.sentinels[\(i)]: \(error.message)")
                }
            }
            self = .sentinel(
                RedisSentinelConfiguration(
                    sentinels: addresses, masterName: masterName, username: username, password: password, database: database,
                    sentinelPassword: sentinelPassword))
        } else if let cluster {
            guard masterName == nil else { throw RedisError(.invalidConfiguration, "redis.master_name: only with sentinels") }
            guard sentinelPassword == nil else { throw RedisError(.invalidConfiguration, "redis.sentinel_password: only with sentinels") }
            guard database == 0 else { throw RedisError(.invalidConfiguration, "redis.database: a Redis Cluster has only database 0") }
            guard !cluster.isEmpty else { throw RedisError(.invalidConfiguration, "redis.cluster: list at least one seed node") }
            var addresses: [RedisAddress] = []
            for (i, s) in cluster.enumerated() {
                do {
                    addresses.append(try RedisAddress(s, defaultPort: 6379))
                } catch {
                    throw RedisError(.invalidConfiguration, "redis.cluster[\(i)]: \(error.message)")
                }
            }
            self = .cluster(RedisClusterConfiguration(seeds: addresses, username: username, password: password))
        } else {
            preconditionFailure("unreachable")
        }
    }
}

/// A node's `host:port`.
public struct RedisAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `host` (with `defaultPort`) or `[v6]:port`.
    ///
    /// - Throws: ``RedisError`` with code `invalidURL`.
    public init(_ text: String, defaultPort: Int) throws(RedisError) {
        var host = text, port = defaultPort
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw RedisError(.invalidURL, "unclosed IPv6 bracket in '\(text)'") }
            host = String(text[text.index(after: text.startIndex)..<close])
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw RedisError(.invalidURL, "bad port in '\(text)'") }
                port = p
            } else if !after.isEmpty {
                throw RedisError(.invalidURL, "unexpected '\(after)' in '\(text)'")
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            guard let p = Int(text[text.index(after: colon)...]), (1...65535).contains(p) else { throw RedisError(.invalidURL, "bad port in '\(text)'") }
            port = p
        }
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else {
            throw RedisError(.invalidURL, "bad host in '\(text)' (expected host:port)")
        }
        self.init(host: host, port: port)
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

/// A master found through Redis Sentinel.
public struct RedisSentinelConfiguration: Sendable, Hashable {
    /// The sentinels, asked in turn (the one that answered last is asked first).
    public var sentinels: [RedisAddress]
    /// The name in `sentinel monitor <name> …`.
    public var masterName: String
    /// ACL user of the master (and replicas).
    public var username: String?
    /// Password of the master (and replicas); never printed.
    public var password: String?
    public var database: Int
    /// ACL user of the sentinels.
    public var sentinelUsername: String?
    /// The sentinels' own password (`requirepass` in sentinel.conf); never printed.
    public var sentinelPassword: String?

    public init(
        sentinels: [RedisAddress], masterName: String, username: String? = nil, password: String? = nil, database: Int = 0,
        sentinelUsername: String? = nil, sentinelPassword: String? = nil
    ) {
        self.sentinels = sentinels
        self.masterName = masterName
        self.username = username
        self.password = password
        self.database = database
        self.sentinelUsername = sentinelUsername
        self.sentinelPassword = sentinelPassword
    }

    func endpoint(of sentinel: RedisAddress) -> RedisEndpoint {
        RedisEndpoint(host: sentinel.host, port: sentinel.port, username: self.sentinelUsername, password: self.sentinelPassword)
    }

    func endpoint(ofMaster master: RedisAddress) -> RedisEndpoint {
        RedisEndpoint(host: master.host, port: master.port, database: self.database, username: self.username, password: self.password)
    }
}

/// A Redis Cluster found through seed nodes.
public struct RedisClusterConfiguration: Sendable, Hashable {
    /// Nodes to read the slot map (`CLUSTER SLOTS`) from; any reachable one will do.
    public var seeds: [RedisAddress]
    /// ACL user of every node.
    public var username: String?
    /// Password of every node; never printed.
    public var password: String?

    public init(seeds: [RedisAddress], username: String? = nil, password: String? = nil) {
        self.seeds = seeds
        self.username = username
        self.password = password
    }

    func endpoint(of node: RedisAddress) -> RedisEndpoint {
        RedisEndpoint(host: node.host, port: node.port, username: self.username, password: self.password)
    }
}
