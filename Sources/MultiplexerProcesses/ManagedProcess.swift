public import Foundation

/// A child process for tests and the local fleet: started with its output in a log file, stopped on
/// request, and never left behind — a watchdog shell kills it if this process dies first.
public final class ManagedProcess: @unchecked Sendable {
    // Safety: `process` and `watchdog` are set in `init` and only read afterwards; Foundation's
    // `Process` methods used here (terminate, waitUntilExit, isRunning, processIdentifier) are
    // thread-safe.
    public let name: String
    public let logPath: String
    private let process: Process
    private let watchdog: Process

    /// Starts `executable` with `arguments`.
    ///
    /// - Throws: if the executable cannot be launched.
    public init(name: String, executable: String, arguments: [String], logPath: String, environment: [String: String]? = nil) throws {
        self.name = name
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        // A child inherits the spawning thread's blocked-signal mask, and Dispatch worker threads block
        // most signals: a server started from one would never see SIGTERM (nginx in single-process mode
        // keeps the mask). Spawn with nothing blocked.
        var none = sigset_t()
        var saved = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        try p.run()
        self.process = p
        let w = Process()
        w.executableURL = URL(fileURLWithPath: "/bin/sh")
        w.arguments = ["-c", "while kill -0 \(getpid()) 2>/dev/null && kill -0 \(p.processIdentifier) 2>/dev/null; do sleep 1; done; kill -9 \(p.processIdentifier) 2>/dev/null"]
        w.standardOutput = FileHandle.nullDevice
        w.standardError = FileHandle.nullDevice
        try w.run()
        self.watchdog = w
    }

    public var pid: Int32 { self.process.processIdentifier }
    public var isRunning: Bool { self.process.isRunning }

    /// Sends `signal` without waiting (e.g. SIGKILL, SIGSTOP, SIGCONT, or SIGTERM followed by polling
    /// ``isRunning``).
    public func send(_ signal: Int32) {
        if self.process.isRunning { kill(self.process.processIdentifier, signal) }
    }

    /// Sends `signal` (default SIGTERM) and waits for the process to exit.
    public func stop(signal: Int32 = SIGTERM) {
        if self.process.isRunning {
            kill(self.process.processIdentifier, signal)
            self.process.waitUntilExit()
        }
        if self.watchdog.isRunning { self.watchdog.terminate() }
    }

    deinit {
        self.stop(signal: SIGKILL)
    }

    /// Looks an executable up on PATH (and the usual sbin folders).
    public static func which(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/local/sbin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
