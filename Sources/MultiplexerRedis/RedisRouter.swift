/// Turns a ``RedisTopology`` into the connection a ``RedisClient``'s commands go to.
///
/// - standalone: the configured endpoint.
/// - sentinel: asks the sentinels (`SENTINEL get-master-addr-by-name`), connects to the address one
///   names and checks with `ROLE` that it is a master; a replica is never used. ``demoted()`` (a
///   `READONLY` reply) and ``dropPrimary()`` (a broken connection) make the next call ask again.
/// - cluster: reads the slot map (`CLUSTER SLOTS`) from any reachable seed or known node and connects to
///   the master that owns the client's slot. ``moved(to:)`` switches to the node a `MOVED` reply
///   names (and re-reads the map from it); ``sideConnection(to:)`` is the node an `ASK` reply names,
///   used for one command without changing the map.
///
/// ### Threading
/// Not thread-safe: created, used and closed by the worker thread of one ``RedisClient`` only, like the
/// ``RedisConnection``s it owns. Every call may block (connects, sentinel and slot-map queries), which is
/// why it never runs anywhere else.
final class RedisRouter {
    private let topology: RedisTopology
    /// Cluster only: the hash slot the client serves.
    let slot: Int
    private let connectTimeoutMs: Int
    private let commandTimeoutMs: Int

    private var primary: RedisConnection?
    /// Where ``primary`` is (or was last) connected.
    private(set) var primaryAddress: RedisAddress?
    /// Sentinels in the order to ask them: the one that answered last comes first.
    private var sentinels: [RedisAddress] = []
    /// Cluster: the master that owns ``slot``, as last learned.
    private var owner: RedisAddress?
    /// Cluster: seeds plus every node of the last slot map, to read the map from.
    private var knownNodes: [RedisAddress] = []
    /// Cluster: re-read the slot map from the next primary connection (after a `MOVED`).
    private var mapIsStale = false
    /// The `ASK` target of the last redirection, kept while a slot migrates.
    private var side: (address: RedisAddress, connection: RedisConnection)?

    /// Connections opened (data nodes, sentinels and slot-map queries).
    private(set) var connects = 0

    init(topology: RedisTopology, routingKey: String, connectTimeoutMs: Int, commandTimeoutMs: Int) {
        self.topology = topology
        self.slot = RedisHashSlot.slot(forKey: routingKey)
        self.connectTimeoutMs = connectTimeoutMs
        self.commandTimeoutMs = commandTimeoutMs
        switch topology {
        case .standalone(let e): self.primaryAddress = RedisAddress(host: e.host, port: e.port)
        case .sentinel(let s): self.sentinels = s.sentinels
        case .cluster(let c): self.knownNodes = c.seeds
        }
    }

    deinit {
        self.close()
    }

    func close() {
        self.primary?.close()
        self.primary = nil
        self.dropSide()
    }

    /// The connection for the client's commands, resolving the topology first if there is none.
    ///
    /// - Throws: ``RedisError`` (`connectionFailed`) when no suitable server could be reached.
    func primaryConnection() throws(RedisError) -> RedisConnection {
        if let c = self.primary, !c.isBroken { return c }
        self.primary?.close()
        self.primary = nil
        let c: RedisConnection
        switch self.topology {
        case .standalone(let e): c = try self.connect(e)
        case .sentinel(let s): c = try self.discoverMaster(s)
        case .cluster(let cl): c = try self.connectToSlotOwner(cl)
        }
        self.primary = c
        return c
    }

    /// Forgets the primary connection (it broke): the next ``primaryConnection()`` resolves again.
    func dropPrimary() {
        self.primary?.close()
        self.primary = nil
    }

    /// The primary answered `READONLY`: it is a replica now (a failover happened). Ask the sentinels
    /// (or the slot map) again.
    func demoted() {
        self.dropPrimary()
        if case .cluster = self.topology { self.owner = nil }
    }

    /// A `MOVED` reply: the slot is served by `address` now.
    func moved(to address: RedisAddress) {
        guard case .cluster = self.topology else { return }
        if self.owner != address || self.primaryAddress != address { self.dropPrimary() }
        self.owner = address
        self.mapIsStale = true
        self.dropSide()
    }

    /// A connection to the node an `ASK` reply names (kept for the next `ASK` to the same node).
    func sideConnection(to address: RedisAddress) throws(RedisError) -> RedisConnection {
        if let s = self.side, s.address == address, !s.connection.isBroken { return s.connection }
        self.dropSide()
        guard case .cluster(let cl) = self.topology else { throw RedisError(.protocolError, "ASK redirection outside a cluster") }
        let c = try self.connect(cl.endpoint(of: address))
        self.side = (address, c)
        return c
    }

    func dropSide() {
        self.side?.connection.close()
        self.side = nil
    }

    // MARK: Resolution

    private func connect(_ endpoint: RedisEndpoint) throws(RedisError) -> RedisConnection {
        self.connects += 1
        return try RedisConnection(endpoint: endpoint, connectTimeoutMs: self.connectTimeoutMs, commandTimeoutMs: self.commandTimeoutMs)
    }

    private func discoverMaster(_ config: RedisSentinelConfiguration) throws(RedisError) -> RedisConnection {
        var problems: [String] = []
        for (i, sentinel) in self.sentinels.enumerated() {
            let address: RedisAddress
            do {
                let s = try self.connect(config.endpoint(of: sentinel))
                defer { s.close() }
                let reply = try s.command(Self.args("SENTINEL", "get-master-addr-by-name", config.masterName))
                guard let a = reply.array, a.count == 2, let host = a[0].text, let port = a[1].text.flatMap({ Int($0) }) else {
                    problems.append("\(sentinel): \(reply.errorMessage ?? "does not know master '\(config.masterName)'")")
                    continue
                }
                address = RedisAddress(host: host, port: port)
            } catch {
                problems.append("\(sentinel): \(error.message)")
                continue
            }
            do {
                let c = try self.connect(config.endpoint(ofMaster: address))
                let role = try c.command(Self.args("ROLE"))
                guard role.array?.first?.text == "master" else {
                    c.close()
                    problems.append("\(sentinel) named \(address), which is not a master (\(role.array?.first?.text ?? role.errorMessage ?? "?"))")
                    continue
                }
                if i > 0 { self.sentinels.insert(self.sentinels.remove(at: i), at: 0) }
                self.primaryAddress = address
                return c
            } catch {
                problems.append("\(sentinel) named \(address): \(error.message)")
            }
        }
        throw RedisError(.connectionFailed, "no master '\(config.masterName)' reachable through the sentinels: \(problems.joined(separator: "; "))")
    }

    private func connectToSlotOwner(_ config: RedisClusterConfiguration) throws(RedisError) -> RedisConnection {
        var problems: [String] = []
        // The owner we know (from the map or a MOVED) first; the map only when that fails.
        if let owner = self.owner {
            do {
                let c = try self.connect(config.endpoint(of: owner))
                if self.mapIsStale, let map = try? Self.slotMap(from: c, queried: owner) {
                    self.learn(map)
                }
                self.primaryAddress = owner
                return c
            } catch {
                problems.append("\(owner): \(error.message)")
                self.owner = nil
            }
        }
        for node in self.knownNodes {
            let c: RedisConnection
            let map: ClusterSlotMap
            do {
                c = try self.connect(config.endpoint(of: node))
                map = try Self.slotMap(from: c, queried: node)
            } catch {
                problems.append("\(node): \(error.message)")
                continue
            }
            self.learn(map)
            guard let owner = map.owner(of: self.slot) else {
                c.close()
                problems.append("\(node): slot \(self.slot) has no master")
                continue
            }
            self.owner = owner
            if owner == node {
                self.primaryAddress = owner
                return c
            }
            c.close()
            do {
                let oc = try self.connect(config.endpoint(of: owner))
                self.primaryAddress = owner
                return oc
            } catch {
                problems.append("\(owner) (owner of slot \(self.slot)): \(error.message)")
                self.owner = nil
            }
        }
        throw RedisError(.connectionFailed, "no master for slot \(self.slot) reachable through the cluster nodes: \(problems.joined(separator: "; "))")
    }

    private func learn(_ map: ClusterSlotMap) {
        self.mapIsStale = false
        if let o = map.owner(of: self.slot) { self.owner = o }
        guard case .cluster(let config) = self.topology else { return }
        var nodes = map.nodes
        for seed in config.seeds where !nodes.contains(seed) { nodes.append(seed) }
        self.knownNodes = nodes
    }

    private static func slotMap(from c: RedisConnection, queried: RedisAddress) throws(RedisError) -> ClusterSlotMap {
        let reply = try c.command(Self.args("CLUSTER", "SLOTS"))
        guard let map = ClusterSlotMap(reply: reply, queried: queried) else {
            throw RedisError(.protocolError, "unexpected CLUSTER SLOTS reply\(reply.errorMessage.map { ": \($0)" } ?? "")")
        }
        return map
    }

    static func args(_ a: String...) -> [[UInt8]] { a.map { Array($0.utf8) } }
}

@available(*, unavailable)
extension RedisRouter: Sendable {}

/// The masters of a Redis Cluster by slot range, from `CLUSTER SLOTS`.
struct ClusterSlotMap: Hashable {
    struct Range: Hashable {
        var slots: ClosedRange<Int>
        var master: RedisAddress
    }
    var ranges: [Range]

    /// Parses `CLUSTER SLOTS`: `[[start, end, [host, port, id, …], replica…]…]`. An empty or `?` host
    /// means "the node you asked".
    init?(reply: RedisValue, queried: RedisAddress) {
        guard let entries = reply.array else { return nil }
        var ranges: [Range] = []
        for e in entries {
            guard let f = e.array, f.count >= 3, let lo = f[0].int, let hi = f[1].int, lo <= hi, let m = f[2].array, m.count >= 2,
                let port = m[1].int
            else { return nil }
            var host = m[0].text ?? ""
            if host.isEmpty || host == "?" { host = queried.host }
            ranges.append(Range(slots: Int(lo)...Int(hi), master: RedisAddress(host: host, port: Int(port))))
        }
        self.ranges = ranges
    }

    func owner(of slot: Int) -> RedisAddress? {
        self.ranges.first { $0.slots.contains(slot) }?.master
    }

    /// Every master, in map order, once.
    var nodes: [RedisAddress] {
        var out: [RedisAddress] = []
        for r in self.ranges where !out.contains(r.master) { out.append(r.master) }
        return out
    }
}
