/// What happens to one pipelined batch of commands, without any I/O: which commands go where in the
/// next round, what a reply means, when to pause, when to give up. ``RedisClient``'s worker thread does the
/// I/O — connects, writes, reads, sleeps — and reports what happened; this returns what to do next and
/// collects one result per command. (valkey-swift separates its connection state the same way.)
///
/// Rules:
/// - A command is re-sent only when its reply says it did not run (``RedisRedirection``): `NOSCRIPT` (once,
///   after `SCRIPT LOAD`; a second `NOSCRIPT` is the answer), `MOVED` (to the new owner: the router is told),
///   `ASK` (to the migration target with `ASKING`, once), `READONLY` (a demoted master: the router is told),
///   `TRYAGAIN`/`CLUSTERDOWN`/`LOADING`/`MASTERDOWN` (after a pause).
/// - Order is kept per target: the primary connection first, then each `ASK` target.
/// - Rounds past the second pause too (2 ms doubling to 50 ms), so MOVED back and forth cannot spin.
/// - Still unsettled at the deadline: `unavailable` (refused, never executed: the store may degrade).
/// - A connection that fails, or breaks mid-pipeline, fails the commands without a reply (`io`/`timeout`:
///   maybe executed); replies read before the break are real answers.
struct RedisBatchStateMachine {
    /// One command's next try: where it goes and what must precede it.
    struct Attempt: Equatable {
        /// The command's position in the batch.
        var index: Int
        /// The `ASK` target; `nil` for the primary connection.
        var ask: RedisAddress?
        /// Send `SCRIPT LOAD` first (after `NOSCRIPT`).
        var loadScript = false
    }

    /// What the router must learn from a reply.
    enum RouterUpdate: Equatable {
        /// `MOVED`: the slot's owner is `to` now.
        case moved(to: RedisAddress)
        /// `READONLY`: the primary is a replica now; discover the master again.
        case demoted
    }

    /// Counters of one batch, for ``RedisClient/Statistics``.
    struct Counters: Equatable {
        var failures = 0
        var redirects = 0
        var moved = 0
        var asked = 0
        var readOnly = 0
        var retried = 0
    }

    private let isScript: [Bool]
    private let deadline: ContinuousClock.Instant
    private let redirectTimeout: Duration
    private var todo: [Attempt]
    private var next: [Attempt] = []
    private var mustPause = false
    private var round = 0
    private var pause = Duration.milliseconds(2)
    private var lastRefusal: [Int: String] = [:]
    private(set) var results: [Result<RedisValue, RedisError>?]
    private(set) var counters = Counters()

    /// - Parameters:
    ///   - isScript: per command, whether it is an EVALSHA of a known script (`NOSCRIPT` is then retried).
    ///   - now: when the batch starts; with `redirectTimeout`, the deadline for settling every command.
    init(isScript: [Bool], now: ContinuousClock.Instant, redirectTimeout: Duration) {
        self.isScript = isScript
        self.deadline = now + redirectTimeout
        self.redirectTimeout = redirectTimeout
        self.todo = isScript.indices.map { Attempt(index: $0) }
        self.results = Array(repeating: nil, count: isScript.count)
    }

    /// The next round: per target (the primary, `nil`, first; then each `ASK` target in order of appearance),
    /// the attempts to pipeline there. `nil` when every command has its result.
    mutating func startRound() -> [(target: RedisAddress?, attempts: [Attempt])]? {
        guard !self.todo.isEmpty else { return nil }
        self.round += 1
        self.next = []
        self.mustPause = false
        var targets: [RedisAddress?] = [nil]
        for a in self.todo where !targets.contains(a.ask) { targets.append(a.ask) }
        return targets.compactMap { target in
            let attempts = self.todo.filter { $0.ask == target }
            return attempts.isEmpty ? nil : (target, attempts)
        }
    }

    /// These attempts got no reply: their connection could not be opened, or it broke before their replies.
    mutating func failed(_ attempts: some Sequence<Attempt>, _ error: RedisError) {
        for a in attempts {
            self.results[a.index] = .failure(error)
            self.counters.failures += 1
        }
    }

    /// The reply to `attempt`, from the node at `current`. Returns what the router must learn, if anything.
    mutating func received(_ reply: RedisValue, for attempt: Attempt, from current: RedisAddress?) -> RouterUpdate? {
        guard let r = RedisRedirection(reply, isScript: self.isScript[attempt.index], current: current) else {
            self.results[attempt.index] = .success(reply)
            return nil
        }
        self.lastRefusal[attempt.index] = reply.errorMessage
        switch r {
        case .noScript:
            // Loaded and still unknown: a real answer, not a loop.
            if attempt.loadScript {
                self.results[attempt.index] = .success(reply)
            } else {
                self.next.append(Attempt(index: attempt.index, ask: attempt.ask, loadScript: true))
            }
            return nil
        case .moved(_, let to):
            self.counters.moved += 1
            self.next.append(Attempt(index: attempt.index))
            return .moved(to: to)
        case .ask(_, let to):
            self.counters.asked += 1
            self.next.append(Attempt(index: attempt.index, ask: to))
            return nil
        case .readOnly:
            self.counters.readOnly += 1
            self.next.append(Attempt(index: attempt.index))
            return .demoted
        case .tryAgain:
            self.counters.retried += 1
            self.mustPause = true
            self.next.append(Attempt(index: attempt.index))
            return nil
        }
    }

    /// Ends the round. Returns how long to pause before the next one (`nil`: go on at once, or done).
    mutating func endRound(now: ContinuousClock.Instant) -> Duration? {
        self.todo = self.next
        self.next = []
        guard !self.todo.isEmpty else { return nil }
        self.counters.redirects += self.todo.count
        if now >= self.deadline {
            for a in self.todo {
                let why = self.lastRefusal[a.index] ?? ""
                self.results[a.index] = .failure(RedisError(.unavailable, "not settled within \(self.redirectTimeout): \(why)"))
            }
            self.counters.failures += self.todo.count
            self.todo = []
            return nil
        }
        guard self.mustPause || self.round >= 3 else { return nil }
        defer { self.pause = min(self.pause * 2, .milliseconds(50)) }
        return self.pause
    }

    /// Each command's result (a command without one — impossible by construction — is a protocol error).
    var finalResults: [Result<RedisValue, RedisError>] {
        self.results.map { $0 ?? .failure(RedisError(.protocolError, "no reply")) }
    }
}
