import Foundation
public import MultiplexerProcesses

/// A real Redis Cluster of `redis-server` masters (no replicas) on free loopback ports, built with
/// `redis-cli --cluster create`, for tests. Every process stops when this object goes away, and a
/// watchdog kills them if the test process dies first.
public final class RedisCluster: @unchecked Sendable {
    // Safety: every stored property is a `let`; RedisServer is itself thread-safe.
    public let nodes: [RedisServer]

    /// One cluster for a whole test process (several test targets share it); each user takes its own
    /// namespaces. Tests that move slots should build their own.
    public static let shared: Result<RedisCluster, any Error> = Result { try RedisCluster() }

    public enum Failure: Error, CustomStringConvertible {
        case notReady(String)
        case unexpected(String)
        public var description: String {
            switch self {
            case .notReady(let m): "cluster not ready: \(m)"
            case .unexpected(let m): "unexpected cluster state: \(m)"
            }
        }
    }

    /// Starts `masters` cluster-enabled servers, joins them and waits until every node reports
    /// `cluster_state:ok`.
    public init(masters: Int = 3, timeout: Duration = .seconds(30)) throws {
        precondition(masters >= 3, "redis-cli --cluster create needs at least 3 masters")
        var nodes: [RedisServer] = []
        for _ in 0..<masters {
            // The bus port is set explicitly: the default (port + 10000) overflows for high free ports.
            nodes.append(
                try RedisServer(extraArguments: [
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "3000",
                    "--cluster-port", String(LocalPorts.free()),
                ]))
        }
        self.nodes = nodes
        let out = try RedisCLI.run(
            ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-replicas", "0", "--cluster-yes"], timeout: timeout)
        guard out.contains("All 16384 slots covered") else { throw Failure.notReady(out) }
        let deadline = Date().addingTimeInterval(timeout.timeInterval)
        while true {
            let ok = try nodes.allSatisfy { n in
                let info = try n.cli(["CLUSTER", "INFO"])
                return info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:\(masters)")
            }
            if ok { return }
            guard Date() < deadline else { throw Failure.notReady("cluster_state not ok after \(timeout)") }
            usleep(50_000)
        }
    }

    /// ``shared``, created off the cooperative pool.
    public static func sharedCluster() async throws -> RedisCluster {
        try await offCooperativePool { try Self.shared.get() }
    }

    /// `127.0.0.1:<port>` of every node, for a client's seed list.
    public var seeds: [String] { self.nodes.map { "127.0.0.1:\($0.port)" } }

    /// `CLUSTER KEYSLOT key`, as the server computes it.
    public func keySlot(_ key: String) throws -> Int {
        let out = try self.nodes[0].rawCLI(["CLUSTER", "KEYSLOT", key]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let n = Int(out) else { throw Failure.unexpected("CLUSTER KEYSLOT: \(out)") }
        return n
    }

    /// The node's cluster id (`CLUSTER MYID`).
    public func nodeID(_ node: RedisServer) throws -> String {
        try node.rawCLI(["CLUSTER", "MYID"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The master that claims `slot` in its own `CLUSTER NODES` line.
    public func owner(ofSlot slot: Int) throws -> RedisServer {
        for n in self.nodes {
            let lines = try n.rawCLI(["CLUSTER", "NODES"]).split(separator: "\n")
            guard let me = lines.first(where: { $0.contains("myself") }) else { continue }
            for field in me.split(separator: " ").dropFirst(8) where !field.hasPrefix("[") {
                let bounds = field.split(separator: "-").compactMap { Int($0) }
                if bounds.count == 1, bounds[0] == slot { return n }
                if bounds.count == 2, (bounds[0]...bounds[1]).contains(slot) { return n }
            }
        }
        throw Failure.unexpected("no node claims slot \(slot)")
    }

    /// Moves `slot` with all its keys from its owner to `target`, the way `redis-cli --cluster reshard`
    /// does, but with every key of the slot in one `MIGRATE … KEYS` (so a namespace moves atomically):
    /// `SETSLOT IMPORTING` on the target, `SETSLOT MIGRATING` on the source, `MIGRATE`, then
    /// `SETSLOT NODE` on the target, the source and every other master.
    ///
    /// - Parameter phase: called in each phase before moving on (``MigrationPhase``), e.g. to wait
    ///   until clients have met it.
    public func migrate(slot: Int, to target: RedisServer, phase: (MigrationPhase) throws -> Void = { _ in }) throws {
        let source = try self.owner(ofSlot: slot)
        guard source.port != target.port else { return }
        let sourceID = try self.nodeID(source), targetID = try self.nodeID(target)
        try Self.expectOK(try target.rawCLI(["CLUSTER", "SETSLOT", String(slot), "IMPORTING", sourceID]))
        try Self.expectOK(try source.rawCLI(["CLUSTER", "SETSLOT", String(slot), "MIGRATING", targetID]))
        try phase(.migrating)
        while true {
            let keys = try source.rawCLI(["CLUSTER", "GETKEYSINSLOT", String(slot), "100000"]).split(separator: "\n").map(String.init)
            if keys.isEmpty { break }
            let out = try source.rawCLI(["MIGRATE", "127.0.0.1", String(target.port), "", "0", "5000", "KEYS"] + keys)
            guard out.contains("OK") || out.contains("NOKEY") else { throw Failure.unexpected("MIGRATE: \(out)") }
        }
        try phase(.keysMoved)
        try Self.expectOK(try target.rawCLI(["CLUSTER", "SETSLOT", String(slot), "NODE", targetID]))
        try Self.expectOK(try source.rawCLI(["CLUSTER", "SETSLOT", String(slot), "NODE", targetID]))
        for n in self.nodes where n.port != source.port && n.port != target.port {
            try Self.expectOK(try n.rawCLI(["CLUSTER", "SETSLOT", String(slot), "NODE", targetID]))
        }
    }

    /// The steps of ``migrate(slot:to:phase:)``.
    public enum MigrationPhase: Sendable {
        /// `IMPORTING` on the target and `MIGRATING` on the source are set; no key has moved. Scripts
        /// on the source stop at keys it does not have; commands on absent keys get `ASK`.
        case migrating
        /// Every key is on the target; the source answers `ASK` for them; `SETSLOT NODE` comes next.
        case keysMoved
    }

    private static func expectOK(_ out: String) throws {
        guard out.hasPrefix("OK") else { throw Failure.unexpected(out) }
    }
}

extension Duration {
    /// This duration in seconds, as a `Double`.
    var timeInterval: Double {
        Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
    }
}
