import Dispatch
import Synchronization

/// An auto-pipelining Redis client over one hiredis connection owned by a dedicated thread.
///
/// Callers `await`; their commands join a queue. The worker thread takes everything queued, writes it
/// as one pipeline, reads the replies and resumes every caller — so under load many commands share one
/// write and one read, and throughput grows with concurrency instead of with round trips. No blocking
/// hiredis call ever runs on a Swift cooperative thread or a NIO event loop.
///
/// ### Failure handling
/// - Every command is bounded by the command timeout (hiredis's `redisSetTimeout`).
/// - A broken connection fails the commands of its batch (with ``RedisError/Code/io`` or `timeout`:
///   those may or may not have run) and is dropped; the next batch reconnects.
/// - A circuit breaker: after a failure, commands fail at once with ``RedisError/Code/unavailable``
///   for a backoff (50 ms doubling to 1 s), so a dead Redis costs one timeout, not one per request.
/// - `NOSCRIPT` replies to EVALSHA load the script and run the command again.
///
/// ### Lifecycle
/// The thread starts in `init`. Call ``shutdown()`` once when done: queued commands fail with
/// ``RedisError/Code/shutdown`` and the thread is joined.
public final class RedisClient: Sendable {
    /// Connection settings.
    public struct Configuration: Sendable {
        public var endpoint: RedisEndpoint
        /// TCP connect timeout.
        public var connectTimeout: Duration
        /// Bound on each command's reply.
        public var commandTimeout: Duration
        /// Most commands written as one pipeline.
        public var maxBatch: Int

        public init(endpoint: RedisEndpoint, connectTimeout: Duration = .milliseconds(200), commandTimeout: Duration = .milliseconds(50), maxBatch: Int = 512) {
            self.endpoint = endpoint
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.maxBatch = maxBatch
        }
    }

    /// Counters for benchmarks and metrics.
    public struct Statistics: Sendable, Hashable {
        /// Pipelines written.
        public var batches: Int
        /// Commands sent.
        public var commands: Int
        /// Connections opened.
        public var connects: Int
        /// Commands failed for unavailability (including breaker fast-fails).
        public var failures: Int
    }

    private struct Pending {
        var args: [[UInt8]]
        var script: RedisScript?
        var continuation: CheckedContinuation<Result<RedisValue, RedisError>, Never>
    }

    private struct State {
        var queue: [Pending] = []
        var stopping = false
        var openUntil: ContinuousClock.Instant?
        var backoff: Duration = .zero
        var stats = Statistics(batches: 0, commands: 0, connects: 0, failures: 0)
        var connected = false
    }

    public let configuration: Configuration
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let thread: Mutex<WorkerThread?> = Mutex(nil)

    public init(configuration: Configuration) {
        self.configuration = configuration
        let t = WorkerThread(name: "redis-\(configuration.endpoint.port)") { [self] in self.workerLoop() }
        self.thread.withLock { $0 = t }
    }

    /// Runs one command.
    ///
    /// - Returns: the reply; an error *reply* is returned as ``RedisValue/error(_:)``, not thrown.
    /// - Throws: ``RedisError`` when the command could not be run (or its outcome is unknown).
    public func execute(_ args: [String]) async throws(RedisError) -> RedisValue {
        try await self.submit(args.map { Array($0.utf8) }, script: nil)
    }

    /// Runs a script with EVALSHA (loading it if Redis does not know it).
    public func evalsha(_ script: RedisScript, keys: [String], args: [String]) async throws(RedisError) -> RedisValue {
        var a: [[UInt8]] = [Array("EVALSHA".utf8), Array(script.sha1.utf8), Array(String(keys.count).utf8)]
        a.reserveCapacity(3 + keys.count + args.count)
        for k in keys { a.append(Array(k.utf8)) }
        for x in args { a.append(Array(x.utf8)) }
        return try await self.submit(a, script: script)
    }

    /// Whether the last attempt to reach Redis succeeded and the breaker is closed.
    public var isAvailable: Bool {
        self.state.withLock { $0.connected && $0.openUntil == nil }
    }

    public var statistics: Statistics { self.state.withLock { $0.stats } }

    /// Stops the worker thread; pending and later commands fail with `shutdown`. Idempotent.
    public func shutdown() {
        let first = self.state.withLock { s -> Bool in
            defer { s.stopping = true }
            return !s.stopping
        }
        guard first else { return }
        self.wake.signal()
        let t = self.thread.withLock { t -> WorkerThread? in
            defer { t = nil }
            return t
        }
        t?.join()
    }

    deinit {
        // The worker holds a strong reference to self until it exits, so reaching deinit means it is gone.
    }

    private func submit(_ args: [[UInt8]], script: RedisScript?) async throws(RedisError) -> RedisValue {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<RedisValue, RedisError>, Never>) in
            let rejection = self.state.withLock { s -> RedisError? in
                if s.stopping { return RedisError(.shutdown, "client shut down") }
                if let until = s.openUntil, ContinuousClock.now < until {
                    s.stats.failures += 1
                    return RedisError(.unavailable, "Redis unreachable; retrying in \(s.backoff)")
                }
                s.queue.append(Pending(args: args, script: script, continuation: c))
                return nil
            }
            if let rejection {
                c.resume(returning: .failure(rejection))
            } else {
                self.wake.signal()
            }
        }
        return try result.get()
    }

    // MARK: Worker thread

    private func workerLoop() {
        var connection: RedisConnection?
        while true {
            self.wake.wait()
            let (batch, stopping, more) = self.state.withLock { s -> ([Pending], Bool, Bool) in
                let n = min(s.queue.count, self.configuration.maxBatch)
                let b = Array(s.queue.prefix(n))
                s.queue.removeFirst(n)
                return (b, s.stopping, !s.queue.isEmpty)
            }
            if stopping {
                let rest = self.state.withLock { s -> [Pending] in
                    defer { s.queue.removeAll() }
                    return s.queue
                }
                for p in batch + rest { p.continuation.resume(returning: .failure(RedisError(.shutdown, "client shut down"))) }
                connection?.close()
                return
            }
            if more { self.wake.signal() }
            if batch.isEmpty { continue }
            self.run(batch, on: &connection)
        }
    }

    private func run(_ batch: [Pending], on connection: inout RedisConnection?) {
        if connection == nil || connection!.isBroken {
            connection = nil
            do {
                connection = try RedisConnection(
                    endpoint: self.configuration.endpoint,
                    connectTimeoutMs: Int(self.configuration.connectTimeout.millisecondsRoundedUp),
                    commandTimeoutMs: Int(self.configuration.commandTimeout.millisecondsRoundedUp))
                self.state.withLock { $0.stats.connects += 1 }
            } catch {
                self.fail(batch, error)
                return
            }
        }
        let conn = connection!
        var results: [Result<RedisValue, RedisError>] = []
        results.reserveCapacity(batch.count)
        do {
            for p in batch { try conn.append(p.args) }
            for _ in batch { results.append(.success(try conn.readReply())) }
            // Scripts Redis forgot (restart, failover): load and run those commands again.
            for (i, p) in batch.enumerated() {
                guard let script = p.script, case .success(.error(let m)) = results[i], m.hasPrefix("NOSCRIPT") else { continue }
                _ = try conn.command([Array("SCRIPT".utf8), Array("LOAD".utf8), Array(script.source.utf8)])
                results[i] = .success(try conn.command(p.args))
            }
        } catch {
            connection?.close()
            connection = nil
            // Replies already read are real answers; the rest are unknown.
            for (i, p) in batch.enumerated() {
                p.continuation.resume(returning: i < results.count ? results[i] : .failure(error))
            }
            self.recordFailure(count: batch.count - results.count)
            return
        }
        self.state.withLock { s in
            s.stats.batches += 1
            s.stats.commands += batch.count
            s.openUntil = nil
            s.backoff = .zero
            s.connected = true
        }
        for (i, p) in batch.enumerated() { p.continuation.resume(returning: results[i]) }
    }

    private func fail(_ batch: [Pending], _ error: RedisError) {
        for p in batch { p.continuation.resume(returning: .failure(error)) }
        self.recordFailure(count: batch.count)
    }

    private func recordFailure(count: Int) {
        self.state.withLock { s in
            s.connected = false
            s.stats.failures += count
            s.backoff = s.backoff == .zero ? .milliseconds(50) : min(.seconds(1), s.backoff * 2)
            s.openUntil = ContinuousClock.now + s.backoff
        }
    }
}

extension Duration {
    var millisecondsRoundedUp: Int64 {
        let c = self.components
        return c.seconds * 1000 + (c.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }
}
