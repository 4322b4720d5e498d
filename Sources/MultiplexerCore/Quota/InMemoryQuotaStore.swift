import Synchronization

/// A ``QuotaStore`` for one process: every rule of the contract, with no shared backend.
///
/// Use it for a single gateway node, for an embedded library without Redis, and (with a share of each
/// limit) as the local fallback of the Redis store when Redis is unreachable.
///
/// ### Threading
/// All state sits behind one `Mutex`; every operation is a short, synchronous critical section (no
/// `await` and no I/O inside), so callers on any thread or task can use it concurrently.
///
/// ### Time
/// Time comes from the injected clock (``ManualClock`` in tests), measured from the store's creation.
public final class InMemoryQuotaStore<C: Clock>: QuotaStore where C.Duration == Duration {
    private let state: Mutex<QuotaState>
    private let clock: C
    private let origin: C.Instant

    /// - Parameters:
    ///   - clock: the time source for windows, leases and cooldowns.
    ///   - epochMs: milliseconds since the Unix epoch now (the store's time 0): budgets' UTC days and months
    ///     are counted from it along `clock` (a test sets it just before a midnight and advances the clock).
    public init(clock: C, epochMs: Int64 = WallClock.epochMilliseconds()) {
        self.clock = clock
        self.origin = clock.now
        self.state = Mutex(QuotaState(epochAtZero: epochMs))
    }

    private var nowMs: Int64 { self.clock.milliseconds(since: self.origin) }

    public func admit(_ request: AdmissionRequest) async throws -> AdmissionDecision {
        let now = self.nowMs
        return self.state.withLock { $0.admit(request, now: now) }
    }

    @discardableResult
    public func settle(_ settlement: Settlement) async -> SettlementEffect {
        let now = self.nowMs
        let opened = self.state.withLock { $0.settle(settlement, now: now) }
        return SettlementEffect(failureCooldown: opened ? settlement.failureCooldown : nil)
    }

    public func record(_ event: ModelEvent) async {
        self.state.withLock { $0.record(event) }
    }

    public func renewLease(_ reservation: Reservation, for duration: Duration) async throws {
        let now = self.nowMs
        self.state.withLock { $0.renewLease(reservation, for: duration, now: now) }
    }

    @discardableResult
    public func setCooldown(provider: String, for duration: Duration, reason: CooldownReason) async throws -> Duration {
        let now = self.nowMs
        return self.state.withLock { $0.setCooldown(provider: provider, for: duration, reason: reason, now: now) }
    }

    public func clearCooldown(provider: String) async throws {
        self.state.withLock { $0.clearCooldown(provider: provider) }
    }

    public func setDisabled(provider: String, _ disabled: Bool) async throws {
        self.state.withLock { $0.setDisabled(provider: provider, disabled) }
    }

    @discardableResult
    public func heartbeat(nodeID: String) async throws -> Int {
        let now = self.nowMs
        return self.state.withLock { $0.heartbeat(nodeID: nodeID, now: now) }
    }

    public func stats(_ query: StatsQuery) async throws -> FleetStats {
        let now = self.nowMs
        return self.state.withLock { $0.stats(query, now: now) }
    }
}

extension InMemoryQuotaStore where C == ContinuousClock {
    /// A store on the system's monotonic clock.
    public convenience init() {
        self.init(clock: ContinuousClock())
    }
}
