import Foundation

/// Runs `redis-cli` (or another tool) with a bound on its run time, for test fixtures.
public enum RedisCLI {
    public enum Failure: Error, CustomStringConvertible {
        case notInstalled(String)
        case timedOut(String)
        public var description: String {
            switch self {
            case .notInstalled(let n): "\(n) is not installed (run scripts/install-deps.sh)"
            case .timedOut(let c): "timed out: \(c)"
            }
        }
    }

    /// Runs `redis-cli args…` and returns its standard output and error.
    ///
    /// - Throws: if redis-cli is missing or runs longer than `timeout` (it is then killed).
    public static func run(_ args: [String], timeout: Duration = .seconds(20)) throws -> String {
        try Self.run(tool: "redis-cli", args, timeout: timeout)
    }

    /// Runs `tool args…` (found on PATH) and returns its standard output and error.
    public static func run(tool: String, _ args: [String], timeout: Duration) throws -> String {
        try Self.runWithStatus(tool: tool, args, timeout: timeout).output
    }

    /// Runs `tool args…` (found on PATH) and returns its exit status and its standard output and error.
    public static func runWithStatus(tool: String, _ args: [String], timeout: Duration) throws -> (status: Int32, output: String) {
        guard let exe = ManagedProcess.which(tool) else { throw Failure.notInstalled(tool) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        // Read on this thread; a watchdog timer kills the tool if it hangs (which closes the pipe).
        let killer = DispatchWorkItem { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let c = timeout.components
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000)), execute: killer)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        killer.cancel()
        if p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL {
            throw Failure.timedOut(([tool] + args).joined(separator: " "))
        }
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Runs blocking work (starting a process and polling it, waiting for one to exit, running `redis-cli`) on a
/// Dispatch thread instead of the Swift cooperative pool, which has only as many threads as cores and runs
/// the gateway's, the fleet's or the tests' own tasks. The one offloading helper of the project's process
/// code; a body that cannot fail needs no `try` (its error type is `Never`).
public func offCooperativePool<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
    let result = await withCheckedContinuation { (c: CheckedContinuation<Result<T, E>, Never>) in
        DispatchQueue.global().async {
            do throws(E) {
                c.resume(returning: .success(try body()))
            } catch {
                c.resume(returning: .failure(error))
            }
        }
    }
    return try result.get()
}
