import Foundation
public import MultiplexerProcesses

/// A real Redis Sentinel deployment for tests: a master, one replica and `sentinelCount` sentinels
/// (`sentinel monitor <masterName> 127.0.0.1 <port> <quorum>`), all on free loopback ports, with the
/// sentinels' config files in a temporary directory (sentinels rewrite them). Every process stops when
/// this object goes away, and a watchdog kills them if the test process dies first.
public final class RedisSentinelSetup: @unchecked Sendable {
    // Safety: every stored property is a `let`; RedisServer and ManagedProcess are thread-safe.
    public let masterName: String
    public let master: RedisServer
    public let replica: RedisServer
    public let sentinelPorts: [Int]
    public let directory: String
    private let sentinels: [ManagedProcess]

    public enum Failure: Error, CustomStringConvertible {
        case notReady(String)
        case noFailover(String)
        public var description: String {
            switch self {
            case .notReady(let m): "sentinel setup not ready: \(m)"
            case .noFailover(let m): "no failover: \(m)"
            }
        }
    }

    /// Starts everything and waits until the replica is in sync and every sentinel knows the replica
    /// and the other sentinels (without that, a failover cannot reach its quorum).
    public init(
        masterName: String = "mymaster", sentinelCount: Int = 3, quorum: Int = 2, downAfter: Duration = .seconds(1),
        failoverTimeout: Duration = .seconds(5), timeout: Duration = .seconds(30)
    ) throws {
        self.masterName = masterName
        self.master = try RedisServer()
        self.replica = try RedisServer(extraArguments: ["--replicaof", "127.0.0.1", String(self.master.port)])
        self.directory = NSTemporaryDirectory() + "mux-sentinel-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        guard let exe = ManagedProcess.which("redis-sentinel") ?? ManagedProcess.which("redis-server") else { throw RedisServer.Failure.notInstalled }
        var ports: [Int] = []
        var processes: [ManagedProcess] = []
        for i in 0..<sentinelCount {
            let port = LocalPorts.free()
            let dir = self.directory + "/sentinel-\(i)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let conf = """
                port \(port)
                bind 127.0.0.1
                daemonize no
                dir \(dir)
                sentinel monitor \(masterName) 127.0.0.1 \(self.master.port) \(quorum)
                sentinel down-after-milliseconds \(masterName) \(Int(downAfter.timeInterval * 1000))
                sentinel failover-timeout \(masterName) \(Int(failoverTimeout.timeInterval * 1000))
                sentinel parallel-syncs \(masterName) 1

                """
            try conf.write(toFile: dir + "/sentinel.conf", atomically: true, encoding: .utf8)
            processes.append(
                try ManagedProcess(name: "sentinel-\(port)", executable: exe, arguments: [dir + "/sentinel.conf", "--sentinel"], logPath: dir + "/sentinel.log"))
            ports.append(port)
        }
        self.sentinels = processes
        self.sentinelPorts = ports
        let deadline = Date().addingTimeInterval(timeout.timeInterval)
        while true {
            let replicaSynced = (try? self.replica.cli(["INFO", "replication"]))?.contains("master_link_status:up") ?? false
            let sentinelsReady = ports.allSatisfy { p in
                guard let fields = try? self.sentinelFields(port: p, ["SENTINEL", "MASTER", masterName]) else { return false }
                return fields["num-slaves"] == "1" && fields["num-other-sentinels"] == String(sentinelCount - 1)
            }
            if replicaSynced && sentinelsReady { return }
            guard Date() < deadline else {
                throw Failure.notReady("replica synced: \(replicaSynced), sentinels ready: \(sentinelsReady) after \(timeout)")
            }
            usleep(100_000)
        }
    }

    /// Builds a setup off the cooperative pool (start-up blocks for a few seconds).
    public static func start(masterName: String = "mymaster") async throws -> RedisSentinelSetup {
        try await offCooperativePool { try RedisSentinelSetup(masterName: masterName) }
    }

    deinit {
        for s in self.sentinels { s.stop(signal: SIGKILL) }
        self.master.stop()
        self.replica.stop()
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// `127.0.0.1:<port>` of every sentinel, for a client's sentinel list.
    public var sentinelAddresses: [String] { self.sentinelPorts.map { "127.0.0.1:\($0)" } }

    /// The master's port as the first sentinel that answers reports it.
    public func reportedMasterPort() -> Int? {
        for p in self.sentinelPorts {
            guard let out = try? RedisCLI.run(["-p", String(p), "--raw", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.masterName]) else { continue }
            let lines = out.split(separator: "\n")
            if lines.count == 2, let port = Int(lines[1]) { return port }
        }
        return nil
    }

    /// The port of a master other than `oldPort`, once the sentinels report one and that server says
    /// it is a master (`ROLE`); `nil` until then.
    public func promotedMasterPort(otherThan oldPort: Int) -> Int? {
        guard let p = self.reportedMasterPort(), p != oldPort,
            let role = try? RedisCLI.run(["-p", String(p), "--raw", "ROLE"], timeout: .seconds(5)), role.hasPrefix("master")
        else { return nil }
        return p
    }

    /// The data server (master or replica) on `port`.
    public func server(port: Int) -> RedisServer? {
        [self.master, self.replica].first { $0.port == port }
    }

    /// Runs `redis-cli` against every sentinel; returns their outputs.
    @discardableResult
    public func sentinelCLI(_ args: [String]) throws -> [String] {
        try self.sentinelPorts.map { try RedisCLI.run(["-p", String($0), "--raw"] + args, timeout: .seconds(5)) }
    }

    private func sentinelFields(port: Int, _ args: [String]) throws -> [String: String] {
        let lines = try RedisCLI.run(["-p", String(port), "--raw"] + args, timeout: .seconds(5)).split(separator: "\n").map(String.init)
        var out: [String: String] = [:]
        var i = 0
        while i + 1 < lines.count {
            out[lines[i]] = lines[i + 1]
            i += 2
        }
        return out
    }
}
