import Foundation

/// nginx from the system as a child process for tests and the local fleet: `daemon off`, one process, its
/// configuration, pid file, logs and temp folders all in one directory. The load balancer of the local fleet
/// (`NginxBalancer`) and the TLS front of the mock provider (``TLSFrontProxy``) are both started this way.
public final class NginxProcess: Sendable {
    public enum Failure: Error, CustomStringConvertible {
        case notInstalled
        case didNotStart(String)
        public var description: String {
            switch self {
            case .notInstalled: "nginx is not installed (run scripts/install-deps.sh)"
            case .didNotStart(let log): "nginx did not start: \(log)"
            }
        }
    }

    /// The port it listens on.
    public let port: Int
    /// Configuration (`nginx.conf`), logs, pid and temp folders.
    public let directory: String
    let process: ManagedProcess

    /// Writes `configuration` to `directory/nginx.conf`, starts nginx and returns once it accepts connections on
    /// 127.0.0.1:`port`.
    ///
    /// - Parameters:
    ///   - configuration: the whole file, typically ``mainContext(directory:)`` + an `http` block that
    ///     includes ``httpTempPaths(directory:)``.
    ///   - port: the port to wait for.
    ///   - directory: an existing folder for its files.
    public init(configuration: String, port: Int, directory: String) throws {
        guard let exe = ManagedProcess.which("nginx") else { throw Failure.notInstalled }
        self.port = port
        self.directory = directory
        try configuration.write(toFile: directory + "/nginx.conf", atomically: true, encoding: .utf8)
        for d in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(d)", withIntermediateDirectories: true)
        }
        self.process = try ManagedProcess(
            name: "nginx", executable: exe, arguments: ["-p", directory, "-e", directory + "/error.log", "-c", directory + "/nginx.conf"],
            logPath: directory + "/nginx.out")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if LocalPorts.isListening(port) { return }
            if !self.process.isRunning { break }
            usleep(20_000)
        }
        self.process.stop(signal: SIGKILL)
        throw Failure.didNotStart((try? String(contentsOfFile: directory + "/error.log", encoding: .utf8)) ?? "")
    }

    /// The process id.
    public var pid: Int32 { self.process.pid }
    public var isRunning: Bool { self.process.isRunning }

    /// Stops nginx (SIGTERM: fast shutdown) and waits for it to exit.
    public func stop() {
        self.process.stop(signal: SIGTERM)
    }

    /// Rewrites `nginx.conf` with `configuration` and reloads it (SIGHUP to the master), then waits until a
    /// new worker runs it: requests that started before finish on the old worker, new ones use the new
    /// configuration. Needs a configuration started with `mainContext(directory:masterProcess: true)`.
    ///
    /// - Returns: whether a new worker was seen within `timeout`.
    @discardableResult
    public func reload(configuration: String, timeout: Duration = .seconds(5)) throws -> Bool {
        try configuration.write(toFile: self.directory + "/nginx.conf", atomically: true, encoding: .utf8)
        let before = Self.children(of: self.pid)
        self.process.send(SIGHUP)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if Self.children(of: self.pid).contains(where: { !before.contains($0) }) { return true }
            usleep(10_000)
        }
        return false
    }

    /// The child processes of `pid` (its workers), from /proc.
    static func children(of pid: Int32) -> Set<Int32> {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8) else { return [] }
        return Set(text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
    }

    /// The main context of a configuration whose files live in `directory`: in the foreground, pid file and
    /// error log there; one process, or with `masterProcess` a master and one worker (what ``reload(configuration:timeout:)``
    /// needs).
    public static func mainContext(directory: String, masterProcess: Bool = false) -> String {
        """
        daemon off;
        master_process \(masterProcess ? "on" : "off");
        worker_processes 1;
        pid \(directory)/nginx.pid;
        error_log \(directory)/error.log warn;

        events {
            worker_connections 4096;
        }
        """
    }

    /// The `http`-level temp paths, all in `directory` (the folders ``init(configuration:port:directory:)`` creates).
    public static func httpTempPaths(directory: String) -> String {
        """
        client_body_temp_path \(directory)/client_body;
            proxy_temp_path \(directory)/proxy;
            fastcgi_temp_path \(directory)/fastcgi;
            uwsgi_temp_path \(directory)/uwsgi;
            scgi_temp_path \(directory)/scgi;
        """
    }

    /// Runs `nginx -t` on a configuration file; returns nginx's output, or throws it on failure.
    ///
    /// - Parameters:
    ///   - path: the configuration file.
    ///   - prefix: nginx's prefix folder (relative paths resolve there; the error log goes there).
    @discardableResult
    public static func test(configuration path: String, prefix: String) throws -> String {
        guard ManagedProcess.which("nginx") != nil else { throw Failure.notInstalled }
        let r = try RedisCLI.runWithStatus(tool: "nginx", ["-t", "-p", prefix, "-e", prefix + "/error.log", "-c", path], timeout: .seconds(30))
        guard r.status == 0 else { throw Failure.didNotStart(r.output) }
        return r.output
    }
}
