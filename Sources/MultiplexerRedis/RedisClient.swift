import Dispatch
import MultiplexerCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An auto-pipelining Redis client over one hiredis connection owned by a dedicated thread.
///
/// Callers `await`; their commands join a queue. The worker thread takes everything queued, writes it
/// as one pipeline, reads the replies and resumes every caller — so under load many commands share one
/// write and one read, and throughput grows with concurrency instead of with round trips. No blocking
/// hiredis call ever runs on a Swift cooperative thread or a NIO event loop.
///
/// ### Topologies
/// Where the connection goes is the ``Configuration/topology``: one server, the master named by Redis
/// Sentinel, or — in a Redis Cluster — the master that owns the hash slot of ``Configuration/routingKey``
/// (the client serves one slot; the quota store's keys all share the namespace's hash tag). The worker
/// thread resolves it (`RedisRouter`) and re-resolves after failures and redirections.
///
/// ### Failure handling
/// - Every command is bounded by the command timeout (hiredis's `redisSetTimeout`).
/// - A broken connection fails the commands of its batch (with ``RedisError/Code/io`` or `timeout`:
///   those may or may not have run) and is dropped; the next batch reconnects (through the sentinels
///   or the slot map again).
/// - A circuit breaker: after a failure, commands fail at once with ``RedisError/Code/unavailable``
///   for a backoff (50 ms doubling to 1 s), so a dead Redis costs one timeout, not one per request.
/// - Replies that mean "not executed here" are handled before the caller sees them, and only those
///   are re-sent (so a non-idempotent script never runs twice): `NOSCRIPT` (load the script, run
///   again), `MOVED` (switch to the new owner, run again), `ASK` (`ASKING` plus the command on the
///   migration target, once), `READONLY` (a failed-over master: re-discover, run again), and
///   `TRYAGAIN`/`CLUSTERDOWN`/`LOADING` or a script stopped by a slot migration (run again after a
///   short pause). If that does not settle within ``Configuration/redirectTimeout`` the commands fail
///   with ``RedisError/Code/unavailable``.
///
/// ### Lifecycle
/// The thread starts in `init`. Call ``shutdown()`` once when done: queued commands fail with
/// ``RedisError/Code/shutdown`` and the thread exits by itself (shutdown does not block).
public final class RedisClient: Sendable {
    /// Connection settings.
    public struct Configuration: Sendable {
        /// Where the server is: standalone, through Sentinel, or a Redis Cluster.
        public var topology: RedisTopology
        /// Cluster only: every command goes to the master owning this key's hash slot (for the quota
        /// store, `{namespace}:schema`). Ignored by the other topologies.
        public var routingKey: String
        /// TCP connect timeout.
        public var connectTimeout: Duration
        /// Bound on each command's reply.
        public var commandTimeout: Duration
        /// Most commands written as one pipeline.
        public var maxBatch: Int
        /// How long redirections and transient refusals (`MOVED`, `ASK`, `READONLY`, `TRYAGAIN`, …) may
        /// keep a batch of commands retrying before they fail as unavailable.
        public var redirectTimeout: Duration

        public init(
            topology: RedisTopology, routingKey: String = "", connectTimeout: Duration = .milliseconds(200),
            commandTimeout: Duration = .milliseconds(50), maxBatch: Int = 512, redirectTimeout: Duration = .seconds(1)
        ) {
            self.topology = topology
            self.routingKey = routingKey
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.maxBatch = maxBatch
            self.redirectTimeout = redirectTimeout
        }

        /// One server.
        public init(
            endpoint: RedisEndpoint, connectTimeout: Duration = .milliseconds(200), commandTimeout: Duration = .milliseconds(50), maxBatch: Int = 512
        ) {
            self.init(topology: .standalone(endpoint), connectTimeout: connectTimeout, commandTimeout: commandTimeout, maxBatch: maxBatch)
        }

        /// The standalone server; setting it selects the standalone topology. For the other topologies
        /// this reads the first sentinel or seed node (for display only).
        public var endpoint: RedisEndpoint {
            get { self.topology.displayEndpoint }
            set { self.topology = .standalone(newValue) }
        }
    }

    /// Counters for benchmarks and metrics.
    public struct Statistics: Sendable, Hashable {
        /// Pipelines written.
        public var batches: Int
        /// Commands sent (a batched call of many parts is one).
        public var commands: Int
        /// Connections opened.
        public var connects: Int
        /// Commands failed for unavailability (including breaker fast-fails).
        public var failures: Int
        /// Commands re-sent after `NOSCRIPT`, `MOVED`, `ASK`, `READONLY` or a transient refusal (all of them).
        public var redirects: Int = 0
        /// Of those, after `MOVED`.
        public var moved: Int = 0
        /// Of those, after `ASK`.
        public var asked: Int = 0
        /// Of those, after `READONLY` (a failed-over master).
        public var readOnly: Int = 0
        /// Of those, after a transient refusal (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, a script stopped by a migration).
        public var retried: Int = 0
        /// Callers' commands answered: each part of a batched call counts (``evalshaBatched(_:keys:head:part:)``).
        public var requests: Int = 0
    }

    private typealias Waiter = CheckedContinuation<Result<RedisValue, RedisError>, Never>

    private struct Pending {
        /// The whole command; for a part of a batched call, its head (`EVALSHA sha numkeys keys… head args…`).
        var args: [[UInt8]]
        var script: RedisScript?
        /// A part of a batched script call (``evalshaBatched(_:keys:head:part:)``): its own arguments.
        var part: [[UInt8]]?
        var continuation: Waiter
    }

    /// What is written: one command, or consecutive parts of one batched script call merged into one.
    private struct Unit {
        var args: [[UInt8]]
        var script: RedisScript?
        var waiters: [Waiter]
        /// Parts merged (nil: a plain command).
        var parts: [[[UInt8]]]?

        /// The command as sent: for merged parts, `head…, m, then per part: its count, its arguments`.
        var wire: [[UInt8]] {
            guard let parts else { return self.args }
            var a = self.args
            a.reserveCapacity(a.count + 1 + parts.reduce(0) { $0 + 1 + $1.count })
            a.append(Array(String(parts.count).utf8))
            for p in parts {
                a.append(Array(String(p.count).utf8))
                a.append(contentsOf: p)
            }
            return a
        }
    }

    /// Most parts merged into one batched script call (bounds how long one call holds Redis).
    static let maxParts = 64

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
    /// The I/O worker (see ``shutdown()`` for its end).
    private let thread: Mutex<DedicatedThread?> = Mutex(nil)

    public init(configuration: Configuration) {
        self.configuration = configuration
        let name: String
        switch configuration.topology {
        case .standalone(let e): name = "redis-\(e.port)"
        case .sentinel: name = "redis-sentinel"
        case .cluster: name = "redis-slot\(RedisHashSlot.slot(forKey: configuration.routingKey))"
        }
        let t = DedicatedThread(name: name) { [self] in self.workerLoop() }
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

    /// Runs one part of a batched script call. Parts queued one after another with the same script, keys and
    /// `head` are sent as **one** EVALSHA (up to 64 of them): ARGV is `head…`, the number of parts, then per part
    /// its argument count and its arguments; the script returns one reply per part, in order, and each caller
    /// gets its own (an error element of that array is that caller's error reply). Alone in the queue, a part
    /// is a call of one. So what callers send concurrently shares one script run, without waiting for
    /// anything: parts are merged only from what is already queued when the pipeline is written.
    ///
    /// - Returns: this part's reply; an error reply (for the whole call or this part) is returned as
    ///   ``RedisValue/error(_:)``, not thrown.
    /// - Throws: ``RedisError`` when the call could not be run (or its outcome is unknown) — for every part of it.
    public func evalshaBatched(_ script: RedisScript, keys: [String], head: [String], part: [String]) async throws(RedisError) -> RedisValue {
        var a: [[UInt8]] = [Array("EVALSHA".utf8), Array(script.sha1.utf8), Array(String(keys.count).utf8)]
        a.reserveCapacity(3 + keys.count + head.count)
        for k in keys { a.append(Array(k.utf8)) }
        for x in head { a.append(Array(x.utf8)) }
        return try await self.submit(a, script: script, part: part.map { Array($0.utf8) })
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
        // Wake the worker and return: it fails what is queued, closes the connection and exits on its own
        // (holding the client until then). No join — shutdown is called from async code, and the worker
        // may be inside a command timeout or a redirect pause.
        self.wake.signal()
        self.thread.withLock { $0 = nil }
    }

    deinit {
        // The worker holds a strong reference to self until it exits, so reaching deinit means it is gone.
    }

    private func submit(_ args: [[UInt8]], script: RedisScript?, part: [[UInt8]]? = nil) async throws(RedisError) -> RedisValue {
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<RedisValue, RedisError>, Never>) in
            let rejection = self.state.withLock { s -> RedisError? in
                if s.stopping { return RedisError(.shutdown, "client shut down") }
                if let until = s.openUntil, ContinuousClock.now < until {
                    s.stats.failures += 1
                    return RedisError(.unavailable, "Redis unreachable; retrying in \(s.backoff)")
                }
                s.queue.append(Pending(args: args, script: script, part: part, continuation: c))
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
        let router = RedisRouter(
            topology: self.configuration.topology, routingKey: self.configuration.routingKey,
            connectTimeoutMs: Int(self.configuration.connectTimeout.millisecondsRoundedUp),
            commandTimeoutMs: Int(self.configuration.commandTimeout.millisecondsRoundedUp))
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
                router.close()
                return
            }
            if more { self.wake.signal() }
            if batch.isEmpty { continue }
            self.run(Self.units(batch), router: router)
        }
    }

    /// The batch as written: consecutive parts of the same batched call merged (order is kept).
    private static func units(_ batch: [Pending]) -> [Unit] {
        var units: [Unit] = []
        units.reserveCapacity(batch.count)
        for p in batch {
            if let part = p.part {
                if let last = units.indices.last, let parts = units[last].parts, parts.count < Self.maxParts, units[last].args == p.args {
                    units[last].parts!.append(part)
                    units[last].waiters.append(p.continuation)
                } else {
                    units.append(Unit(args: p.args, script: p.script, waiters: [p.continuation], parts: [part]))
                }
            } else {
                units.append(Unit(args: p.args, script: p.script, waiters: [p.continuation], parts: nil))
            }
        }
        for i in units.indices where units[i].parts != nil {
            units[i].args = units[i].wire
        }
        return units
    }

    /// Hands each waiter of a unit its reply: a merged call's array is split by part.
    private static func deliver(_ result: Result<RedisValue, RedisError>, to unit: Unit) {
        guard let parts = unit.parts else {
            unit.waiters[0].resume(returning: result)
            return
        }
        switch result {
        case .success(.array(let replies)) where replies.count == parts.count:
            for (w, r) in zip(unit.waiters, replies) { w.resume(returning: .success(r)) }
        case .success(.error(let e)):
            // The call as a whole failed (a script error): every part's error reply.
            for w in unit.waiters { w.resume(returning: .success(.error(e))) }
        case .success:
            for w in unit.waiters { w.resume(returning: .failure(RedisError(.protocolError, "batched call: not one reply per part"))) }
        case .failure(let e):
            for w in unit.waiters { w.resume(returning: .failure(e)) }
        }
    }

    /// Runs a batch: pipelined on the primary connection, then again for the commands whose replies said
    /// "not executed here", until every command has a real answer or ``Configuration/redirectTimeout``
    /// passes. The decisions are ``RedisBatchStateMachine``'s; this does the I/O.
    private func run(_ batch: [Unit], router: RedisRouter) {
        let connectsBefore = router.connects
        var machine = RedisBatchStateMachine(
            isScript: batch.map { $0.script != nil }, now: .now, redirectTimeout: self.configuration.redirectTimeout)
        while let round = machine.startRound() {
            for (target, attempts) in round {
                let conn: RedisConnection
                do throws(RedisError) {
                    if let target { conn = try router.sideConnection(to: target) } else { conn = try router.primaryConnection() }
                } catch {
                    machine.failed(attempts, error)
                    continue
                }
                let current = target ?? router.primaryAddress
                var replies: [RedisValue] = []
                do throws(RedisError) {
                    for a in attempts {
                        let p = batch[a.index]
                        if a.loadScript, let script = p.script { try conn.append(RedisRouter.args("SCRIPT", "LOAD", script.source)) }
                        if target != nil { try conn.append(RedisRouter.args("ASKING")) }
                        try conn.append(p.args)
                    }
                    for a in attempts {
                        if a.loadScript, batch[a.index].script != nil { _ = try conn.readReply() }
                        if target != nil { _ = try conn.readReply() }
                        replies.append(try conn.readReply())
                    }
                } catch {
                    if target == nil { router.dropPrimary() } else { router.dropSide() }
                    machine.failed(attempts.dropFirst(replies.count), error)
                }
                for (a, reply) in zip(attempts, replies) {
                    switch machine.received(reply, for: a, from: current) {
                    case .moved(let to): router.moved(to: to)
                    case .demoted: router.demoted()
                    case nil: break
                    }
                }
            }
            // Only the worker thread waits here; callers are already waiting for their replies.
            if let pause = machine.endRound(now: .now) { Thread.sleep(pause) }
        }
        let kinds = machine.counters
        let failures = kinds.failures
        let connects = router.connects - connectsBefore
        self.state.withLock { s in
            s.stats.batches += 1
            s.stats.commands += batch.count
            s.stats.requests += batch.reduce(0) { $0 + $1.waiters.count }
            s.stats.connects += connects
            s.stats.redirects += kinds.redirects
            s.stats.moved += kinds.moved
            s.stats.asked += kinds.asked
            s.stats.readOnly += kinds.readOnly
            s.stats.retried += kinds.retried
        }
        if failures > 0 {
            self.recordFailure(count: failures)
        } else {
            self.state.withLock { s in
                s.openUntil = nil
                s.backoff = .zero
                s.connected = true
            }
        }
        for (unit, result) in zip(batch, machine.finalResults) {
            Self.deliver(result, to: unit)
        }
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

extension RedisTopology {
    /// The standalone endpoint, or the first sentinel or seed (display only).
    var displayEndpoint: RedisEndpoint {
        switch self {
        case .standalone(let e): e
        case .sentinel(let s): s.sentinels.first.map { s.endpoint(of: $0) } ?? RedisEndpoint()
        case .cluster(let c): c.seeds.first.map { c.endpoint(of: $0) } ?? RedisEndpoint()
        }
    }
}

/// A blocking sleep, for the worker thread only.
private enum Thread {
    static func sleep(_ d: Duration) {
        let us = d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000
        usleep(UInt32(max(0, min(us, 1_000_000))))
    }
}
