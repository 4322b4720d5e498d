public import MultiplexerCore
import Synchronization

/// The fleet-wide ``QuotaStore``: every gateway node and embedding service that points at the same
/// Redis and namespace shares one set of windows, reservations, cooldowns and counters.
///
/// - Admission is one EVALSHA (one round trip) that checks the client key and walks the candidates
///   atomically; settlement is a second EVALSHA, pipelined with other requests' commands by the
///   auto-pipelining ``RedisClient``.
/// - Key layout: `docs/redis-keys.md`. Time is Redis's clock.
///
/// ## Admission ids
/// The node makes each admission's id (from a block of 2^20 it takes from Redis, see
/// ``RedisScripts/idBlockBody``), so an admission whose reply is lost (a timeout, a connection error
/// after sending: ``RedisError/isAmbiguous``) is known by its id: the node counts it as applied in its own
/// view and, once Redis answers again, cancels it (``RedisScripts/cancelBody``: removed from every window
/// and lease; an admission still on its way then applies nothing). A lost reply never double-spends.
///
/// ## Degraded mode
/// When Redis cannot be reached (connection refused, command timeout, breaker open):
/// - `onUnavailable: .local` — admissions fall back to an in-process ``QuotaState`` holding only this node's
///   degraded admissions, within its **share of what the fleet has left** (ARCHITECTURE §8): every admission
///   reply tells the node the fleet's use of each window it checked; until a whole window has passed since
///   then, the node admits at most `(limit − fleet use seen) / live nodes` in it, afterwards `limit / live
///   nodes` per rolling window (`max_concurrent` likewise, over one lease length).
/// - Coming back, before its next Redis admission, the node cancels its lost admissions, writes its degraded
///   admissions into the windows with their times (and the leases of those still running), then their
///   settlements and buffered counters — each exactly once (idempotent per id, counter batches per batch id).
/// - Redis lost its data (`{ns}:epoch` changed or gone): the node also writes back its own admissions of the
///   last minute and its leases still running.
/// - `onUnavailable: .reject` — admissions throw ``RedisError`` (the gateway answers 503).
///
/// ## Running
/// ``run()`` must be running for heartbeats (`{ns}:nodes`), the live-node count and the replay of
/// buffered counters; it returns when its task is cancelled. ``shutdown()`` stops the connection thread.
public final class RedisQuotaStore: QuotaStore {
    /// What to do while Redis is unreachable.
    public enum UnavailablePolicy: String, Sendable, Hashable {
        /// Serve on each node's share of every limit; replay counters later.
        case local
        /// Refuse admissions.
        case reject
    }

    /// Where the store stands, for `/readyz`.
    public enum Availability: String, Sendable, Hashable {
        case connected
        /// Redis unreachable; serving on local shares.
        case degraded
        /// Redis unreachable; rejecting.
        case unavailable
    }

    /// Store settings.
    public struct Configuration: Sendable {
        /// Where Redis is: one server, a master found through Sentinel, or a Redis Cluster (the
        /// namespace's keys all live in the slot of its hash tag, on one master).
        public var topology: RedisTopology
        /// The namespace: every key is `{namespace}:…`.
        public var namespace: String
        public var connectTimeout: Duration
        public var commandTimeout: Duration
        public var onUnavailable: UnavailablePolicy
        /// This node's id in `{ns}:nodes`.
        public var nodeID: String
        /// Heartbeat and replay period of ``run()``.
        public var heartbeatInterval: Duration
        /// How long a command may keep following redirections and transient refusals (`MOVED`, `ASK`,
        /// `READONLY`, `TRYAGAIN`, `CLUSTERDOWN`, a slot migration) before the store treats Redis as unavailable.
        public var redirectTimeout: Duration = .seconds(1)
        /// Tests only: scripts add `{ns}:clock_offset_ms` to Redis's `TIME`, so a test can move time forward.
        package var virtualClockForTesting: Bool = false

        public init(
            topology: RedisTopology, namespace: String = "mux", connectTimeout: Duration = .milliseconds(200),
            commandTimeout: Duration = .milliseconds(50), onUnavailable: UnavailablePolicy = .local, nodeID: String,
            heartbeatInterval: Duration = .seconds(1)
        ) {
            self.topology = topology
            self.namespace = namespace
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.onUnavailable = onUnavailable
            self.nodeID = nodeID
            self.heartbeatInterval = heartbeatInterval
        }

        /// One Redis server.
        public init(
            endpoint: RedisEndpoint, namespace: String = "mux", connectTimeout: Duration = .milliseconds(200),
            commandTimeout: Duration = .milliseconds(50), onUnavailable: UnavailablePolicy = .local, nodeID: String,
            heartbeatInterval: Duration = .seconds(1)
        ) {
            self.init(
                topology: .standalone(endpoint), namespace: namespace, connectTimeout: connectTimeout, commandTimeout: commandTimeout,
                onUnavailable: onUnavailable, nodeID: nodeID, heartbeatInterval: heartbeatInterval)
        }

        /// The standalone server; setting it selects the standalone topology. For the other topologies
        /// this reads the first sentinel or seed node (for display only).
        public var endpoint: RedisEndpoint {
            get { self.topology.displayEndpoint }
            set { self.topology = .standalone(newValue) }
        }
    }

    /// The fleet's use of one provider's (or key's) windows, as the last admission reply that checked it said.
    struct SeenUse {
        var rpm = -1, rpd = -1, tpm = -1, tpd = -1, inFlight = -1
        /// Spend (micro-USD) today, and — for a key — this month; -1 when not reported.
        var spentToday: Int64 = -1, spentThisMonth: Int64 = -1
        /// The UTC day and month of the sighting (a budget's share of what is left holds for that period only).
        var day = "", month = ""
        /// Local time (ms) of that reply.
        var at: Int64
    }

    /// An admission made while Redis was unreachable, to be written into its windows on recovery.
    struct DegradedAdmission {
        var provider: String
        var key: String?
        var time: Int64
        var tokens: Int
        var windows: Int
        var lease: Duration
        /// Micro-USD it holds of the budgets (reserved while running, the real cost once settled), and the UTC
        /// day and month it counts in.
        var cost: Int64 = 0
        var spendDay: String?
        var spendMonth: String?
        /// Still running (its lease is written too).
        var open = true
        /// Part of a restore batch on its way to Redis: a settlement meanwhile waits in `afterRestore`.
        var restoring = false
        /// Its Redis id, taken at the first restore attempt and kept: a restore sent again (its reply lost, or a
        /// later batch failed) writes the same ids, so it counts once.
        var redisID: String?
    }

    /// One of this node's Redis admissions of the last minute (written back if Redis loses its data).
    struct RecentAdmission {
        var id: UInt64
        var provider: String
        var key: String?
        var time: Int64
        var tokens: Int
        var windows: Int
    }

    /// An admission whose reply was lost: cancelled once Redis answers.
    struct LostAdmission {
        var id: String
        var key: String?
        var providers: [String]
    }

    private struct Local {
        /// Degraded admissions (and what they learned: cooldowns, failure streaks).
        /// The local rules (degraded admissions); its time 0 is the store's creation, at this wall-clock time, so
        /// that budgets' UTC days agree with Redis's.
        var quota = QuotaState(epochAtZero: WallClock.epochMilliseconds())
        var liveNodes = 1
        var degraded = false {
            didSet {
                if self.degraded && !oldValue { self.losses += 1 }
                if !self.degraded && oldValue { self.recoveries += 1 }
            }
        }
        /// How often the store went degraded, and came back: transitions a sampler cannot miss.
        var losses = 0
        var recoveries = 0
        /// `{ns}:epoch` as last seen; `nil` until the first contact.
        var epoch: String?
        /// Redis lost its data (or the epoch is unknown): write back `recent` before the next admission.
        var epochStale = true
        /// The current id block: next id and the end of the block.
        var nextID: UInt64 = 0
        var blockEnd: UInt64 = 0
        var seen: [String: SeenUse] = [:]
        var seenKeys: [String: SeenUse] = [:]
        /// This node's Redis admissions of the last minute, oldest first from `recentHead`.
        var recent: [RecentAdmission] = []
        var recentHead = 0
        /// This node's Redis reservations in flight: id → (provider, lease).
        var open: [String: (provider: String, lease: Duration)] = [:]
        /// Degraded admissions not yet written to Redis, by local id.
        var degradedLog: [String: DegradedAdmission] = [:]
        var degradedCount = 0
        /// Degraded admissions written to Redis while still running: local id → Redis id.
        var restoredIDs: [String: String] = [:]
        /// Settlements of degraded admissions that arrived while their restore batch was on its way.
        var afterRestore: [Settlement] = []
        var lost: [LostAdmission] = []
        /// A recovery (``recover()``) is running; admissions waiting for it to end.
        var recovering = false
        var recoveryWaiters: [CheckedContinuation<Void, Never>] = []
        /// Local time (ms) the last recovery started.
        var lastRecoveryAttempt: Int64 = .min / 2
        /// Settlements of Redis reservations not yet written.
        var settlements: [Settlement] = []
        /// Counter increments not yet written, by hash key suffix (`provider:x:usage`) and field.
        var counters: [String: [String: Int]] = [:]
        /// A counter batch sent but not acknowledged: retried with the same id.
        var inflightBatch: (id: String, entries: [String])?
        var batchSeq = 0
        /// ``run()`` is active: successful settlements are queued in `deferred`.
        var running = false
        var deferred: [Settlement] = []

        /// Whether something must reach Redis before the node admits there again.
        var needsRecovery: Bool { self.epochStale || !self.lost.isEmpty || !self.degradedLog.isEmpty }

        mutating func pruneRecent(now: Int64) {
            while self.recentHead < self.recent.count, self.recent[self.recentHead].time <= now - QuotaState.minute {
                self.recentHead += 1
            }
            if self.recentHead > 256, self.recentHead * 2 > self.recent.count {
                self.recent.removeFirst(self.recentHead)
                self.recentHead = 0
            }
        }
    }

    public let configuration: Configuration
    /// The connection (exposed for diagnostics and benchmarks).
    public let client: RedisClient
    private let prefix: String
    /// The namespace's key prefix, `{ns}:`.
    var keyPrefix: String { self.prefix }
    private let schemaKey: String
    private let scripts: RedisScripts
    private let local = Mutex(Local())
    /// Wakes the background writer of deferred settlements (at most one pending wake-up).
    private let drainSignal = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    private let origin = ContinuousClock.now
    /// Distinguishes this process's replay batches from those of an earlier run with the same node id.
    private let incarnation = UInt64.random(in: 1...UInt64.max)

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.prefix = "{\(configuration.namespace)}:"
        self.schemaKey = "{\(configuration.namespace)}:schema"
        self.client = RedisClient(
            configuration: .init(
                topology: configuration.topology, routingKey: self.schemaKey, connectTimeout: configuration.connectTimeout,
                commandTimeout: configuration.commandTimeout, redirectTimeout: configuration.redirectTimeout))
        let isCluster: Bool
        if case .cluster = configuration.topology { isCluster = true } else { isCluster = false }
        self.scripts = .variant(virtualClock: configuration.virtualClockForTesting, migrationSafe: isCluster)
    }

    /// Stops the connection thread.
    public func shutdown() {
        self.client.shutdown()
    }

    /// Set by the first ``run()``.
    private let runCalled = Atomic<Bool>(false)

    /// Connected, degraded or unavailable.
    public var availability: Availability {
        let degraded = self.local.withLock { $0.degraded }
        if !degraded { return .connected }
        return self.configuration.onUnavailable == .local ? .degraded : .unavailable
    }

    /// How many times the store lost Redis and got it back since it was created (a lost connection
    /// that comes back between two looks at ``availability`` still counts once each).
    public var transitions: (losses: Int, recoveries: Int) { self.local.withLock { ($0.losses, $0.recoveries) } }

    /// Live nodes at the last heartbeat (the divisor of local shares).
    public var liveNodes: Int { self.local.withLock { $0.liveNodes } }

    /// Whether buffered counters or settlements wait for Redis.
    public var hasPendingReplay: Bool {
        self.local.withLock {
            !$0.settlements.isEmpty || !$0.counters.isEmpty || $0.inflightBatch != nil || !$0.deferred.isEmpty || !$0.lost.isEmpty
                || !$0.degradedLog.isEmpty || !$0.afterRestore.isEmpty
        }
    }

    private var localNow: Int64 {
        let d = self.origin.duration(to: .now)
        return d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: Lifecycle

    /// Checks the connection and records the schema version. Throws if Redis is unreachable (callers
    /// may start anyway in degraded mode).
    public func connect() async throws {
        try await self.heartbeat(nodeID: self.configuration.nodeID)
        if self.local.withLock({ $0.epochStale }) { throw RedisError(.unavailable, "could not write this node's state to Redis") }
    }

    /// Heartbeats, tracks the live-node count and replays buffered counters, until cancelled.
    ///
    /// While it runs, successful settlements are written in the background (see ``settle(_:)``); when it
    /// is cancelled it writes what is still queued before it returns.
    ///
    /// Call it once (as every component's `run()`, see docs/architecture.md "Lifecycles"): a second call traps.
    public func run() async {
        let alreadyRunning = self.runCalled.exchange(true, ordering: .relaxed)
        precondition(!alreadyRunning, "RedisQuotaStore.run() must be called only once")
        self.local.withLock { $0.running = true }
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    _ = try? await self.heartbeat(nodeID: self.configuration.nodeID)
                    do {
                        try await Task.sleep(for: self.configuration.heartbeatInterval)
                    } catch {
                        return
                    }
                }
            }
            group.addTask {
                for await _ in self.drainSignal.stream { await self.drainDeferred() }
            }
        }
        // Cancelled: stop deferring, then write whatever is still queued, and leave the live nodes (a node
        // that stops cleanly is not *quiet*, whose share the others would hold for it).
        self.local.withLock { $0.running = false }
        await self.drainDeferred()
        _ = try? await self.client.execute(["ZREM", "\(self.prefix)nodes", self.configuration.nodeID])
    }

    /// Writes the queued successful settlements: one EVALSHA per ``settlementBatchSize`` settlements, the
    /// batches concurrently so the client pipelines them.
    private func drainDeferred() async {
        let queued = self.local.withLock { l -> [Settlement] in
            defer { l.deferred.removeAll(keepingCapacity: true) }
            return l.deferred
        }
        guard !queued.isEmpty else { return }
        await withDiscardingTaskGroup { group in
            for start in stride(from: 0, to: queued.count, by: Self.settlementBatchSize) {
                let batch = queued[start..<min(queued.count, start + Self.settlementBatchSize)]
                group.addTask { await self.settleNow(batch) }
            }
        }
    }

    /// Settlements per settle EVALSHA (its argument count is 2 + 19 × this).
    static let settlementBatchSize = 64

    // MARK: QuotaStore

    public func admit(_ request: AdmissionRequest) async throws -> AdmissionDecision {
        try await self.admit(request, afterRestore: false)
    }

    private func admit(_ request: AdmissionRequest, afterRestore: Bool) async throws -> AdmissionDecision {
        // One lock on the common path: nothing owed to Redis, an id left in the block, the epoch.
        let asked = self.localNow
        var ticket = self.local.withLock { l -> (owes: Bool, retry: Bool, id: UInt64?, epoch: String) in
            if l.needsRecovery {
                // While degraded, admissions try to recover at most every `recoveryRetry` (the heartbeat also
                // does, every interval): a recovery sends the whole degraded log, which must not be rebuilt and
                // sent for every request of a long outage.
                return (true, !l.degraded || asked - l.lastRecoveryAttempt >= Self.recoveryRetry, nil, "")
            }
            guard l.nextID < l.blockEnd else { return (false, false, nil, l.epoch ?? "") }
            defer { l.nextID += 1 }
            return (false, false, l.nextID, l.epoch ?? "")
        }
        if ticket.owes {
            guard ticket.retry else { return try self.admitLocally(request, because: RedisError(.unavailable, "recovering")) }
            // Whatever the node owes Redis (lost admissions, degraded admissions, a lost data set) is written
            // before it admits there again; if that fails, this request stays on the local share.
            await self.recoverOrWait()
            if self.local.withLock({ $0.needsRecovery }) {
                return try self.admitLocally(request, because: RedisError(.unavailable, "recovering"))
            }
            ticket.epoch = self.local.withLock { $0.epoch } ?? ""
        }
        let id: UInt64
        if let taken = ticket.id {
            id = taken
        } else {
            do {
                id = try await self.takeID()
            } catch let e {
                return try self.admitLocally(request, because: e)
            }
        }
        let ids = String(id)
        // This admission's part of the batched admission call (``RedisScripts/admitBody``): the admissions
        // queued with it share one script run.
        var args: [String] = [ids, ticket.epoch, self.configuration.nodeID]
        args.reserveCapacity(11 + request.candidates.count * 11)
        args.append(request.key?.name ?? "")
        args.append(Self.limit(request.key?.limits.rpm))
        args.append(Self.limit(request.key?.limits.tpm))
        args.append(request.tierWait.map { String($0.millisecondsRoundedUp) } ?? "-1")
        args.append(String(request.candidates.count))
        args.append(request.key?.limits.dailyBudgetMicroUSD.map { String(max(0, $0)) } ?? "-1")
        args.append(request.key?.limits.monthlyBudgetMicroUSD.map { String(max(0, $0)) } ?? "-1")
        for c in request.candidates {
            args.append(c.provider)
            args.append(String(c.tier.rawValue))
            args.append(Self.limit(c.limits.rpm))
            args.append(Self.limit(c.limits.rpd))
            args.append(Self.limit(c.limits.tpm))
            args.append(Self.limit(c.limits.tpd))
            args.append(Self.limit(c.limits.maxConcurrent))
            args.append(String(max(0, c.tokens)))
            args.append(String(max(1, c.lease.millisecondsRoundedUp)))
            args.append(String(c.pricing == nil ? 0 : max(0, c.cost)))
            args.append(c.limits.dailyBudgetMicroUSD.map { String(max(0, $0)) } ?? "-1")
        }
        let reply: RedisValue
        do {
            reply = try await self.client.evalshaBatched(self.scripts.admit, keys: [self.schemaKey], head: [self.prefix], part: args)
        } catch let e {
            if e.isAmbiguous {
                // It may have been applied: counted locally below, cancelled once Redis answers.
                let lost = LostAdmission(id: ids, key: request.key?.name, providers: request.candidates.map(\.provider))
                self.local.withLock { $0.lost.append(lost) }
            }
            return try self.admitLocally(request, because: e)
        }
        self.markConnected()
        if let tag = reply.array?.first?.int, tag == 6 {
            // Redis lost its data (or this node never wrote its epoch): write back, then admit.
            self.local.withLock { $0.epochStale = true }
            await self.recoverOrWait()
            if afterRestore || self.local.withLock({ $0.needsRecovery }) {
                return try self.admitLocally(request, because: RedisError(.unavailable, "recovering"))
            }
            return try await self.admit(request, afterRestore: true)
        }
        let decision = try Self.decodeAdmission(reply, id: ids, request: request)
        let now = self.localNow
        self.local.withLock { l in
            self.learn(Self.use(of: reply), request: request, now: now, into: &l)
            if case .admitted(let r) = decision {
                let c = request.candidates[r.candidateIndex]
                l.open[r.id] = (c.provider, c.lease)
                l.pruneRecent(now: now)
                l.recent.append(
                    RecentAdmission(
                        id: id, provider: c.provider, key: request.key?.name, time: now, tokens: max(0, c.tokens),
                        windows: Self.windows(c.limits, key: request.key?.limits)))
            }
        }
        return decision
    }

    /// The next admission id, taking a new block from Redis when this one is used up.
    private func takeID() async throws -> UInt64 {
        if let id = self.local.withLock({ l -> UInt64? in
            guard l.nextID < l.blockEnd else { return nil }
            defer { l.nextID += 1 }
            return l.nextID
        }) {
            return id
        }
        let v = try Self.check(try await self.client.evalsha(self.scripts.idBlock, keys: [self.schemaKey], args: [self.prefix]))
        guard let block = v.int, block > 0 else { throw RedisError(.protocolError, "unexpected id block reply") }
        return self.local.withLock { l in
            if l.nextID >= l.blockEnd {
                l.nextID = UInt64(block) << 20
                l.blockEnd = l.nextID + (1 << 20)
            }
            defer { l.nextID += 1 }
            return l.nextID
        }
    }

    /// The windows an admission counts in (``RedisScripts/restoreBody``'s bits).
    private static func windows(_ p: ProviderLimits, key: KeyLimits?) -> Int {
        var w = 0
        if p.rpm != nil { w |= 1 }
        if p.rpd != nil { w |= 2 }
        if p.tpm != nil { w |= 4 }
        if p.tpd != nil { w |= 8 }
        if key?.rpm != nil { w |= 16 }
        if key?.tpm != nil { w |= 32 }
        return w
    }

    /// The `use` array of an admission reply (see ``RedisScripts/admitBody``).
    static func use(of reply: RedisValue) -> [Int64] {
        guard let a = reply.array, let tag = a.first?.int else { return [] }
        let at: Int
        switch tag {
        case 1: at = 5
        case 2, 3, 4, 7: at = 2
        default: return []
        }
        guard a.count > at, let u = a[at].array else { return [] }
        return u.map { $0.int ?? -1 }
    }

    /// Records the fleet's use an admission reply reported.
    private func learn(_ use: [Int64], request: AdmissionRequest, now: Int64, into l: inout Local) {
        guard use.count >= 4 else { return }
        // The period of a sighting matters only for a reported spend: formatted only then.
        var day = "", month = ""
        if use[2] >= 0 || use[3] >= 0 || stride(from: 9, to: use.count, by: 6).contains(where: { use[$0] >= 0 }) {
            let wall = WallClock.epochMilliseconds()
            (day, month) = (BudgetCalendar.day(wall), BudgetCalendar.month(wall))
        }
        func int(_ v: Int64) -> Int { Int(clamping: v) }
        if let k = request.key {
            l.seenKeys[k.name] = SeenUse(rpm: int(use[0]), tpm: int(use[1]), spentToday: use[2], spentThisMonth: use[3], day: day, month: month, at: now)
        }
        var i = 4
        for c in request.candidates {
            guard i + 5 < use.count else { break }
            l.seen[c.provider] = SeenUse(
                rpm: int(use[i]), rpd: int(use[i + 1]), tpm: int(use[i + 2]), tpd: int(use[i + 3]), inFlight: int(use[i + 4]), spentToday: use[i + 5],
                day: day, month: month, at: now)
            i += 6
        }
    }

    /// Settles an attempt.
    ///
    /// A **successful** attempt's settlement (refund, slot release, counters) is queued and written by
    /// ``run()`` in the background, so a request's response does not wait for it and settlements of
    /// concurrent requests share pipelines. Failures — 429 cooldowns, failure counts, 401s — are written
    /// before this returns, so the request's next attempt (and every node) sees them; so is a success that
    /// announced exhaustion (``MultiplexerCore/Settlement/exhaustedCooldown``). Without ``run()``
    /// everything is written before returning.
    @discardableResult
    public func settle(_ settlement: Settlement) async -> SettlementEffect {
        var settlement = settlement
        if settlement.reservation.id.hasPrefix("L") {
            guard let redisID = self.settleLocally(settlement) else { return .none }
            settlement.reservation.id = redisID
        }
        // A success that announced exhaustion is written at once, like a 429: the next request must see it.
        let deferrable: Bool
        if case .success = settlement.result, settlement.exhaustedCooldown == nil { deferrable = true } else { deferrable = false }
        let queued = self.local.withLock { l -> Bool in
            l.open.removeValue(forKey: settlement.reservation.id)
            guard deferrable, l.running else { return false }
            l.deferred.append(settlement)
            return true
        }
        if queued {
            self.drainSignal.continuation.yield()
            return .none
        }
        let opened = await self.settleNow([settlement][...])
        return SettlementEffect(failureCooldown: opened.first == true ? settlement.failureCooldown : nil)
    }

    /// Writes `batch`; returns, per settlement, whether it opened a cooldown at the failure threshold (empty
    /// when the batch was buffered for later).
    @discardableResult
    private func settleNow(_ batch: ArraySlice<Settlement>) async -> [Bool] {
        do {
            let opened = try await self.writeSettlements(batch)
            self.markConnected()
            return opened
        } catch {
            self.local.withLock { l in
                l.degraded = true
                l.settlements.append(contentsOf: batch)
            }
            return []
        }
    }

    public func record(_ event: ModelEvent) async {
        do {
            let v = try await self.client.evalsha(
                self.scripts.record, keys: [self.schemaKey], args: [self.prefix, event.group, event.fallback ? "1" : "0", event.exhausted ? "1" : "0", event.continued ? "1" : "0"])
            if case .error = v { throw RedisError(.serverError, v.errorMessage ?? "") }
        } catch {
            self.local.withLock { l in
                l.degraded = true
                Self.buffer(event, into: &l)
            }
        }
    }

    public func renewLease(_ reservation: Reservation, for duration: Duration) async throws {
        var id = reservation.id
        if id.hasPrefix("L") {
            let now = self.localNow
            let restored = self.local.withLock { l -> String? in
                if let r = l.restoredIDs[id] { return r }
                l.quota.renewLease(Self.localReservation(reservation), for: duration, now: now)
                return nil
            }
            guard let restored else { return }
            id = restored
        }
        // A lease that expired while Redis was away (or that Redis lost) is entered again, unless settled.
        try Self.check(
            try await self.client.evalsha(
                self.scripts.renew, keys: [self.schemaKey],
                args: [self.prefix, reservation.provider, id, String(max(1, duration.millisecondsRoundedUp))]))
    }

    @discardableResult
    public func setCooldown(provider: String, for duration: Duration, reason: CooldownReason) async throws -> Duration {
        let v = try Self.check(
            try await self.client.evalsha(
                self.scripts.cooldown, keys: [self.schemaKey],
                args: [self.prefix, provider, String(max(1, duration.millisecondsRoundedUp)), reason.rawValue]))
        let ms = v.int ?? 0
        return ms < 0 ? RetryHint.maximum : .milliseconds(ms)
    }

    public func clearCooldown(provider: String) async throws {
        try Self.check(try await self.client.execute(["DEL", "\(self.prefix)provider:\(provider):cooldown"]))
    }

    public func setDisabled(provider: String, _ disabled: Bool) async throws {
        let key = "\(self.prefix)provider:\(provider):disabled"
        try Self.check(try await self.client.execute(disabled ? ["SET", key, "1"] : ["DEL", key]))
    }

    @discardableResult
    public func heartbeat(nodeID: String) async throws -> Int {
        // A node that was cut off writes what it owes before it heartbeats: until then, the others count
        // its degraded share as used (its heartbeat is quiet).
        if self.local.withLock({ $0.needsRecovery && !$0.epochStale }) {
            await self.recoverOrWait()
            if self.local.withLock({ $0.needsRecovery && !$0.epochStale }) { throw RedisError(.unavailable, "recovering") }
        }
        let v: RedisValue
        do {
            v = try Self.check(try await self.client.evalsha(self.scripts.heartbeat, keys: [self.schemaKey], args: [self.prefix, nodeID]))
        } catch {
            self.local.withLock { $0.degraded = true }
            throw error
        }
        let live = max(1, Int(v.array?.first?.int ?? 1))
        let epoch = v.array.flatMap { $0.count > 1 ? $0[1].text : nil } ?? ""
        self.local.withLock { l in
            l.liveNodes = live
            if epoch.isEmpty || epoch != l.epoch { l.epochStale = true }
        }
        self.markConnected()
        // (waits for a recovery an admission is running, so `connect()` reports what it achieved)
        await self.recoverOrWait()
        return live
    }

    public func stats(_ query: StatsQuery) async throws -> FleetStats {
        var q = query
        if q.providers == nil || q.keys == nil || q.models == nil {
            let known = try await self.discoverNames()
            q.providers = q.providers ?? known.providers
            q.keys = q.keys ?? known.keys
            q.models = q.models ?? known.models
        }
        let providers = q.providers ?? [], keys = q.keys ?? [], models = q.models ?? []
        var args = [self.prefix, String(providers.count)] + providers
        args += [String(keys.count)] + keys + [String(models.count)] + models
        let v = try Self.check(try await self.client.evalsha(self.scripts.stats, keys: [self.schemaKey], args: args))
        return try Self.decodeStats(v, providers: providers, keys: keys, models: models)
    }

    /// Decodes the stats script's reply for the names it was asked about.
    static func decodeStats(_ v: RedisValue, providers: [String], keys: [String], models: [String]) throws -> FleetStats {
        let v = try Self.check(v)
        guard let top = v.array, top.count == 5, let now = top[0].int, let ps = top[1].array, let ks = top[2].array, let ms = top[3].array,
            let ns = top[4].array
        else { throw RedisError(.protocolError, "unexpected stats reply") }
        var out = FleetStats()
        for (name, row) in zip(providers, ps) {
            guard let r = row.array, r.count == 11 else { throw RedisError(.protocolError, "unexpected provider stats row") }
            var w = WindowUse()
            w.rpm = Int(r[1].int ?? 0)
            w.rpd = Int(r[2].int ?? 0)
            w.tpm = Int(r[3].int ?? 0)
            w.tpd = Int(r[4].int ?? 0)
            w.inFlight = Int(r[5].int ?? 0)
            let cd = r[6].int ?? -2
            var p = ProviderStats(
                name: name, usage: Self.usage(r[0]), window: w,
                cooldownRemaining: cd > 0 ? .milliseconds(cd) : (cd == -1 ? RetryHint.maximum : nil),
                cooldownReason: cd == -2 ? nil : CooldownReason(rawValue: r[7].text ?? "") ?? .manual,
                disabled: (r[8].int ?? 0) == 1, consecutiveFailures: Int(r[9].int ?? 0))
            p.spentToday = r[10].int ?? 0
            out.providers.append(p)
        }
        for (name, row) in zip(keys, ks) {
            guard let r = row.array, r.count == 5 else { throw RedisError(.protocolError, "unexpected key stats row") }
            var w = WindowUse()
            w.rpm = Int(r[1].int ?? 0)
            w.tpm = Int(r[2].int ?? 0)
            var k = KeyStats(name: name, usage: Self.usage(r[0]), window: w)
            k.spentToday = r[3].int ?? 0
            k.spentThisMonth = r[4].int ?? 0
            out.keys.append(k)
        }
        for (name, row) in zip(models, ms) {
            let h = Self.hash(row)
            var c = ModelCounters()
            c.requests = h["requests"] ?? 0
            c.fallbacks = h["fallbacks"] ?? 0
            c.exhausted = h["exhausted"] ?? 0
            c.continued = h["continued"] ?? 0
            out.models.append(ModelStats(name: name, counters: c))
        }
        var i = 0
        while i + 1 < ns.count {
            if let id = ns[i].text, let seen = ns[i + 1].int {
                let (ago, overflow) = now.subtractingReportingOverflow(seen)
                out.nodes.append(NodeInfo(id: id, lastSeen: .milliseconds(overflow ? 0 : max(0, ago))))
            }
            i += 2
        }
        return out
    }

    // MARK: Redis details

    /// Writes settlements in one EVALSHA (see ``RedisScripts/settleBody``); returns, per settlement, whether it
    /// opened a cooldown at the provider's failure threshold.
    @discardableResult
    private func writeSettlements(_ batch: ArraySlice<Settlement>) async throws -> [Bool] {
        var args = [self.prefix, String(batch.count)]
        args.reserveCapacity(2 + batch.count * RedisScripts.settlementFields)
        for s in batch {
            let r = s.reservation
            let d = UsageCounters.delta(for: s)
            args.append(r.id)
            args.append(r.provider)
            args.append(r.key ?? "")
            args.append(String(r.tier.rawValue))
            args.append(String(s.result.chargedTokens(reserved: r.tokens)))
            switch s.result {
            case .success: args += ["success", "0"]
            case .failure: args += ["failure", "0"]
            case .broken: args += ["broken", "0"]
            case .rateLimited(let c): args += ["rate_limited", String(max(1, c.millisecondsRoundedUp))]
            case .unauthorized(let c): args += ["unauthorized", String(max(1, c.millisecondsRoundedUp))]
            case .contextLengthExceeded: args += ["context_length_exceeded", "0"]
            case .clientError: args += ["client_error", "0"]
            case .abandoned: args += ["abandoned", "0"]
            }
            args.append(String(max(1, s.failureThreshold)))
            args.append(String(max(1, s.failureCooldown.millisecondsRoundedUp)))
            for f in UsageCounters.fieldNames { args.append(String(d[f])) }
            args.append(s.modelEvent?.group ?? "")
            // Flags: 1 served by the fallback tier, 2 continued mid-stream.
            args.append(String((s.modelEvent?.fallback == true ? 1 : 0) + (s.modelEvent?.continued == true ? 2 : 0)))
            args.append(s.modelEvent?.exhausted == true ? "1" : "0")
            args.append(s.exhaustedCooldown.map { String(max(1, $0.millisecondsRoundedUp)) } ?? "0")
            args.append(String(r.cost))
            args.append(String(s.result.chargedCost(reserved: r.cost, pricing: r.pricing)))
            args.append(r.spendDay ?? "")
            args.append(r.spendMonth ?? "")
        }
        let v = try Self.check(try await self.client.evalsha(self.scripts.settle, keys: [self.schemaKey], args: args))
        return (v.array ?? []).map { $0.int == 2 }
    }

    private func discoverNames() async throws -> (providers: [String], keys: [String], models: [String]) {
        var providers = Set<String>(), keys = Set<String>(), models = Set<String>()
        var cursor = "0"
        repeat {
            let v = try Self.check(try await self.client.execute(["SCAN", cursor, "MATCH", "\(self.prefix)*", "COUNT", "1000"]))
            guard let a = v.array, a.count == 2, let next = a[0].text, let names = a[1].array else { throw RedisError(.protocolError, "unexpected SCAN reply") }
            cursor = next
            for n in names {
                guard let k = n.text else { continue }
                let parts = k.dropFirst(self.prefix.count).split(separator: ":")
                guard parts.count >= 3 else { continue }
                switch parts[0] {
                case "provider": providers.insert(String(parts[1]))
                case "key": keys.insert(String(parts[1]))
                case "model": models.insert(String(parts[1]))
                default: break
                }
            }
        } while cursor != "0"
        return (providers.sorted(), keys.sorted(), models.sorted())
    }

    @discardableResult
    static func check(_ v: RedisValue) throws -> RedisValue {
        if case .error(let m) = v { throw RedisError(.serverError, m) }
        return v
    }

    private static func limit(_ v: Int?) -> String { v.map { String(max(0, $0)) } ?? "-1" }

    static func hash(_ v: RedisValue) -> [String: Int] {
        var out: [String: Int] = [:]
        guard let a = v.array else { return out }
        var i = 0
        while i + 1 < a.count {
            if let k = a[i].text { out[k] = Int(a[i + 1].int ?? 0) }
            i += 2
        }
        return out
    }

    static func usage(_ v: RedisValue) -> UsageCounters {
        var u = UsageCounters()
        for (k, n) in Self.hash(v) { u[k] = n }
        return u
    }

    static func decodeAdmission(_ v: RedisValue, id: String, request: AdmissionRequest) throws -> AdmissionDecision {
        let v = try Self.check(v)
        // Every tag has at least its retry hint (or index) after it. (A one-element reply indexed a[1]: found
        // by the FuzzRedisReply target.)
        guard let a = v.array, a.count >= 2, let tag = a.first?.int else { throw RedisError(.protocolError, "unexpected admission reply") }
        func ms(_ x: RedisValue) -> Duration? {
            guard let n = x.int, n >= 0 else { return nil }
            return .milliseconds(n)
        }
        switch tag {
        case 1:
            guard a.count >= 5, let index = a[2].int, request.candidates.indices.contains(Int(index)) else {
                throw RedisError(.protocolError, "unexpected admission reply")
            }
            let c = request.candidates[Int(index)]
            let remReq = a[3].int.flatMap { $0 >= 0 ? Int($0) : nil }, remTok = a[4].int.flatMap { $0 >= 0 ? Int($0) : nil }
            var r = Reservation(
                id: id, provider: c.provider, candidateIndex: Int(index), tier: c.tier, tokens: max(0, c.tokens), key: request.key?.name,
                keyRemainingRequests: remReq, keyRemainingTokens: remTok)
            if a.count >= 10 {
                if c.cost > 0, c.pricing != nil, let day = a[6].text, let month = a[7].text {
                    r.cost = c.cost
                    r.pricing = c.pricing
                    r.spendDay = day
                    r.spendMonth = month
                }
                r.keySpentToday = a[8].int.flatMap { $0 >= 0 ? $0 : nil }
                r.keySpentThisMonth = a[9].int.flatMap { $0 >= 0 ? $0 : nil }
            }
            return .admitted(r)
        case 2:
            return .wait(ms(a[1]) ?? .milliseconds(1))
        case 3:
            var blocked: [BlockedCandidate] = []
            var i = 3
            while i + 2 < a.count {
                blocked.append(BlockedCandidate(provider: a[i].text ?? "", reason: BlockReason(rawValue: a[i + 1].text ?? "") ?? .cooldown, retryAfter: ms(a[i + 2])))
                i += 3
            }
            return .exhausted(retryAfter: ms(a[1]), blocked: blocked)
        case 4:
            return .keyLimited(retryAfter: ms(a[1]))
        case 7:
            let period = BudgetPeriod(rawValue: a.count > 3 ? a[3].text ?? "" : "") ?? .daily
            return .keyOverBudget(period: period, retryAfter: ms(a[1]) ?? .seconds(1))
        case 5:
            throw RedisError(.protocolError, "admission id \(id) was already settled")
        default:
            throw RedisError(.protocolError, "unexpected admission tag \(tag)")
        }
    }

    // MARK: Degraded mode

    private func markConnected() {
        self.local.withLock { l in
            if l.degraded { l.degraded = false }
        }
    }

    private func admitLocally(_ request: AdmissionRequest, because error: any Error) throws -> AdmissionDecision {
        guard let e = error as? RedisError, e.isUnavailability, self.configuration.onUnavailable == .local else {
            if let e = error as? RedisError, e.isUnavailability { self.local.withLock { $0.degraded = true } }
            throw error
        }
        let now = self.localNow
        let decision: AdmissionDecision = self.local.withLock { l in
            l.degraded = true
            var shared = request
            let n = max(1, l.liveNodes)
            let wall = WallClock.epochMilliseconds()
            let today = BudgetCalendar.day(wall), thisMonth = BudgetCalendar.month(wall)
            if let key = request.key {
                let seen = l.seenKeys[key.name]
                let use = l.quota.use(key: key.name, after: seen?.at ?? now, now: now)
                func share(_ limit: Int?, _ seenUse: Int?, _ rolling: Int, _ after: Int) -> Int? {
                    Self.share(limit, window: QuotaState.minute, seen: seenUse, seenAt: seen?.at, nodes: n, rolling: rolling, after: after, now: now)
                }
                shared.key = KeyAdmission(
                    name: key.name,
                    limits: KeyLimits(
                        rpm: share(key.limits.rpm, seen?.rpm, use.rolling.rpm, use.after.rpm),
                        tpm: share(key.limits.tpm, seen?.tpm, use.rolling.tpm, use.after.tpm),
                        dailyBudgetMicroUSD: key.limits.dailyBudgetMicroUSD.map {
                            Self.budgetShare($0, seen: seen?.spentToday, seenIn: seen?.day, now: today, nodes: n)
                        },
                        monthlyBudgetMicroUSD: key.limits.monthlyBudgetMicroUSD.map {
                            Self.budgetShare($0, seen: seen?.spentThisMonth, seenIn: seen?.month, now: thisMonth, nodes: n)
                        }))
            }
            shared.candidates = request.candidates.map { c in
                var c = c
                let seen = l.seen[c.provider]
                let use = l.quota.use(provider: c.provider, after: seen?.at ?? now, now: now)
                func share(_ limit: Int?, _ window: Int64, _ seenUse: Int?, _ rolling: Int, _ after: Int) -> Int? {
                    Self.share(limit, window: window, seen: seenUse, seenAt: seen?.at, nodes: n, rolling: rolling, after: after, now: now)
                }
                let p = c.limits
                var limits = p
                limits.rpm = share(p.rpm, QuotaState.minute, seen?.rpm, use.rolling.rpm, use.after.rpm)
                limits.rpd = share(p.rpd, QuotaState.day, seen?.rpd, use.rolling.rpd, use.after.rpd)
                limits.tpm = share(p.tpm, QuotaState.minute, seen?.tpm, use.rolling.tpm, use.after.tpm)
                limits.tpd = share(p.tpd, QuotaState.day, seen?.tpd, use.rolling.tpd, use.after.tpd)
                limits.dailyBudgetMicroUSD = p.dailyBudgetMicroUSD.map {
                    Self.budgetShare($0, seen: seen?.spentToday, seenIn: seen?.day, now: today, nodes: n)
                }
                if let mc = p.maxConcurrent {
                    // Degraded slots: until one lease has passed since the fleet's in-flight count was seen,
                    // what it left shared out; then the node's share, less its Redis reservations still running.
                    if let seen, seen.inFlight >= 0, now - seen.at < c.lease.millisecondsRoundedUp {
                        limits.maxConcurrent = max(0, mc - seen.inFlight) / n
                    } else {
                        let own = l.open.values.reduce(0) { $0 + ($1.provider == c.provider ? 1 : 0) }
                        limits.maxConcurrent = max(0, mc / n - own)
                    }
                }
                c.limits = limits
                return c
            }
            let d = l.quota.admit(shared, now: now)
            l.degradedCount += 1
            if l.degradedCount % 1024 == 0 {
                // A long outage: settled admissions that have left every window they count in need no restore.
                l.degradedLog = l.degradedLog.filter { _, a in
                    a.open || now - a.time < (a.windows & 0b1010 != 0 ? QuotaState.day : QuotaState.minute)
                }
            }
            if case .admitted(var r) = d {
                let c = request.candidates[r.candidateIndex]
                l.degradedLog[r.id] = DegradedAdmission(
                    provider: c.provider, key: request.key?.name, time: now, tokens: max(0, c.tokens),
                    windows: Self.windows(c.limits, key: request.key?.limits), lease: c.lease, cost: r.cost, spendDay: r.spendDay, spendMonth: r.spendMonth)
                r.id = "L" + r.id
                return .admitted(r)
            }
            return d
        }
        // Over its degraded share of a budget, not (as far as this node knows) over the budget itself: a short
        // wait, not insufficient_quota until the period ends.
        if case .keyOverBudget = decision { return .keyLimited(retryAfter: .seconds(1)) }
        return decision
    }

    /// A node's degraded share of a budget (ARCHITECTURE §8, as for the windows): of what the fleet had left when
    /// its spend was last seen in this period, `(budget − seen) / nodes`; in a period begun since (a new UTC day
    /// or month), `budget / nodes`; never seen, nothing (the budget may be spent already). The node's local
    /// spend in the period counts against it (so degraded admissions from before the sighting count twice: safe).
    static func budgetShare(_ budget: Int64, seen: Int64?, seenIn period: String?, now current: String, nodes: Int) -> Int64 {
        guard let seen, seen >= 0, let period else { return 0 }
        guard period == current else { return max(0, budget) / Int64(nodes) }
        return max(0, budget - seen) / Int64(nodes)
    }

    /// A node's degraded share of one windowed limit (ARCHITECTURE §8), as a limit on its degraded
    /// admissions in the window: until a whole `window` has passed since the fleet's use was `seen`, at most
    /// `(limit − seen) / nodes` admitted after that, and always at most `limit / nodes` in the rolling window.
    /// `rolling` and `after` are the node's degraded admissions in the window and after the sighting.
    static func share(
        _ limit: Int?, window: Int64, seen: Int?, seenAt: Int64?, nodes: Int, rolling: Int, after: Int, now: Int64
    ) -> Int? {
        guard let limit else { return nil }
        let whole = max(0, limit) / nodes
        guard let seen, seen >= 0, let seenAt, now - seenAt < window else { return whole }
        let left = max(0, limit - seen) / nodes
        // `rolling − after`: degraded admissions from before the sighting, still in the window.
        return min(whole, left + (rolling - after))
    }

    private static func localReservation(_ r: Reservation) -> Reservation {
        var x = r
        x.id = String(r.id.dropFirst())
        return x
    }

    /// Settles a degraded admission. Returns the Redis id to settle instead when it was written to Redis
    /// while running.
    private func settleLocally(_ s: Settlement) -> String? {
        let now = self.localNow
        let localID = String(s.reservation.id.dropFirst())
        return self.local.withLock { l -> String? in
            if let r = l.restoredIDs.removeValue(forKey: s.reservation.id) {
                var local = s
                local.reservation.id = localID
                l.quota.settle(local, now: now)
                return r
            }
            if l.degradedLog[localID]?.restoring == true {
                l.afterRestore.append(s)
                return nil
            }
            self.applyLocally(s, localID: localID, now: now, into: &l)
            return nil
        }
    }

    /// The local part of a degraded admission's settlement: its local windows, its entry for the restore
    /// (charged tokens, no longer running) and its counters (buffered for Redis).
    private func applyLocally(_ s: Settlement, localID: String, now: Int64, into l: inout Local) {
        var local = s
        local.reservation.id = localID
        l.quota.settle(local, now: now)
        if l.degradedLog[localID] != nil {
            l.degradedLog[localID]!.open = false
            l.degradedLog[localID]!.tokens = s.result.chargedTokens(reserved: s.reservation.tokens)
            l.degradedLog[localID]!.cost = s.result.chargedCost(reserved: s.reservation.cost, pricing: s.reservation.pricing)
        }
        // The counters of a locally admitted request still belong in Redis.
        let d = UsageCounters.delta(for: s)
        for f in UsageCounters.fieldNames where d[f] != 0 {
            l.counters["provider:\(s.reservation.provider):usage", default: [:]][f, default: 0] += d[f]
            if let k = s.reservation.key { l.counters["key:\(k):usage", default: [:]][f, default: 0] += d[f] }
        }
        if let e = s.modelEvent { Self.buffer(e, into: &l) }
    }

    private static func buffer(_ e: ModelEvent, into l: inout Local) {
        let k = "model:\(e.group):usage"
        l.counters[k, default: [:]]["requests", default: 0] += 1
        if e.fallback { l.counters[k, default: [:]]["fallbacks", default: 0] += 1 }
        if e.exhausted { l.counters[k, default: [:]]["exhausted", default: 0] += 1 }
        if e.continued { l.counters[k, default: [:]]["continued", default: 0] += 1 }
    }

    /// How often (ms) admissions of a degraded node try to recover.
    static let recoveryRetry: Int64 = 250

    /// Writes what the node owes Redis, in order, and stops at the first step that fails (retried at the
    /// next heartbeat or admission): lost admissions are cancelled; after a data loss the node's own
    /// admissions of the last minute and its running leases are written back; degraded admissions are
    /// written into their windows (running ones with a lease), then the settlements and counters buffered
    /// meanwhile. One recovery runs at a time: the caller (``recoverOrWait()``) has set `recovering`, which
    /// this clears, waking the admissions that waited for it.
    private func recover() async {
        let started = self.localNow
        self.local.withLock { $0.lastRecoveryAttempt = started }
        defer {
            let waiters = self.local.withLock { l -> [CheckedContinuation<Void, Never>] in
                l.recovering = false
                defer { l.recoveryWaiters.removeAll() }
                return l.recoveryWaiters
            }
            for w in waiters { w.resume() }
        }
        guard await self.cancelLost(), await self.restoreEpoch(), await self.restoreDegraded() else { return }
        await self.writeBufferedSettlements()
        await self.writeBufferedCounters()
    }

    /// Recovers, or waits for the recovery another task is running (bounded by Redis's timeouts), so
    /// admissions racing at start or after Redis lost its data do not all fall back to local shares.
    private func recoverOrWait() async {
        var runs = false
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            // One decision under the lock: wait for the recovery in progress, or be the one that runs it.
            let waiting = self.local.withLock { l -> Bool in
                if l.recovering {
                    l.recoveryWaiters.append(c)
                    return true
                }
                l.recovering = true
                return false
            }
            runs = !waiting
            if !waiting { c.resume() }
        }
        if runs { await self.recover() }
    }

    private func cancelLost() async -> Bool {
        let lost = self.local.withLock { $0.lost }
        guard !lost.isEmpty else { return true }
        // All at once, so the client pipelines them; the ones that fail stay for the next try.
        let failed = await withTaskGroup(of: String?.self) { group in
            for a in lost {
                group.addTask {
                    do {
                        try Self.check(
                            try await self.client.evalsha(
                                self.scripts.cancel, keys: [self.schemaKey], args: [self.prefix, a.id, a.key ?? ""] + a.providers))
                        return nil
                    } catch {
                        return a.id
                    }
                }
            }
            var failed = Set<String>()
            for await f in group { if let f { failed.insert(f) } }
            return failed
        }
        self.local.withLock { l in
            let sent = Set(lost.map(\.id))
            l.lost.removeAll { sent.contains($0.id) && !failed.contains($0.id) }
        }
        return failed.isEmpty
    }

    /// Sends restore batches of at most 500 admissions; returns the epoch Redis holds.
    private func restore(_ entries: [[String]]) async throws -> String {
        let fresh = String(UInt64.random(in: 1...UInt64.max), radix: 36)
        var epoch = ""
        var start = 0
        repeat {
            let batch = entries[start..<min(entries.count, start + 500)]
            var args = [self.prefix, String(RedisScripts.schemaVersion), fresh]
            args.reserveCapacity(3 + batch.count * RedisScripts.restoreFields)
            for e in batch { args += e }
            let v = try Self.check(try await self.client.evalsha(self.scripts.restore, keys: [self.schemaKey], args: args))
            epoch = v.text ?? ""
            start += 500
        } while start < entries.count
        return epoch
    }

    /// After Redis lost its data (or at the first contact): writes back the node's own Redis admissions of
    /// the last minute and the leases of its reservations still running, and learns the epoch.
    private func restoreEpoch() async -> Bool {
        let now = self.localNow
        guard let entries = self.local.withLock({ l -> [[String]]? in
            guard l.epochStale else { return nil }
            l.pruneRecent(now: now)
            var out: [[String]] = []
            var written = Set<String>()
            for r in l.recent[l.recentHead...] {
                let id = String(r.id)
                let lease = l.open[id].map { String(max(1, $0.lease.millisecondsRoundedUp)) } ?? "0"
                // (The spend of the lost data set is not rebuilt: a day's spend is more than the last minute.)
                out.append([id, r.provider, r.key ?? "", String(now - r.time), String(r.tokens), String(r.windows), lease, "0", "", ""])
                written.insert(id)
            }
            for (id, o) in l.open where !written.contains(id) {
                out.append([id, o.provider, "", "0", "0", "0", String(max(1, o.lease.millisecondsRoundedUp)), "0", "", ""])
            }
            return out
        }) else { return true }
        do {
            let epoch = try await self.restore(entries)
            self.local.withLock { l in
                l.epoch = epoch
                l.epochStale = false
            }
            return true
        } catch {
            return false
        }
    }

    /// Writes the degraded admissions into their windows, with their times; those still running get a
    /// lease and a Redis id their settlement and renewals then use.
    private func restoreDegraded() async -> Bool {
        let now = self.localNow
        let pending = self.local.withLock { l -> [(String, DegradedAdmission)] in
            for k in l.degradedLog.keys { l.degradedLog[k]!.restoring = true }
            return l.degradedLog.sorted { $0.value.time < $1.value.time }.map { ($0.key, $0.value) }
        }
        guard !pending.isEmpty else { return true }
        var ids: [String] = []
        do {
            for (k, a) in pending {
                if let id = a.redisID {
                    ids.append(id)
                } else {
                    let id = String(try await self.takeID())
                    self.local.withLock { $0.degradedLog[k]?.redisID = id }
                    ids.append(id)
                }
            }
            var entries: [[String]] = []
            for ((_, a), id) in zip(pending, ids) {
                let lease = a.open ? String(max(1, a.lease.millisecondsRoundedUp)) : "0"
                entries.append([
                    id, a.provider, a.key ?? "", String(max(0, now - a.time)), String(a.tokens), String(a.windows), lease, String(a.cost), a.spendDay ?? "",
                    a.spendMonth ?? "",
                ])
            }
            _ = try await self.restore(entries)
        } catch {
            // Not written: settlements that came meanwhile apply locally, the log stays for the next try.
            self.local.withLock { l in
                for (k, _) in pending { l.degradedLog[k]?.restoring = false }
                let waiting = l.afterRestore
                l.afterRestore.removeAll()
                for s in waiting { self.applyLocally(s, localID: String(s.reservation.id.dropFirst()), now: now, into: &l) }
            }
            return false
        }
        let waiting = self.local.withLock { l -> [Settlement] in
            for ((k, a), id) in zip(pending, ids) {
                l.degradedLog[k] = nil
                if a.open { l.restoredIDs["L" + k] = id }
            }
            var out: [Settlement] = []
            for s in l.afterRestore {
                // Settled while its restore was on its way: it ran, so it is settled in Redis like any other.
                if let id = l.restoredIDs.removeValue(forKey: s.reservation.id) {
                    var local = s
                    local.reservation.id = String(s.reservation.id.dropFirst())
                    l.quota.settle(local, now: now)
                    var r = s
                    r.reservation.id = id
                    out.append(r)
                }
            }
            l.afterRestore.removeAll()
            return out
        }
        if !waiting.isEmpty { self.local.withLock { $0.settlements.append(contentsOf: waiting) } }
        return true
    }

    private func writeBufferedSettlements() async {
        let settlements = self.local.withLock { l -> [Settlement] in
            defer { l.settlements.removeAll() }
            return l.settlements
        }
        guard !settlements.isEmpty else { return }
        let failed = await withTaskGroup(of: ArraySlice<Settlement>.self) { group in
            for start in stride(from: 0, to: settlements.count, by: Self.settlementBatchSize) {
                let batch = settlements[start..<min(settlements.count, start + Self.settlementBatchSize)]
                group.addTask {
                    do {
                        try await self.writeSettlements(batch)
                        return []
                    } catch {
                        return batch
                    }
                }
            }
            var failed: [Settlement] = []
            for await f in group { failed += f }
            return failed
        }
        if !failed.isEmpty { self.local.withLock { $0.settlements.insert(contentsOf: failed, at: 0) } }
    }

    private func writeBufferedCounters() async {
        let batch = self.local.withLock { l -> (id: String, entries: [String])? in
            if let b = l.inflightBatch { return b }
            guard !l.counters.isEmpty else { return nil }
            l.batchSeq += 1
            var entries: [String] = []
            for (key, fields) in l.counters.sorted(by: { $0.key < $1.key }) {
                for (f, n) in fields.sorted(by: { $0.key < $1.key }) where n != 0 { entries += [key, f, String(n)] }
            }
            l.counters.removeAll()
            let b = (id: "\(self.configuration.nodeID):\(self.incarnation):\(l.batchSeq)", entries: entries)
            l.inflightBatch = b
            return b
        }
        guard let batch else { return }
        do {
            try Self.check(try await self.client.evalsha(self.scripts.replay, keys: [self.schemaKey], args: [self.prefix, batch.id] + batch.entries))
            self.local.withLock { $0.inflightBatch = nil }
        } catch {
            // Kept in inflightBatch: retried with the same id, so it is applied once.
        }
    }
}
