import Synchronization

/// A clock that only moves when told to: for tests and simulations of windows, leases and cooldowns
/// without waiting for real time.
///
/// `sleep(until:)` suspends until ``advance(by:)`` moves the clock past the deadline. With
/// `autoAdvance`, a sleep instead moves the clock to its deadline at once, so code that waits (a router
/// waiting for a primary to free up) runs instantly in virtual time.
package final class ManualClock: Clock, Sendable {
    /// A point in the manual clock's time.
    public struct Instant: InstantProtocol, Sendable {
        public var offset: Duration
        public init(offset: Duration) { self.offset = offset }
        public func advanced(by duration: Duration) -> Instant { Instant(offset: self.offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - self.offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct Sleeper {
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [UInt64: Sleeper] = [:]
        var nextID: UInt64 = 0
        var slept: Duration = .zero
    }

    private let state = Mutex(State())
    private let autoAdvance: Bool

    /// - Parameter autoAdvance: when true, sleeping advances the clock to the deadline immediately.
    public init(autoAdvance: Bool = false) {
        self.autoAdvance = autoAdvance
    }

    public var now: Instant { self.state.withLock { $0.now } }
    public var minimumResolution: Duration { .nanoseconds(1) }

    /// Total time slept through `sleep(until:)` in auto-advance mode.
    public var totalSlept: Duration { self.state.withLock { $0.slept } }

    /// Moves the clock forward and wakes every sleeper whose deadline has passed.
    public func advance(by duration: Duration) {
        let due = self.state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            s.now = s.now.advanced(by: duration)
            let now = s.now
            let ready = s.sleepers.filter { $0.value.deadline <= now }
            for id in ready.keys { s.sleepers[id] = nil }
            return ready.map(\.value.continuation)
        }
        for c in due { c.resume() }
    }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try Task.checkCancellation()
        if self.autoAdvance {
            self.state.withLock { s in
                if deadline > s.now {
                    s.slept += s.now.duration(to: deadline)
                    s.now = deadline
                }
            }
            return
        }
        let id = self.state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let resumeNow = self.state.withLock { s -> Bool in
                    if deadline <= s.now { return true }
                    s.sleepers[id] = Sleeper(deadline: deadline, continuation: c)
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let c = self.state.withLock { $0.sleepers.removeValue(forKey: id) }
            c?.continuation.resume(throwing: CancellationError())
        }
    }
}

extension Clock where Duration == Swift.Duration {
    /// Milliseconds elapsed since `origin` on this clock (the store's time base).
    func milliseconds(since origin: Instant) -> Int64 {
        let d = origin.duration(to: self.now)
        return d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}

extension Duration {
    /// Whole milliseconds, rounded up (so a wait is never shorter than asked).
    public var millisecondsRoundedUp: Int64 {
        let c = self.components
        let ms = c.seconds * 1000
        let frac = c.attoseconds
        return ms + (frac > 0 ? (frac + 999_999_999_999_999) / 1_000_000_000_000_000 : frac / 1_000_000_000_000_000)
    }

    /// Seconds as a floating-point number.
    public var seconds: Double {
        Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
    }
}
