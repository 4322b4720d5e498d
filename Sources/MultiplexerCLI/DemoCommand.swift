import ArgumentParser
import Foundation
import Logging
import MultiplexerFleet
import Synchronization
import UnixSignals

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a self-contained fleet on loopback (mock providers, gateways, optionally Redis and nginx), send traffic through it, and report how the quotas added up.",
        discussion: """
            Every process it starts (redis-server, `multiplexer serve` nodes, nginx) is stopped when it ends, on error, and on Ctrl-C.
            Exits 1 if any mock provider saw a request beyond its limit, or (with Redis) the counters disagree with the mocks.
            """)

    @Option(help: "Gateway nodes (`multiplexer serve` processes). More than one implies --redis.") var nodes: Int = 1
    @Flag(help: "Share the limits through a local redis-server (otherwise a single node uses its in-memory store).") var redis = false
    @Flag(help: "Put nginx in front of the nodes as the load balancer.") var nginx = false
    @Option(help: "Chat requests to send.") var requests: Int = 120
    @Option(help: "Requests in flight at once.") var concurrency: Int = 8
    @Flag(help: "After the traffic, keep the fleet running and print its endpoints until Ctrl-C / SIGTERM.") var keepRunning = false

    func validate() throws {
        guard (1...16).contains(self.nodes) else { throw ValidationError("--nodes must be 1…16") }
        guard self.requests >= 0, self.concurrency >= 1 else { throw ValidationError("--requests must be ≥ 0 and --concurrency ≥ 1") }
    }

    func run() async throws {
        _ = bootstrapLogging(level: .warning)
        var o = FleetDemo.Options()
        o.nodes = self.nodes
        o.redis = self.redis
        o.nginx = self.nginx
        o.requests = self.requests
        o.concurrency = self.concurrency
        o.keepRunning = self.keepRunning
        let options = o
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        // While the fleet only keeps running, a signal ends that wait and the fleet stops gracefully; at
        // any other moment (or on a second signal) it cancels the demo, which still stops every process.
        let (stopRequests, stopRequested) = AsyncStream.makeStream(of: Void.self)
        let idle = IdleFlag()
        let outcome: Bool? = try await withThrowingTaskGroup(of: Bool?.self) { group in
            group.addTask {
                try await FleetDemo.run(options) {
                    idle.set(true)
                    for await _ in stopRequests { break }
                }
            }
            group.addTask {
                for await _ in signals {
                    if idle.take() {
                        stopRequested.yield()
                    } else {
                        return nil
                    }
                }
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        switch outcome {
        case true?:
            return
        case false?:
            FileHandle.standardError.write(Data("multiplexer demo: a check failed (see above)\n".utf8))
            throw ExitCode(1)
        case nil:
            // Stopped by a signal: everything started has been stopped.
            if !self.keepRunning { throw ExitCode(130) }
        }
    }
}

/// Whether the demo only keeps the fleet running (a signal then stops it gracefully).
private final class IdleFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set(_ v: Bool) { self.value.store(v, ordering: .sequentiallyConsistent) }
    /// Reads and clears the flag.
    func take() -> Bool { self.value.exchange(false, ordering: .sequentiallyConsistent) }
}
