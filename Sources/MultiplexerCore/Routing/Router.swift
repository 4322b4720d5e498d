public import Tracing

/// Routes one request over its model group's candidates: admission, the upstream call, outcome
/// classification, settlement, cooldowns, failover and tier discipline (ARCHITECTURE §3).
///
/// The router holds no mutable state of its own: everything shared lives in the ``QuotaStore``, so any
/// number of routers (in any number of processes, over one Redis) cooperate.
///
/// With a ``tracer``, each admission is a `multiplexer.admission` span and each upstream attempt a `client`
/// span (``AttemptTrace``), children of the task's current span context (`InstrumentationContext.current`);
/// the ``observer`` is told of every attempt when it really ends.
public struct Router<C: Clock>: Sendable where C.Duration == Duration {
    /// Providers and model groups.
    public let table: RoutingTable
    /// Where limits, cooldowns and counters live.
    public let store: any QuotaStore
    private let clock: C
    private let random: any RandomSource
    private let wallClock: @Sendable () -> Double
    /// Traces admissions and attempts; `nil`: no spans, no cost.
    public let tracer: (any Tracer)?
    /// Told of every attempt when it ends (the gateway's metrics).
    public let observer: (any AttemptObserver)?

    /// - Parameters:
    ///   - table: providers and model groups.
    ///   - store: the quota store.
    ///   - clock: used to wait (for a primary to free up, between retries, for queued capacity).
    ///   - random: draws the weighted order and backoff jitter.
    ///   - wallClock: seconds since the Unix epoch, for `Retry-After: <HTTP-date>`.
    ///   - tracer: traces admissions and upstream attempts (swift-distributed-tracing); `nil` for none.
    ///   - observer: told of every upstream attempt when it ends.
    public init(
        table: RoutingTable,
        store: any QuotaStore,
        clock: C,
        random: any RandomSource = SystemRandomSource(),
        wallClock: @escaping @Sendable () -> Double,
        tracer: (any Tracer)? = nil,
        observer: (any AttemptObserver)? = nil
    ) {
        self.tracer = tracer
        self.observer = observer
        self.table = table
        self.store = store
        self.clock = clock
        self.random = random
        self.wallClock = wallClock
    }

    /// Routes `request` for `group` through `transport`.
    ///
    /// - Parameters:
    ///   - request: what the transport sends.
    ///   - group: the resolved model group.
    ///   - cost: the request's token cost (see ``TokenEstimator``).
    ///   - key: the client key, if any (its limits are checked in the same admission).
    ///   - deadline: no waiting beyond this instant.
    ///   - continuation: set when this routes the continuation of a stream that broke mid-way
    ///     (ARCHITECTURE §3 step 7): the attempts already made count against `max_attempts`, the
    ///     providers that broke are not asked, and a client error (a provider refusing the prefill) moves on
    ///     to the next candidate instead of ending the request.
    ///   - transport: the upstream client.
    /// - Throws: only what the store throws at admission (e.g. Redis unavailable with `reject`), and
    ///   `CancellationError` when the task is cancelled while waiting.
    public func route<T: UpstreamTransport>(
        _ request: T.Request,
        group: ModelGroup,
        cost: RequestCost,
        key: ClientKey? = nil,
        deadline: C.Instant? = nil,
        continuation: RouteContinuation? = nil,
        via transport: T
    ) async throws -> RouteResult<T.Body> {
        var attempts: [AttemptRecord] = []
        let prior = continuation?.attemptsSoFar ?? 0
        let ordered = self.table.candidates(for: group, using: self.random).filter { c in
            guard let continuation else { return true }
            return !continuation.excluded.contains(c.provider.name) && (!continuation.requiresPrefill || c.provider.supportsPrefill)
        }
        if continuation != nil, ordered.isEmpty || prior >= group.maxAttempts {
            // Nobody can continue the stream.
            await self.store.record(ModelEvent(group: group.name))
            return RouteResult(outcome: .exhausted(retryAfter: nil, blocked: []), attempts: attempts)
        }
        let fitting = ordered.filter { c in
            guard let window = c.provider.contextWindow else { return true }
            return cost.tokens(on: c.provider) <= window
        }
        guard !fitting.isEmpty else {
            await self.store.record(ModelEvent(group: group.name))
            return RouteResult(outcome: .contextTooLarge, attempts: attempts)
        }

        let start = self.clock.now
        var excluded = Set<String>()
        var retries: [String: Int] = [:]
        var waited: Duration = .zero
        var lastFailure: AttemptRecord?
        let keyAdmission = key.map { KeyAdmission(name: $0.name, limits: $0.limits) }
        let traced = self.tracer != nil || self.observer != nil
        let parent = traced ? InstrumentationContext.current ?? .topLevel : .topLevel
        let operation = self.tracer != nil ? transport.operationName(of: request) : ""

        while prior + attempts.count < group.maxAttempts {
            let remaining = fitting.filter { !excluded.contains($0.provider.name) }
            guard !remaining.isEmpty else { break }
            let hasBothTiers = remaining.contains { $0.tier == .primary } && remaining.contains { $0.tier == .fallback }
            let tierBudget = self.bounded(group.tierWait - waited, by: deadline)
            let admission = AdmissionRequest(
                key: keyAdmission,
                candidates: remaining.map {
                    AdmissionCandidate(
                        provider: $0.provider.name, tier: $0.tier, limits: $0.provider.limits,
                        tokens: cost.tokens(on: $0.provider), lease: $0.provider.leaseDuration, pricing: $0.provider.pricing,
                        cost: $0.provider.maximumCost(of: cost))
                },
                tierWait: hasBothTiers && tierBudget > .zero ? tierBudget : nil
            )

            let reservation: Reservation
            switch try await self.admit(admission, parent: parent) {
            case .admitted(let r):
                reservation = r
            case .wait(let d):
                try await self.clock.sleep(for: d + self.jitter(upTo: .milliseconds(20)))
                waited += d
                continue
            case .keyLimited(let retryAfter):
                if let ra = retryAfter, ra <= self.bounded(group.queueTimeout - (start.duration(to: self.clock.now)), by: deadline) {
                    try await self.clock.sleep(for: ra)
                    continue
                }
                await self.store.record(ModelEvent(group: group.name))
                return RouteResult(outcome: .keyLimited(retryAfter: retryAfter), attempts: attempts)
            case .keyOverBudget(let period, let retryAfter):
                await self.store.record(ModelEvent(group: group.name))
                return RouteResult(outcome: .keyOverBudget(period: period, retryAfter: retryAfter), attempts: attempts)
            case .exhausted(let retryAfter, let blocked):
                // Tier discipline without a fallback tier, and bounded queueing: wait for capacity that
                // frees up soon rather than answering 429.
                let elapsed = start.duration(to: self.clock.now)
                let budget = max(
                    hasBothTiers ? .zero : self.bounded(group.tierWait - waited, by: deadline),
                    self.bounded(group.queueTimeout - elapsed, by: deadline))
                if let ra = retryAfter, ra <= budget {
                    try await self.clock.sleep(for: ra + self.jitter(upTo: .milliseconds(20)))
                    waited += ra
                    continue
                }
                return await self.finishExhausted(group: group, retryAfter: retryAfter, blocked: blocked, attempts: attempts, lastFailure: lastFailure)
            }

            let candidate = remaining[reservation.candidateIndex]
            let provider = candidate.provider
            let number = prior + attempts.count + 1
            let trace =
                traced
                ? AttemptTrace(
                    tracer: self.tracer, parent: parent, operation: operation, provider: provider, tier: candidate.tier, number: number,
                    key: reservation.key, continued: continuation != nil, observer: self.observer) : nil
            let attempt = UpstreamAttempt(provider: provider, tier: candidate.tier, number: number, reservation: reservation, trace: trace)
            let began = self.clock.now
            let outcome: Outcome
            var response: UpstreamResponse<T.Body>?
            var error: UpstreamError?
            var exhaustedFor: Duration?
            do {
                let r = try await self.renewing(reservation, lease: provider.leaseDuration) { () async throws(UpstreamError) in
                    try await transport.send(request, attempt: attempt)
                }
                let now = self.wallClock()
                outcome = OutcomeClassifier.classify(
                    status: r.status, headers: r.headers, errorCode: r.errorCode, provider: provider, nowEpochSeconds: now,
                    invalidBody: r.invalidBody != nil)
                if r.invalidBody != nil, (200..<300).contains(r.status) { error = UpstreamError(.invalidResponse, message: r.invalidBody!) }
                if outcome == .success { exhaustedFor = ExhaustionHint.cooldown(from: r.headers, provider: provider, nowEpochSeconds: now) }
                response = r
            } catch let e {
                outcome = OutcomeClassifier.classify(e)
                error = e
            }
            let record = AttemptRecord(
                provider: provider.name, tier: candidate.tier, outcome: outcome, status: response?.status, error: error?.kind,
                latency: began.duration(to: self.clock.now), exhaustedCooldown: exhaustedFor)
            attempts.append(record)
            if let trace {
                trace.responded(record)
                trace.setResponseModel(response?.model)
                // A served stream's attempt ends with the stream (its settlement); every other one ends now.
                if !(outcome == .success && response?.settlesLater == true) {
                    trace.end(AttemptOutcome(outcome, error: error?.kind), usage: outcome == .success ? response?.usage : nil)
                }
            }

            let settlement = Settlement(
                reservation: reservation,
                result: Self.settlementResult(outcome, usage: response?.usage, error: error?.kind),
                failureThreshold: provider.failureThreshold,
                failureCooldown: provider.failureCooldown,
                modelEvent: outcome.triesNext ? nil : ModelEvent(group: group.name, fallback: outcome == .success && candidate.tier == .fallback),
                exhaustedCooldown: exhaustedFor
            )

            switch outcome {
            case .success:
                let served = ServedResponse(response: response!, provider: provider, tier: candidate.tier, reservation: reservation)
                if response!.settlesLater {
                    // A stream settles when it ends, possibly minutes from now: an announced exhaustion is
                    // written at once instead (the one extra store call, made only when it is announced).
                    if let d = exhaustedFor { _ = try? await self.store.setCooldown(provider: provider.name, for: d, reason: .exhausted) }
                    var pending = settlement
                    pending.result = .abandoned
                    pending.exhaustedCooldown = nil
                    return RouteResult(outcome: .served(served, PendingSettlement(store: self.store, template: pending, trace: trace)), attempts: attempts)
                }
                await self.store.settle(settlement)
                return RouteResult(outcome: .served(served, nil), attempts: attempts)
            case .clientError where continuation != nil:
                // A provider that refuses the prefill (400 `invalid_prefill`): the next one may accept it.
                var s = settlement
                s.modelEvent = nil
                await self.store.settle(s)
                excluded.insert(provider.name)
                lastFailure = record
            case .clientError:
                await self.store.settle(settlement)
                return RouteResult(outcome: .clientError(response!, provider: provider), attempts: attempts)
            case .cancelled:
                await self.store.settle(settlement)
                return RouteResult(outcome: .cancelled, attempts: attempts)
            case .rateLimited:
                // Not excluded: the cooldown keeps it out, and it may serve again after the cooldown
                // within the tier wait (a 429 with `Retry-After: 2` is waited for, not fallen back from).
                await self.store.settle(settlement)
                lastFailure = record
            case .unauthorized, .contextLengthExceeded:
                await self.store.settle(settlement)
                excluded.insert(provider.name)
                lastFailure = record
            case .failure(let retryable):
                await self.store.settle(settlement)
                lastFailure = record
                let otherPrimaryLeft = remaining.contains { $0.tier == .primary && $0.provider.name != provider.name }
                let used = retries[provider.name, default: 0]
                if retryable, candidate.tier == .primary, !otherPrimaryLeft, used < group.retriesPerProvider {
                    retries[provider.name] = used + 1
                    let backoff = Duration.milliseconds(100 * (1 << min(used, 4))) + self.jitter(upTo: .milliseconds(100))
                    if self.bounded(backoff, by: deadline) == backoff {
                        try await self.clock.sleep(for: backoff)
                        continue
                    }
                }
                excluded.insert(provider.name)
            }
        }

        // Out of attempts or candidates after at least one failure.
        await self.store.record(ModelEvent(group: group.name, exhausted: lastFailure?.outcome.isRateLimit ?? true))
        if let last = lastFailure, !last.outcome.isRateLimit {
            return RouteResult(outcome: .upstreamFailed(last), attempts: attempts)
        }
        return RouteResult(outcome: .exhausted(retryAfter: nil, blocked: []), attempts: attempts)
    }

    private func finishExhausted<B>(
        group: ModelGroup, retryAfter: Duration?, blocked: [BlockedCandidate], attempts: [AttemptRecord], lastFailure: AttemptRecord?
    ) async -> RouteResult<B> {
        if let last = lastFailure, !last.outcome.isRateLimit {
            // What stopped the request was a failing provider, not quota.
            await self.store.record(ModelEvent(group: group.name))
            return RouteResult(outcome: .upstreamFailed(last), attempts: attempts)
        }
        await self.store.record(ModelEvent(group: group.name, exhausted: true))
        return RouteResult(outcome: .exhausted(retryAfter: retryAfter, blocked: blocked), attempts: attempts)
    }

    /// The store's admission, as a `multiplexer.admission` span when tracing.
    private func admit(_ admission: AdmissionRequest, parent: InstrumentationContext) async throws -> AdmissionDecision {
        guard let tracer = self.tracer else { return try await self.store.admit(admission) }
        let span = tracer.startSpan("multiplexer.admission", context: parent, ofKind: .internal)
        span.attributes["multiplexer.candidates"] = admission.candidates.count
        defer { span.end() }
        let decision: AdmissionDecision
        do {
            decision = try await self.store.admit(admission)
        } catch {
            // The error's text may name hosts of the store: only its kind goes into the span.
            span.attributes["error.type"] = String(describing: type(of: error))
            span.setStatus(SpanStatus(code: .error, message: "the quota store did not answer"))
            throw error
        }
        switch decision {
        case .admitted(let r):
            span.attributes["multiplexer.admission.decision"] = "admitted"
            span.attributes["gen_ai.provider.name"] = r.provider
        case .wait: span.attributes["multiplexer.admission.decision"] = "wait"
        case .exhausted: span.attributes["multiplexer.admission.decision"] = "exhausted"
        case .keyLimited: span.attributes["multiplexer.admission.decision"] = "key_limited"
        case .keyOverBudget: span.attributes["multiplexer.admission.decision"] = "key_over_budget"
        }
        return decision
    }

    /// Runs `body` (an upstream call) while a child task renews the reservation's lease every
    /// ``Provider/leaseRenewal``, so a call that takes longer than a lease keeps its slot (a stream's
    /// relay renews it from its headers on).
    private func renewing<R, E: Error>(_ reservation: Reservation, lease: Duration, _ body: () async throws(E) -> R) async throws(E) -> R {
        let store = self.store
        let result = await withTaskGroup(of: Void.self) { group -> Result<R, E> in
            group.addTask {
                while (try? await Task.sleep(for: Provider.leaseRenewal)) != nil {
                    try? await store.renewLease(reservation, for: lease)
                }
            }
            defer { group.cancelAll() }
            do throws(E) {
                return .success(try await body())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// `d` cut to what is left before `deadline`.
    private func bounded(_ d: Duration, by deadline: C.Instant?) -> Duration {
        guard let deadline else { return max(.zero, d) }
        return max(.zero, min(d, self.clock.now.duration(to: deadline)))
    }

    private func jitter(upTo d: Duration) -> Duration {
        let ms = UInt64(max(1, d.millisecondsRoundedUp))
        return .milliseconds(Int64(self.random.next(below: ms)))
    }

    /// What an attempt costs (ARCHITECTURE §3 step 6): a failure before the provider could have processed
    /// anything (an error status, or an error of ``UpstreamError/Kind/isBeforeProcessing``) refunds its
    /// tokens; any other failure may have been processed and keeps the estimate.
    static func settlementResult(_ outcome: Outcome, usage: TokenUsage?, error: UpstreamError.Kind?) -> SettlementResult {
        switch outcome {
        case .success: .success(usage: usage)
        case .rateLimited(let d): .rateLimited(cooldown: d)
        case .failure: (error.map(\.isBeforeProcessing) ?? true) ? .failure : .broken()
        case .unauthorized(let d): .unauthorized(cooldown: d)
        case .contextLengthExceeded: .contextLengthExceeded
        case .clientError: .clientError
        case .cancelled: .abandoned
        }
    }
}

extension Outcome {
    var isRateLimit: Bool {
        if case .rateLimited = self { return true }
        return false
    }
}

/// How the continuation of a broken stream is routed (see ``Router/route(_:group:cost:key:deadline:continuation:via:)``).
public struct RouteContinuation: Sendable, Hashable {
    /// Attempts the request has made so far (they count against the group's `max_attempts`).
    public var attemptsSoFar: Int
    /// Providers not to ask (those whose streams broke).
    public var excluded: Set<String>
    /// Only providers with `supports_prefill` are asked (the request carries an assistant prefill).
    public var requiresPrefill: Bool

    public init(attemptsSoFar: Int, excluded: Set<String>, requiresPrefill: Bool) {
        self.attemptsSoFar = attemptsSoFar
        self.excluded = excluded
        self.requiresPrefill = requiresPrefill
    }
}

/// What the router did for one request.
public struct RouteResult<Body: Sendable>: Sendable {
    public var outcome: RouteOutcome<Body>
    /// Every upstream attempt, in order.
    public var attempts: [AttemptRecord]
}

/// How a routed request ended.
public enum RouteOutcome<Body: Sendable>: Sendable {
    /// A provider answered 2xx. The settlement is pending (non-nil) for a stream whose usage comes at its end.
    case served(ServedResponse<Body>, PendingSettlement?)
    /// A provider answered a client error (4xx): relay it as-is.
    case clientError(UpstreamResponse<Body>, provider: Provider)
    /// Every candidate is out of quota or cooling down: 429 with `Retry-After`.
    case exhausted(retryAfter: Duration?, blocked: [BlockedCandidate])
    /// The client key's own limit: 429 with `Retry-After`.
    case keyLimited(retryAfter: Duration?)
    /// The client key's budget is spent for `period`: 429 `insufficient_quota` until it ends.
    case keyOverBudget(period: BudgetPeriod, retryAfter: Duration)
    /// Attempts failed (5xx, timeouts, connection errors) and nothing else could be tried: 502/504.
    case upstreamFailed(AttemptRecord)
    /// No provider's context window fits the request.
    case contextTooLarge
    /// The caller cancelled.
    case cancelled
}

/// A 2xx response and who served it.
public struct ServedResponse<Body: Sendable>: Sendable {
    public var response: UpstreamResponse<Body>
    public var provider: Provider
    public var tier: Tier
    public var reservation: Reservation
}

/// One upstream attempt, for logs, headers and errors.
public struct AttemptRecord: Sendable, Hashable {
    public var provider: String
    public var tier: Tier
    public var outcome: Outcome
    /// The HTTP status, if a response came.
    public var status: Int?
    /// The transport failure, if no response came; ``UpstreamError/Kind/invalidResponse`` also for a 2xx
    /// whose body was not what the operation promises (``UpstreamResponse/invalidBody``).
    public var error: UpstreamError.Kind?
    public var latency: Duration
    /// Set when a 2xx announced that the provider is exhausted (``ExhaustionHint``): the cooldown it set,
    /// reason ``CooldownReason/exhausted``.
    public var exhaustedCooldown: Duration?
}

/// The settlement of a stream that was served but has not ended yet. Call ``settle(_:)`` exactly once
/// when it ends (or breaks, or the client goes away).
public struct PendingSettlement: Sendable {
    let store: any QuotaStore
    let template: Settlement
    /// The stream's attempt span and report: ended by the settlement, with how the stream really ended.
    let trace: AttemptTrace?

    init(store: any QuotaStore, template: Settlement, trace: AttemptTrace? = nil) {
        self.store = store
        self.template = template
        self.trace = trace
    }

    /// The reservation being held.
    public var reservation: Reservation { self.template.reservation }

    /// Settles the stream.
    ///
    /// - Parameter result: `.success(usage:)` for a stream that completed, `.failure` for one that broke,
    ///   `.abandoned` for one the client left.
    public func settle(_ result: SettlementResult) async {
        var s = self.template
        s.result = result
        if case .success = result {} else if var e = s.modelEvent {
            e.fallback = false
            e.continued = false
            s.modelEvent = e
        }
        self.trace?.end(settled: result)
        await self.store.settle(s)
    }

    /// This settlement without its model-group event: the attempt's request goes on (a stream continued on
    /// another provider is counted once, when its continuation ends).
    public func withoutModelEvent() -> PendingSettlement {
        var t = self.template
        t.modelEvent = nil
        return PendingSettlement(store: self.store, template: t, trace: self.trace)
    }

    /// This settlement with its request counted as continued (when it settles as a success).
    public func markedContinued() -> PendingSettlement {
        var t = self.template
        t.modelEvent?.continued = true
        return PendingSettlement(store: self.store, template: t, trace: self.trace)
    }

    /// Counts a client request against its model group in the store that holds this settlement (for a
    /// request whose last attempt's settlement carried no event).
    public func record(_ event: ModelEvent) async {
        await self.store.record(event)
    }

    /// Extends the in-flight lease of a long stream.
    public func renewLease(for duration: Duration) async throws {
        try await self.store.renewLease(self.template.reservation, for: duration)
    }
}
