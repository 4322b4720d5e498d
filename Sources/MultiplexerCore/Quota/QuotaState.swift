/// The whole quota state of one store, as a pure value: every decision is a mutation at a given time.
///
/// ``InMemoryQuotaStore`` wraps it in a lock; the Redis store's scripts implement the same rules
/// server-side. Times are milliseconds on the store's own clock.
public struct QuotaState: Sendable {
    /// Window lengths (ms).
    public static let minute: Int64 = 60_000
    public static let day: Int64 = 86_400_000
    /// The most a max-concurrency retry hint says: in-flight calls usually end long before their lease.
    static let concurrencyHint: Int64 = 1000
    /// How long (ms) the slot of an attempt left mid-way (abandoned, broken) stays taken after its settlement:
    /// its upstream connection is closed, but the provider counts it until it notices.
    public static let releaseGrace: Int64 = 1000
    /// A node is live if it sent a heartbeat within this.
    public static let nodeLiveness: Int64 = 10_000

    struct ProviderState: Sendable {
        var rpm = SlidingWindow(lengthMs: minute, unit: true)
        var rpd = SlidingWindow(lengthMs: day, unit: true)
        var tpm = SlidingWindow(lengthMs: minute)
        var tpd = SlidingWindow(lengthMs: day)
        var inFlight: [UInt64: Int64] = [:]  // reservation id -> lease expiry
        var cooldownUntil: Int64 = 0
        var cooldownReason: CooldownReason = .manual
        var disabled = false
        var failures = 0
        var usage = UsageCounters()

        mutating func prune(now: Int64) {
            self.rpm.prune(now: now)
            self.rpd.prune(now: now)
            self.tpm.prune(now: now)
            self.tpd.prune(now: now)
            if self.inFlight.contains(where: { $0.value <= now }) {
                self.inFlight = self.inFlight.filter { $0.value > now }
            }
        }
    }

    struct KeyState: Sendable {
        var rpm = SlidingWindow(lengthMs: minute, unit: true)
        var tpm = SlidingWindow(lengthMs: minute)
        var usage = UsageCounters()
    }

    var providers: [String: ProviderState] = [:]
    var keys: [String: KeyState] = [:]
    var models: [String: ModelCounters] = [:]
    var nodes: [String: Int64] = [:]
    var nextID: UInt64 = 0
    /// Micro-USD spent, by the Redis key suffix it would have (`provider:<p>:spend:<YYYY-MM-DD>`,
    /// `key:<k>:spend:<YYYY-MM-DD>`, `key:<k>:spend:<YYYY-MM>`).
    var spend: [String: Int64] = [:]
    /// Milliseconds since the Unix epoch at this state's time 0: budgets follow UTC calendar days.
    public var epochAtZero: Int64

    /// - Parameter epochAtZero: milliseconds since the Unix epoch at the state's time 0 (its times are
    ///   relative to it); budgets' days and months are computed from it.
    public init(epochAtZero: Int64 = 0) {
        self.epochAtZero = epochAtZero
    }

    static func providerSpend(_ p: String, _ day: String) -> String { "provider:\(p):spend:\(day)" }
    static func keySpend(_ k: String, _ period: String) -> String { "key:\(k):spend:\(period)" }

    private mutating func addSpend(_ suffix: String, _ amount: Int64) {
        guard amount != 0 else { return }
        self.spend[suffix, default: 0] += amount
    }

    // MARK: In-place access

    /// Mutates a provider's state in place (through the dictionary's modify accessor): copying the state
    /// out and back would copy every window buffer on each request.
    private mutating func withProvider<R>(_ name: String, _ body: (inout ProviderState) -> R) -> R {
        body(&self.providers[name, default: ProviderState()])
    }

    private mutating func withKey<R>(_ name: String, _ body: (inout KeyState) -> R) -> R {
        body(&self.keys[name, default: KeyState()])
    }

    // MARK: Admission

    /// Decides an admission at time `now`; see ``QuotaStore/admit(_:)``.
    public mutating func admit(_ request: AdmissionRequest, now: Int64) -> AdmissionDecision {
        if let key = request.key {
            let limited: AdmissionDecision? = self.withKey(key.name) { ks in
                ks.rpm.prune(now: now)
                ks.tpm.prune(now: now)
                guard let rpm = key.limits.rpm else { return nil }
                guard let at = ks.rpm.fitsAt(amount: 1, limit: Int64(rpm), now: now) else { return .keyLimited(retryAfter: nil) }
                return at > now ? .keyLimited(retryAfter: .milliseconds(at - now)) : nil
            }
            if let limited { return limited }
        }

        var blocked: [BlockedCandidate] = []
        var earliest: Int64?
        var earliestPrimary: Int64?
        var onlyKeyBlocked = true
        var keyBudget: BudgetPeriod?
        // Whether the key's budget alone rules out every candidate (then the answer is insufficient_quota).
        var keyBudgetBlocksAll = !request.candidates.isEmpty
        for (index, c) in request.candidates.enumerated() {
            if c.tier == .fallback, let wait = request.tierWait, let p = earliestPrimary, p - now <= wait.millisecondsRoundedUp {
                return .wait(.milliseconds(max(1, p - now)))
            }
            let tokens = Int64(max(0, c.tokens))
            var reason: BlockReason?
            var freeAt: Int64? = now
            func block(_ r: BlockReason, _ at: Int64?) {
                if reason == nil { reason = r }
                if let f = freeAt { freeAt = at.map { max(f, $0) } }
            }
            self.withProvider(c.provider) { ps in
                ps.prune(now: now)
                if ps.disabled { block(.disabled, nil) }
                if ps.cooldownUntil > now { block(.cooldown, ps.cooldownUntil) }
                if let l = c.limits.rpm {
                    let at = ps.rpm.fitsAt(amount: 1, limit: Int64(l), now: now)
                    if at == nil || at! > now { block(.rpm, at) }
                }
                if let l = c.limits.rpd {
                    let at = ps.rpd.fitsAt(amount: 1, limit: Int64(l), now: now)
                    if at == nil || at! > now { block(.rpd, at) }
                }
                if let l = c.limits.tpm {
                    let at = ps.tpm.fitsAt(amount: tokens, limit: Int64(l), now: now)
                    if at == nil || at! > now { block(.tpm, at) }
                }
                if let l = c.limits.tpd {
                    let at = ps.tpd.fitsAt(amount: tokens, limit: Int64(l), now: now)
                    if at == nil || at! > now { block(.tpd, at) }
                }
                if let l = c.limits.maxConcurrent, ps.inFlight.count >= l {
                    let soonest = ps.inFlight.values.min().map { min($0, now + Self.concurrencyHint) } ?? now + Self.concurrencyHint
                    block(.concurrency, l < 1 ? nil : soonest)
                }
            }
            // The UTC day is formatted only when a budget is checked (not on every admission).
            let epoch = self.epochAtZero + now
            if let budget = c.limits.dailyBudgetMicroUSD,
                (self.spend[Self.providerSpend(c.provider, BudgetCalendar.day(epoch))] ?? 0) + c.cost > budget
            {
                block(.budget, now + BudgetCalendar.untilNextDay(epoch))
            }
            let providerBlocked = reason != nil
            if let key = request.key, let tpm = key.limits.tpm {
                let at = self.keys[key.name]?.tpm.fitsAt(amount: tokens, limit: Int64(tpm), now: now)
                if at == nil || at! > now { block(.keyTPM, at) }
            }
            var keyBudgetBlocks = false
            if let key = request.key {
                if let m = key.limits.monthlyBudgetMicroUSD, (self.spend[Self.keySpend(key.name, BudgetCalendar.month(epoch))] ?? 0) + c.cost > m {
                    block(.keyBudget, now + BudgetCalendar.untilNextMonth(epoch))
                    keyBudget = .monthly
                    keyBudgetBlocks = true
                } else if let d = key.limits.dailyBudgetMicroUSD, (self.spend[Self.keySpend(key.name, BudgetCalendar.day(epoch))] ?? 0) + c.cost > d {
                    block(.keyBudget, now + BudgetCalendar.untilNextDay(epoch))
                    if keyBudget == nil { keyBudget = .daily }
                    keyBudgetBlocks = true
                }
            }
            if !keyBudgetBlocks { keyBudgetBlocksAll = false }

            guard let r = reason else {
                return .admitted(self.reserve(c, index: index, key: request.key, now: now))
            }
            if providerBlocked { onlyKeyBlocked = false }
            blocked.append(BlockedCandidate(provider: c.provider, reason: r, retryAfter: freeAt.map { .milliseconds(max(1, $0 - now)) }))
            if let f = freeAt {
                earliest = min(earliest ?? f, f)
                if c.tier == .primary { earliestPrimary = min(earliestPrimary ?? f, f) }
            }
        }
        let retryAfter = earliest.map { Duration.milliseconds(max(1, $0 - now)) }
        if keyBudgetBlocksAll, let period = keyBudget {
            let epoch = self.epochAtZero + now
            let until = period == .monthly ? BudgetCalendar.untilNextMonth(epoch) : BudgetCalendar.untilNextDay(epoch)
            return .keyOverBudget(period: period, retryAfter: .milliseconds(max(1, until)))
        }
        if onlyKeyBlocked, !blocked.isEmpty { return .keyLimited(retryAfter: retryAfter) }
        return .exhausted(retryAfter: retryAfter, blocked: blocked)
    }

    private mutating func reserve(_ c: AdmissionCandidate, index: Int, key: KeyAdmission?, now: Int64) -> Reservation {
        self.nextID += 1
        let id = self.nextID
        let tokens = Int64(max(0, c.tokens))
        self.withProvider(c.provider) { ps in
            if c.limits.rpm != nil { ps.rpm.add(time: now, id: id, amount: 1) }
            if c.limits.rpd != nil { ps.rpd.add(time: now, id: id, amount: 1) }
            if c.limits.tpm != nil { ps.tpm.add(time: now, id: id, amount: tokens) }
            if c.limits.tpd != nil { ps.tpd.add(time: now, id: id, amount: tokens) }
            ps.inFlight[id] = now + max(1, c.lease.millisecondsRoundedUp)
        }
        var remainingRequests: Int?, remainingTokens: Int?
        if let key {
            self.withKey(key.name) { ks in
                if let l = key.limits.rpm {
                    ks.rpm.add(time: now, id: id, amount: 1)
                    remainingRequests = max(0, l - ks.rpm.count)
                }
                if let l = key.limits.tpm {
                    ks.tpm.add(time: now, id: id, amount: tokens)
                    remainingTokens = max(0, l - Int(ks.tpm.sum))
                }
            }
        }
        var r = Reservation(
            id: String(id), provider: c.provider, candidateIndex: index, tier: c.tier, tokens: c.tokens, key: key?.name,
            keyRemainingRequests: remainingRequests, keyRemainingTokens: remainingTokens)
        let priced = c.cost > 0 && c.pricing != nil
        guard priced || key?.limits.hasBudget == true else { return r }
        let epoch = self.epochAtZero + now
        let day = BudgetCalendar.day(epoch), month = BudgetCalendar.month(epoch)
        if priced {
            r.cost = c.cost
            r.pricing = c.pricing
            r.spendDay = day
            r.spendMonth = month
            self.addSpend(Self.providerSpend(c.provider, day), c.cost)
            if let key {
                self.addSpend(Self.keySpend(key.name, day), c.cost)
                self.addSpend(Self.keySpend(key.name, month), c.cost)
            }
        }
        if let key, key.limits.hasBudget {
            r.keySpentToday = self.spend[Self.keySpend(key.name, day)] ?? 0
            r.keySpentThisMonth = self.spend[Self.keySpend(key.name, month)] ?? 0
        }
        return r
    }

    /// What this state's windows of `provider` hold at `now`: in each whole window (`rolling`) and of the
    /// entries admitted after `time` (`after`); `inFlight` counts live reservations. The Redis store's
    /// degraded mode uses it to keep a node within its share of what the fleet has left.
    public mutating func use(provider: String, after time: Int64, now: Int64) -> (rolling: WindowUse, after: WindowUse) {
        guard self.providers[provider] != nil else { return (WindowUse(), WindowUse()) }
        return self.withProvider(provider) { ps in
            ps.prune(now: now)
            var r = WindowUse(), a = WindowUse()
            r.rpm = ps.rpm.count
            r.rpd = ps.rpd.count
            r.tpm = Int(ps.tpm.sum)
            r.tpd = Int(ps.tpd.sum)
            r.inFlight = ps.inFlight.count
            a.rpm = Int(ps.rpm.sum(after: time))
            a.rpd = Int(ps.rpd.sum(after: time))
            a.tpm = Int(ps.tpm.sum(after: time))
            a.tpd = Int(ps.tpd.sum(after: time))
            a.inFlight = r.inFlight
            return (r, a)
        }
    }

    /// The key's windows at `now`, like ``use(provider:after:now:)`` (`rpm`, `tpm` only).
    public mutating func use(key: String, after time: Int64, now: Int64) -> (rolling: WindowUse, after: WindowUse) {
        guard self.keys[key] != nil else { return (WindowUse(), WindowUse()) }
        return self.withKey(key) { ks in
            ks.rpm.prune(now: now)
            ks.tpm.prune(now: now)
            var r = WindowUse(), a = WindowUse()
            r.rpm = ks.rpm.count
            r.tpm = Int(ks.tpm.sum)
            a.rpm = Int(ks.rpm.sum(after: time))
            a.tpm = Int(ks.tpm.sum(after: time))
            return (r, a)
        }
    }

    // MARK: Settlement

    /// Applies a settlement at time `now`; see ``QuotaStore/settle(_:)``. Returns whether it opened a cooldown
    /// at the provider's failure threshold.
    @discardableResult
    public mutating func settle(_ s: Settlement, now: Int64) -> Bool {
        var opened = false
        let r = s.reservation
        let id = UInt64(r.id) ?? 0
        let charged = Int64(s.result.chargedTokens(reserved: r.tokens))
        let delta = UsageCounters.delta(for: s)
        self.withProvider(r.provider) { ps in
            switch s.result {
            case .abandoned, .broken:
                // Left mid-way: the provider may not have noticed the closed connection yet.
                if ps.inFlight[id] != nil { ps.inFlight[id] = now + Self.releaseGrace }
            default:
                ps.inFlight[id] = nil
            }
            ps.tpm.adjust(id: id, to: charged)
            ps.tpd.adjust(id: id, to: charged)
            ps.usage.add(delta)
            switch s.result {
            case .success:
                ps.failures = 0
            case .failure, .broken:
                ps.failures += 1
                if ps.failures >= max(1, s.failureThreshold) {
                    ps.failures = 0
                    opened = true
                    Self.extendCooldown(&ps, until: now + s.failureCooldown.millisecondsRoundedUp, reason: .failures)
                }
            case .rateLimited(let d):
                Self.extendCooldown(&ps, until: now + d.millisecondsRoundedUp, reason: .rateLimited)
            case .unauthorized(let d):
                Self.extendCooldown(&ps, until: now + d.millisecondsRoundedUp, reason: .unauthorized)
            case .contextLengthExceeded, .clientError, .abandoned:
                break
            }
            if let d = s.exhaustedCooldown {
                Self.extendCooldown(&ps, until: now + d.millisecondsRoundedUp, reason: .exhausted)
            }
        }
        if let key = r.key {
            self.withKey(key) { ks in
                ks.tpm.adjust(id: id, to: charged)
                ks.usage.add(delta)
            }
        }
        if let e = s.modelEvent { self.record(e) }
        if let day = r.spendDay, let month = r.spendMonth {
            let delta = s.result.chargedCost(reserved: r.cost, pricing: r.pricing) - r.cost
            self.addSpend(Self.providerSpend(r.provider, day), delta)
            if let key = r.key {
                self.addSpend(Self.keySpend(key, day), delta)
                self.addSpend(Self.keySpend(key, month), delta)
            }
        }
        return opened
    }

    /// Counts a client request against its model group.
    public mutating func record(_ e: ModelEvent) {
        self.models[e.group, default: ModelCounters()].requests += 1
        if e.fallback { self.models[e.group, default: ModelCounters()].fallbacks += 1 }
        if e.exhausted { self.models[e.group, default: ModelCounters()].exhausted += 1 }
        if e.continued { self.models[e.group, default: ModelCounters()].continued += 1 }
    }

    static func extendCooldown(_ ps: inout ProviderState, until: Int64, reason: CooldownReason) {
        if until > ps.cooldownUntil {
            ps.cooldownUntil = until
            ps.cooldownReason = reason
        }
    }

    // MARK: Operator actions

    public mutating func renewLease(_ r: Reservation, for duration: Duration, now: Int64) {
        guard let id = UInt64(r.id), self.providers[r.provider]?.inFlight[id] != nil else { return }
        self.providers[r.provider]?.inFlight[id] = now + max(1, duration.millisecondsRoundedUp)
    }

    public mutating func setCooldown(provider: String, for duration: Duration, reason: CooldownReason, now: Int64) -> Duration {
        self.withProvider(provider) { ps in
            Self.extendCooldown(&ps, until: now + duration.millisecondsRoundedUp, reason: reason)
            return .milliseconds(max(0, ps.cooldownUntil - now))
        }
    }

    public mutating func clearCooldown(provider: String) {
        self.providers[provider]?.cooldownUntil = 0
    }

    public mutating func setDisabled(provider: String, _ disabled: Bool) {
        self.providers[provider, default: ProviderState()].disabled = disabled
    }

    public mutating func heartbeat(nodeID: String, now: Int64) -> Int {
        self.nodes[nodeID] = now
        self.nodes = self.nodes.filter { now - $0.value < Self.nodeLiveness }
        return self.nodes.count
    }

    // MARK: Stats

    public mutating func stats(_ q: StatsQuery, now: Int64) -> FleetStats {
        var out = FleetStats()
        for name in q.providers ?? self.providers.keys.sorted() {
            if self.providers[name] != nil { self.providers[name]!.prune(now: now) }
            let ps = self.providers[name] ?? ProviderState()
            var w = WindowUse()
            w.rpm = ps.rpm.count
            w.rpd = ps.rpd.count
            w.tpm = Int(ps.tpm.sum)
            w.tpd = Int(ps.tpd.sum)
            w.inFlight = ps.inFlight.count
            let cooling = ps.cooldownUntil > now
            var p = ProviderStats(
                name: name, usage: ps.usage, window: w,
                cooldownRemaining: cooling ? .milliseconds(ps.cooldownUntil - now) : nil,
                cooldownReason: cooling ? ps.cooldownReason : nil,
                disabled: ps.disabled, consecutiveFailures: ps.failures)
            p.spentToday = self.spend[Self.providerSpend(name, BudgetCalendar.day(self.epochAtZero + now))] ?? 0
            out.providers.append(p)
        }
        for name in q.keys ?? self.keys.keys.sorted() {
            if self.keys[name] != nil {
                self.keys[name]!.rpm.prune(now: now)
                self.keys[name]!.tpm.prune(now: now)
            }
            let ks = self.keys[name] ?? KeyState()
            var w = WindowUse()
            w.rpm = ks.rpm.count
            w.tpm = Int(ks.tpm.sum)
            var k = KeyStats(name: name, usage: ks.usage, window: w)
            k.spentToday = self.spend[Self.keySpend(name, BudgetCalendar.day(self.epochAtZero + now))] ?? 0
            k.spentThisMonth = self.spend[Self.keySpend(name, BudgetCalendar.month(self.epochAtZero + now))] ?? 0
            out.keys.append(k)
        }
        for name in q.models ?? self.models.keys.sorted() {
            out.models.append(ModelStats(name: name, counters: self.models[name] ?? ModelCounters()))
        }
        out.nodes = self.nodes.filter { now - $0.value < Self.nodeLiveness }.sorted { $0.key < $1.key }
            .map { NodeInfo(id: $0.key, lastSeen: .milliseconds(now - $0.value)) }
        return out
    }
}
