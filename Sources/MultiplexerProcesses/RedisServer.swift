public import Foundation

/// A real `redis-server` on a free loopback port, for tests, benchmarks and the local fleet.
///
/// No persistence by default (`--save '' --appendonly no`), `noeviction`. It can be stopped and
/// started again on the same port, to test outages and restarts; with `persistent: true` it keeps its
/// data over a stop with SIGTERM (AOF, fsync on every write), like a production Redis restarting.
public final class RedisServer: @unchecked Sendable {
    // Safety: mutable state (`process`) is guarded by `lock`.
    public let port: Int
    public let directory: String
    /// Added to the command line (e.g. `--cluster-enabled yes`, `--replicaof 127.0.0.1 <port>`).
    public let extraArguments: [String]
    /// Whether the data survives a stop (AOF with `appendfsync always`).
    public let persistent: Bool
    private let lock = NSLock()
    private var process: ManagedProcess?

    public enum Failure: Error, CustomStringConvertible {
        case notInstalled
        case didNotStart(String)
        public var description: String {
            switch self {
            case .notInstalled: "redis-server is not installed (run scripts/install-deps.sh)"
            case .didNotStart(let log): "redis-server did not start: \(log)"
            }
        }
    }

    /// Starts a server.
    ///
    /// - Parameters:
    ///   - port: the port, else a free one.
    ///   - persistent: keep the data over a stop and start (AOF).
    ///   - extraArguments: more `redis-server` options; they run in ``directory`` (which holds e.g. a
    ///     `cluster-config-file`).
    public init(port: Int? = nil, persistent: Bool = false, extraArguments: [String] = []) throws {
        self.extraArguments = extraArguments
        self.port = port ?? LocalPorts.free()
        self.persistent = persistent
        self.directory = NSTemporaryDirectory() + "mux-redis-\(self.port)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        try self.start()
    }

    /// `redis://127.0.0.1:<port>/0`
    public var url: String { "redis://127.0.0.1:\(self.port)/0" }

    /// Starts the server (again) on its port and waits until it accepts connections.
    public func start() throws {
        guard let exe = ManagedProcess.which("redis-server") else { throw Failure.notInstalled }
        let p = try ManagedProcess(
            name: "redis-\(self.port)", executable: exe,
            arguments: [
                "--port", String(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", self.persistent ? "yes" : "no", "--appendfsync", "always", "--dir", self.directory,
                "--maxmemory-policy", "noeviction", "--daemonize", "no", "--protected-mode", "yes",
            ] + self.extraArguments,
            logPath: self.directory + "/redis.log")
        self.lock.withLock { self.process = p }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if LocalPorts.isListening(self.port) { return }
            if !p.isRunning { break }
            usleep(20_000)
        }
        throw Failure.didNotStart((try? String(contentsOfFile: p.logPath, encoding: .utf8)) ?? "")
    }

    /// Stops the server (SIGKILL by default: an abrupt outage, data gone unless persistent; SIGTERM lets
    /// Redis finish its AOF and exit cleanly).
    public func stop(signal: Int32 = SIGKILL) {
        let p = self.lock.withLock { () -> ManagedProcess? in
            defer { self.process = nil }
            return self.process
        }
        p?.stop(signal: signal)
        let deadline = Date().addingTimeInterval(5)
        while LocalPorts.isListening(self.port), Date() < deadline { usleep(10_000) }
    }

    /// Sends `signal` to the running server without waiting: SIGSTOP freezes it (connections are still
    /// accepted by the kernel, commands arrive and wait, replies never come: a paused Redis for as long as
    /// a test needs), SIGCONT lets it run the waiting commands.
    public func send(_ signal: Int32) {
        self.lock.withLock { self.process }?.send(signal)
    }

    /// Runs `redis-cli` against this server and returns its output (for checks an operator would do).
    public func cli(_ args: [String]) throws -> String {
        try RedisCLI.run(["-p", String(self.port), "--no-raw"] + args)
    }

    /// Like ``cli(_:)`` but with `--raw` output: one value per line, no quoting (easy to parse).
    public func rawCLI(_ args: [String]) throws -> String {
        try RedisCLI.run(["-p", String(self.port), "--raw"] + args)
    }

    /// Whether the process is running.
    public var isRunning: Bool { self.lock.withLock { self.process?.isRunning ?? false } }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}
