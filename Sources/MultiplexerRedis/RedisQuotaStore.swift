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
/// ## Degraded mode
/// When Redis cannot be reached (connection refused, command timeout, breaker open):
/// - `onUnavailable: .local` — admissions fall back to an in-process ``QuotaState`` that enforces each
///   limit divided by the number of live nodes last seen, so the fleet together stays within the limit.
///   Usage counters of those requests (and settlements that could not be written) are buffered and
///   added to Redis once it answers again, exactly once (settlements are idempotent per reservation id,
///   counter batches per batch id).
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
        public var virtualClockForTesting: Bool = false

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

    private struct Local {
        var quota = QuotaState()
        var liveNodes = 1
        var degraded = false
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
    }

    public let configuration: Configuration
    /// The connection (exposed for diagnostics and benchmarks).
    public let client: RedisClient
    private let prefix: String
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

    /// Connected, degraded or unavailable.
    public var availability: Availability {
        let degraded = self.local.withLock { $0.degraded }
        if !degraded { return .connected }
        return self.configuration.onUnavailable == .local ? .degraded : .unavailable
    }

    /// Live nodes at the last heartbeat (the divisor of local shares).
    public var liveNodes: Int { self.local.withLock { $0.liveNodes } }

    /// Whether buffered counters or settlements wait for Redis.
    public var hasPendingReplay: Bool {
        self.local.withLock { !$0.settlements.isEmpty || !$0.counters.isEmpty || $0.inflightBatch != nil || !$0.deferred.isEmpty }
    }

    private var localNow: Int64 {
        let d = self.origin.duration(to: .now)
        return d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: Lifecycle

    /// Checks the connection and records the schema version. Throws if Redis is unreachable (callers
    /// may start anyway in degraded mode).
    public func connect() async throws {
        let v = try await self.client.execute(["SET", self.schemaKey, String(RedisScripts.schemaVersion), "NX"])
        if case .error(let m) = v { throw RedisError(.serverError, m) }
        try await self.heartbeat(nodeID: self.configuration.nodeID)
    }

    /// Heartbeats, tracks the live-node count and replays buffered counters, until cancelled.
    ///
    /// While it runs, successful settlements are written in the background (see ``settle(_:)``); when it
    /// is cancelled it writes what is still queued before it returns.
    public func run() async {
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
        // Cancelled: stop deferring, then write whatever is still queued.
        self.local.withLock { $0.running = false }
        await self.drainDeferred()
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
        var args: [String] = [self.prefix]
        args.reserveCapacity(6 + request.candidates.count * 9)
        args.append(request.key?.name ?? "")
        args.append(Self.limit(request.key?.limits.rpm))
        args.append(Self.limit(request.key?.limits.tpm))
        args.append(request.tierWait.map { String($0.millisecondsRoundedUp) } ?? "-1")
        args.append(String(request.candidates.count))
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
        }
        let reply: RedisValue
        do {
            reply = try await self.client.evalsha(self.scripts.admit, keys: [self.schemaKey], args: args)
        } catch let e {
            return try self.admitLocally(request, because: e)
        }
        self.markConnected()
        let decision = try Self.decodeAdmission(reply, request: request)
        if case .admitted(let r) = decision {
            // Mirror the admission locally: degraded mode then counts this node's recent traffic.
            let c = request.candidates[r.candidateIndex]
            let now = self.localNow
            self.local.withLock { $0.quota.mirror(provider: c.provider, limits: c.limits, tokens: c.tokens, key: request.key, now: now) }
        }
        return decision
    }

    /// Settles an attempt.
    ///
    /// A **successful** attempt's settlement (refund, slot release, counters) is queued and written by
    /// ``run()`` in the background, so a request's response does not wait for it and settlements of
    /// concurrent requests share pipelines. Failures — 429 cooldowns, failure counts, 401s — are written
    /// before this returns, so the request's next attempt (and every node) sees them; so is a success that
    /// announced exhaustion (``MultiplexerCore/Settlement/exhaustedCooldown``). Without ``run()``
    /// everything is written before returning.
    public func settle(_ settlement: Settlement) async {
        if settlement.reservation.id.hasPrefix("L") {
            self.settleLocally(settlement)
            return
        }
        // A success that announced exhaustion is written at once, like a 429: the next request must see it.
        if case .success = settlement.result, settlement.exhaustedCooldown == nil {
            let queued = self.local.withLock { l -> Bool in
                guard l.running else { return false }
                l.deferred.append(settlement)
                return true
            }
            if queued {
                self.drainSignal.continuation.yield()
                return
            }
        }
        await self.settleNow([settlement][...])
    }

    private func settleNow(_ batch: ArraySlice<Settlement>) async {
        do {
            try await self.writeSettlements(batch)
            self.markConnected()
        } catch {
            self.local.withLock { l in
                l.degraded = true
                l.settlements.append(contentsOf: batch)
            }
        }
    }

    public func record(_ event: ModelEvent) async {
        do {
            let v = try await self.client.evalsha(
                self.scripts.record, keys: [self.schemaKey], args: [self.prefix, event.group, event.fallback ? "1" : "0", event.exhausted ? "1" : "0"])
            if case .error = v { throw RedisError(.serverError, v.errorMessage ?? "") }
        } catch {
            self.local.withLock { l in
                l.degraded = true
                Self.buffer(event, into: &l)
            }
        }
    }

    public func renewLease(_ reservation: Reservation, for duration: Duration) async throws {
        if reservation.id.hasPrefix("L") {
            let now = self.localNow
            self.local.withLock { $0.quota.renewLease(Self.localReservation(reservation), for: duration, now: now) }
            return
        }
        try Self.check(
            try await self.client.evalsha(
                self.scripts.renew, keys: [self.schemaKey],
                args: [self.prefix, reservation.provider, reservation.id, String(max(1, duration.millisecondsRoundedUp))]))
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
        let v: RedisValue
        do {
            v = try Self.check(try await self.client.evalsha(self.scripts.heartbeat, keys: [self.schemaKey], args: [self.prefix, nodeID]))
        } catch {
            self.local.withLock { $0.degraded = true }
            throw error
        }
        let live = max(1, Int(v.int ?? 1))
        self.local.withLock { $0.liveNodes = live }
        self.markConnected()
        await self.replayBuffered()
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
        guard let top = v.array, top.count == 5, let now = top[0].int, let ps = top[1].array, let ks = top[2].array, let ms = top[3].array,
            let ns = top[4].array
        else { throw RedisError(.protocolError, "unexpected stats reply") }
        var out = FleetStats()
        for (name, row) in zip(providers, ps) {
            guard let r = row.array, r.count == 10 else { throw RedisError(.protocolError, "unexpected provider stats row") }
            var w = WindowUse()
            w.rpm = Int(r[1].int ?? 0)
            w.rpd = Int(r[2].int ?? 0)
            w.tpm = Int(r[3].int ?? 0)
            w.tpd = Int(r[4].int ?? 0)
            w.inFlight = Int(r[5].int ?? 0)
            let cd = r[6].int ?? -2
            out.providers.append(
                ProviderStats(
                    name: name, usage: Self.usage(r[0]), window: w,
                    cooldownRemaining: cd > 0 ? .milliseconds(cd) : (cd == -1 ? RetryHint.maximum : nil),
                    cooldownReason: cd == -2 ? nil : CooldownReason(rawValue: r[7].text ?? "") ?? .manual,
                    disabled: (r[8].int ?? 0) == 1, consecutiveFailures: Int(r[9].int ?? 0)))
        }
        for (name, row) in zip(keys, ks) {
            guard let r = row.array, r.count == 3 else { throw RedisError(.protocolError, "unexpected key stats row") }
            var w = WindowUse()
            w.rpm = Int(r[1].int ?? 0)
            w.tpm = Int(r[2].int ?? 0)
            out.keys.append(KeyStats(name: name, usage: Self.usage(r[0]), window: w))
        }
        for (name, row) in zip(models, ms) {
            let h = Self.hash(row)
            var c = ModelCounters()
            c.requests = h["requests"] ?? 0
            c.fallbacks = h["fallbacks"] ?? 0
            c.exhausted = h["exhausted"] ?? 0
            out.models.append(ModelStats(name: name, counters: c))
        }
        var i = 0
        while i + 1 < ns.count {
            if let id = ns[i].text, let seen = ns[i + 1].int { out.nodes.append(NodeInfo(id: id, lastSeen: .milliseconds(max(0, now - seen)))) }
            i += 2
        }
        return out
    }

    // MARK: Redis details

    /// Writes settlements in one EVALSHA (see ``RedisScripts/settleBody``).
    private func writeSettlements(_ batch: ArraySlice<Settlement>) async throws {
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
            case .failure, .broken: args += ["failure", "0"]
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
            args.append(s.modelEvent?.fallback == true ? "1" : "0")
            args.append(s.modelEvent?.exhausted == true ? "1" : "0")
            args.append(s.exhaustedCooldown.map { String(max(1, $0.millisecondsRoundedUp)) } ?? "0")
        }
        try Self.check(try await self.client.evalsha(self.scripts.settle, keys: [self.schemaKey], args: args))
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
    private static func check(_ v: RedisValue) throws -> RedisValue {
        if case .error(let m) = v { throw RedisError(.serverError, m) }
        return v
    }

    private static func limit(_ v: Int?) -> String { v.map { String(max(0, $0)) } ?? "-1" }

    private static func hash(_ v: RedisValue) -> [String: Int] {
        var out: [String: Int] = [:]
        guard let a = v.array else { return out }
        var i = 0
        while i + 1 < a.count {
            if let k = a[i].text { out[k] = Int(a[i + 1].int ?? 0) }
            i += 2
        }
        return out
    }

    private static func usage(_ v: RedisValue) -> UsageCounters {
        var u = UsageCounters()
        for (k, n) in Self.hash(v) { u[k] = n }
        return u
    }

    private static func decodeAdmission(_ v: RedisValue, request: AdmissionRequest) throws -> AdmissionDecision {
        let v = try Self.check(v)
        guard let a = v.array, let tag = a.first?.int else { throw RedisError(.protocolError, "unexpected admission reply") }
        func ms(_ x: RedisValue) -> Duration? {
            guard let n = x.int, n >= 0 else { return nil }
            return .milliseconds(n)
        }
        switch tag {
        case 1:
            guard a.count == 5, let id = a[1].int, let index = a[2].int, request.candidates.indices.contains(Int(index)) else {
                throw RedisError(.protocolError, "unexpected admission reply")
            }
            let c = request.candidates[Int(index)]
            let remReq = a[3].int.flatMap { $0 >= 0 ? Int($0) : nil }, remTok = a[4].int.flatMap { $0 >= 0 ? Int($0) : nil }
            return .admitted(
                Reservation(
                    id: String(id), provider: c.provider, candidateIndex: Int(index), tier: c.tier, tokens: max(0, c.tokens), key: request.key?.name,
                    keyRemainingRequests: remReq, keyRemainingTokens: remTok))
        case 2:
            return .wait(ms(a[1]) ?? .milliseconds(1))
        case 3:
            var blocked: [BlockedCandidate] = []
            var i = 2
            while i + 2 < a.count {
                blocked.append(BlockedCandidate(provider: a[i].text ?? "", reason: BlockReason(rawValue: a[i + 1].text ?? "") ?? .cooldown, retryAfter: ms(a[i + 2])))
                i += 3
            }
            return .exhausted(retryAfter: ms(a[1]), blocked: blocked)
        case 4:
            return .keyLimited(retryAfter: ms(a[1]))
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
        return self.local.withLock { l in
            l.degraded = true
            var shared = request
            let n = l.liveNodes
            shared.key = request.key.map { KeyAdmission(name: $0.name, limits: $0.limits.share(amongNodes: n)) }
            shared.candidates = request.candidates.map {
                var c = $0
                c.limits = c.limits.share(amongNodes: n)
                return c
            }
            let d = l.quota.admit(shared, now: now)
            if case .admitted(var r) = d {
                r.id = "L" + r.id
                return .admitted(r)
            }
            return d
        }
    }

    private static func localReservation(_ r: Reservation) -> Reservation {
        var x = r
        x.id = String(r.id.dropFirst())
        return x
    }

    private func settleLocally(_ s: Settlement) {
        let now = self.localNow
        self.local.withLock { l in
            var local = s
            local.reservation = Self.localReservation(s.reservation)
            l.quota.settle(local, now: now)
            // The counters of a locally admitted request still belong in Redis.
            let d = UsageCounters.delta(for: s)
            for f in UsageCounters.fieldNames where d[f] != 0 {
                l.counters["provider:\(s.reservation.provider):usage", default: [:]][f, default: 0] += d[f]
                if let k = s.reservation.key { l.counters["key:\(k):usage", default: [:]][f, default: 0] += d[f] }
            }
            if let e = s.modelEvent { Self.buffer(e, into: &l) }
        }
    }

    private static func buffer(_ e: ModelEvent, into l: inout Local) {
        let k = "model:\(e.group):usage"
        l.counters[k, default: [:]]["requests", default: 0] += 1
        if e.fallback { l.counters[k, default: [:]]["fallbacks", default: 0] += 1 }
        if e.exhausted { l.counters[k, default: [:]]["exhausted", default: 0] += 1 }
    }

    /// Writes buffered settlements and counters to Redis; what fails stays buffered.
    private func replayBuffered() async {
        let settlements = self.local.withLock { l -> [Settlement] in
            defer { l.settlements.removeAll() }
            return l.settlements
        }
        if !settlements.isEmpty {
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
            if !failed.isEmpty {
                self.local.withLock { $0.settlements.insert(contentsOf: failed, at: 0) }
                return
            }
        }
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
