/// Where every piece of shared routing state lives: rolling windows, token reservations, in-flight
/// leases, cooldowns, failure counts, usage counters and the live-node registry.
///
/// Two implementations honour one contract (tested by one suite): ``InMemoryQuotaStore`` for a single
/// process, and the Redis store that makes every limit hold fleet-wide.
///
/// ## The contract (ARCHITECTURE §8)
/// - A limit is global: a provider never receives more requests (or reserved-then-settled tokens) than
///   its limit in **any** rolling window of that length. Windows are sliding logs, not fixed buckets.
/// - ``admit(_:)`` walks the candidates in order and reserves on the first that fits, checking the client
///   key's limits and the provider's limits, concurrency, cooldown and disabled flag **all-or-nothing**
///   in one atomic step: a rejected attempt consumes nothing.
/// - Tokens are reserved at admission and settled with the real usage; the difference is refunded.
/// - In-flight reservations carry a lease and expire if their holder dies.
/// - A cooldown only ever extends, never shortens (except ``clearCooldown(provider:)``, an operator action).
/// - Time is the store's own (the Redis store reads Redis's clock), so every node agrees on it.
public protocol QuotaStore: Sendable {
    /// Atomically picks the first candidate that fits every limit and reserves capacity on it.
    ///
    /// - Throws: when the store cannot decide (e.g. Redis unreachable and the policy is to reject).
    func admit(_ request: AdmissionRequest) async throws -> AdmissionDecision

    /// Records the outcome of an admitted attempt: releases its in-flight slot, settles its tokens
    /// (refunding the difference), updates usage counters and failure counts, and sets cooldowns.
    ///
    /// Settlement never fails from the caller's point of view: a store that cannot reach its backend
    /// keeps the settlement and applies it later, so no count is lost.
    ///
    /// - Returns: what the settlement did that the caller may want to log or count — a cooldown it opened at
    ///   the provider's failure threshold — when the store knows it at once (a deferred or buffered
    ///   settlement returns ``SettlementEffect/none``).
    @discardableResult
    func settle(_ settlement: Settlement) async -> SettlementEffect

    /// Counts one client request for a model group (requests, fallbacks, exhausted) that has no
    /// settlement to ride on (e.g. it was exhausted before any attempt).
    func record(_ event: ModelEvent) async

    /// Extends the lease of an in-flight reservation (a long stream), so it is not reclaimed.
    func renewLease(_ reservation: Reservation, for duration: Duration) async throws

    /// Cools `provider` down for `duration` (extend-only), e.g. by an operator.
    ///
    /// - Returns: the remaining cooldown after the call (the longer of the old and the new).
    @discardableResult
    func setCooldown(provider: String, for duration: Duration, reason: CooldownReason) async throws -> Duration

    /// Ends a provider's cooldown at once (an operator action).
    func clearCooldown(provider: String) async throws

    /// Disables (or re-enables) a provider until changed again.
    func setDisabled(provider: String, _ disabled: Bool) async throws

    /// Registers a heartbeat of `nodeID` and returns the number of live nodes (seen in the last 10 s).
    @discardableResult
    func heartbeat(nodeID: String) async throws -> Int

    /// A snapshot of usage, window use, cooldowns and live nodes.
    ///
    /// - Parameter query: which providers, keys and model groups to report; `nil` lists report all known.
    func stats(_ query: StatsQuery) async throws -> FleetStats
}

/// Why a provider is cooling down.
public enum CooldownReason: String, Sendable, Hashable, Codable, CaseIterable {
    /// It answered 429/529.
    case rateLimited = "rate_limited"
    /// It answered 2xx but announced in its rate-limit headers that no requests, or fewer tokens than a
    /// request reserves, remain until its reset (see ``ExhaustionHint``).
    case exhausted
    /// It failed `failure_threshold` times in a row.
    case failures
    /// It answered 401/403: its credential is wrong.
    case unauthorized
    /// An operator set it.
    case manual
}

// MARK: - Admission

/// One request's ask: the client key and the ordered candidates, each with its limits and cost.
public struct AdmissionRequest: Sendable, Hashable {
    /// The client key and its limits, if the request is made with a key.
    public var key: KeyAdmission?
    /// Candidates in the order to try.
    public var candidates: [AdmissionCandidate]
    /// When set, and no primary candidate fits but one frees up within this, the store answers
    /// ``AdmissionDecision/wait(_:)`` instead of admitting a fallback candidate.
    public var tierWait: Duration?

    public init(key: KeyAdmission? = nil, candidates: [AdmissionCandidate], tierWait: Duration? = nil) {
        self.key = key
        self.candidates = candidates
        self.tierWait = tierWait
    }
}

/// A client key as admission sees it.
public struct KeyAdmission: Sendable, Hashable {
    public var name: String
    public var limits: KeyLimits
    public init(name: String, limits: KeyLimits) {
        self.name = name
        self.limits = limits
    }
}

/// A provider as admission sees it: its limits and what this request would cost on it.
public struct AdmissionCandidate: Sendable, Hashable {
    public var provider: String
    public var tier: Tier
    public var limits: ProviderLimits
    /// Tokens to reserve on this provider.
    public var tokens: Int
    /// How long the in-flight reservation lives unless settled or renewed.
    public var lease: Duration
    /// The provider's prices (`nil`: no spend is counted for it).
    public var pricing: Pricing?
    /// The highest cost this attempt can have on this provider, in micro-USD: reserved against the
    /// provider's daily budget and the key's budgets (0 without pricing).
    public var cost: Int64

    public init(
        provider: String, tier: Tier = .primary, limits: ProviderLimits, tokens: Int, lease: Duration = .seconds(180), pricing: Pricing? = nil,
        cost: Int64 = 0
    ) {
        self.provider = provider
        self.tier = tier
        self.limits = limits
        self.tokens = tokens
        self.lease = lease
        self.pricing = pricing
        self.cost = cost
    }
}

/// The store's answer to an ``AdmissionRequest``.
public enum AdmissionDecision: Sendable, Hashable {
    /// Capacity was reserved on a candidate.
    case admitted(Reservation)
    /// No primary fits now, but one frees up within the request's tier wait: wait this long, then ask again.
    case wait(Duration)
    /// No candidate fits. `retryAfter` is the earliest time any candidate frees up (`nil`: none ever will,
    /// e.g. all disabled). `blocked` says why each candidate was skipped.
    case exhausted(retryAfter: Duration?, blocked: [BlockedCandidate])
    /// The client key's own limit rejects the request, whatever the provider.
    case keyLimited(retryAfter: Duration?)
    /// The client key's budget for `period` has no room for this request on any candidate: 429
    /// `insufficient_quota` until the period ends (`retryAfter`).
    case keyOverBudget(period: BudgetPeriod, retryAfter: Duration)
}

/// The period of a budget.
public enum BudgetPeriod: String, Sendable, Hashable, Codable {
    /// The UTC calendar day.
    case daily
    /// The UTC calendar month.
    case monthly
}

/// Capacity held for one attempt, to be settled.
public struct Reservation: Sendable, Hashable {
    /// Unique within the store.
    public var id: String
    public var provider: String
    /// Index of the admitted candidate in the request's candidate list.
    public var candidateIndex: Int
    public var tier: Tier
    /// Tokens reserved.
    public var tokens: Int
    /// The client key, if any.
    public var key: String?
    /// What is left of the client key's request and token limits after this admission (for the
    /// `x-ratelimit-remaining-*` headers); `nil` where the key has no such limit.
    public var keyRemainingRequests: Int?
    public var keyRemainingTokens: Int?
    /// Micro-USD reserved against the budgets (0 without pricing), the provider's prices, and the UTC day
    /// (`YYYY-MM-DD`) and month (`YYYY-MM`) whose spend it counts in (set when `cost` > 0).
    public var cost: Int64 = 0
    public var pricing: Pricing?
    public var spendDay: String?
    public var spendMonth: String?
    /// What the key has spent today and this month, this reservation included (when the key has budgets).
    public var keySpentToday: Int64?
    public var keySpentThisMonth: Int64?

    public init(
        id: String, provider: String, candidateIndex: Int, tier: Tier, tokens: Int, key: String?, keyRemainingRequests: Int? = nil,
        keyRemainingTokens: Int? = nil
    ) {
        self.id = id
        self.provider = provider
        self.candidateIndex = candidateIndex
        self.tier = tier
        self.tokens = tokens
        self.key = key
        self.keyRemainingRequests = keyRemainingRequests
        self.keyRemainingTokens = keyRemainingTokens
    }
}

/// A candidate admission skipped, and why.
public struct BlockedCandidate: Sendable, Hashable {
    public var provider: String
    public var reason: BlockReason
    /// When it frees up; `nil` if not by itself (disabled, or the request is larger than a limit).
    public var retryAfter: Duration?

    public init(provider: String, reason: BlockReason, retryAfter: Duration?) {
        self.provider = provider
        self.reason = reason
        self.retryAfter = retryAfter
    }
}

/// Why a candidate could not be admitted (the first failing check, in this order).
public enum BlockReason: String, Sendable, Hashable, Codable, CaseIterable {
    case disabled
    case cooldown
    case rpm
    case rpd
    case tpm
    case tpd
    case concurrency
    /// The client key's token limit, for this candidate's cost.
    case keyTPM = "key_tpm"
    /// The provider's daily budget has no room for this attempt's highest cost.
    case budget
    /// The client key's daily or monthly budget, for this candidate's cost.
    case keyBudget = "key_budget"
}

// MARK: - Settlement

/// What happened to an admitted attempt.
public enum SettlementResult: Sendable, Hashable {
    /// Served. `usage` is what the provider reported; `nil` keeps the estimate.
    case success(usage: TokenUsage?)
    /// 429/529: cool the provider down for `cooldown` (extend-only).
    case rateLimited(cooldown: Duration)
    /// Failed before the provider could have processed anything — an error status (5xx), a connection
    /// that never carried the request (refused, DNS, TLS, connect timeout): one more consecutive failure,
    /// and the whole token reservation is refunded.
    case failure
    /// Failed after the provider may have processed the request — a timeout or reset after it was sent, a
    /// 2xx whose body is not an answer, a stream cut mid-way: one more consecutive failure,
    /// and the estimate stays charged (never under-count what the provider may have counted).
    ///
    /// `usage`, when known, is what stays charged instead of the whole reservation: for a stream that broke
    /// after relaying part of its answer, the usage it reported, else the estimate of its prompt and of
    /// the text it relayed (ARCHITECTURE §3 step 6).
    case broken(usage: TokenUsage? = nil)
    /// 401/403: cool the provider down for `cooldown`.
    case unauthorized(cooldown: Duration)
    /// 400 `context_length_exceeded`: no health change.
    case contextLengthExceeded
    /// Other 4xx, relayed to the client.
    case clientError
    /// Sent, but the outcome is unknown (cancelled mid-call): nothing about health is learned.
    case abandoned

    /// Tokens that stay charged to the windows for a reservation of `reserved` tokens.
    ///
    /// A provider that refused the request (429, 401/403, 4xx) or failed before processing it (``failure``)
    /// processed no tokens: all are refunded at once. A success is charged its reported usage. When the
    /// provider may have processed the request but the usage is unknown (``broken``, cancellation), the
    /// estimate stays — never under-count.
    public func chargedTokens(reserved: Int) -> Int {
        switch self {
        case .success(let usage?), .broken(let usage?): usage.totalTokens
        case .success(nil), .broken(nil), .abandoned: reserved
        case .failure, .rateLimited, .unauthorized, .contextLengthExceeded, .clientError: 0
        }
    }

    /// Micro-USD that stay charged to the budgets for a reservation of `reserved` at `pricing` — the same
    /// rule as ``chargedTokens(reserved:)``: the reported (or estimated) usage priced, the reservation kept
    /// when the usage is unknown, nothing for an attempt the provider refused or never processed.
    public func chargedCost(reserved: Int64, pricing: Pricing?) -> Int64 {
        guard let pricing, reserved > 0 else { return 0 }
        switch self {
        case .success(let usage?), .broken(let usage?): return pricing.cost(prompt: usage.promptTokens, completion: usage.completionTokens)
        case .success(nil), .broken(nil), .abandoned: return reserved
        case .failure, .rateLimited, .unauthorized, .contextLengthExceeded, .clientError: return 0
        }
    }
}

/// What a settlement did, as far as the caller should know.
public struct SettlementEffect: Sendable, Hashable {
    /// The failure reached the provider's consecutive-failure threshold and opened (or extended) a cooldown
    /// of this length, reason ``CooldownReason/failures``.
    public var failureCooldown: Duration?
    public init(failureCooldown: Duration? = nil) {
        self.failureCooldown = failureCooldown
    }
    public static let none = SettlementEffect()
}

/// Counts for one client request against its model group.
public struct ModelEvent: Sendable, Hashable {
    public var group: String
    /// The request was served by the fallback tier.
    public var fallback: Bool
    /// The request found every candidate exhausted.
    public var exhausted: Bool
    /// The request was a stream that broke mid-way and was completed by a continuation
    /// (ARCHITECTURE §3 step 7).
    public var continued: Bool
    public init(group: String, fallback: Bool = false, exhausted: Bool = false, continued: Bool = false) {
        self.group = group
        self.fallback = fallback
        self.exhausted = exhausted
        self.continued = continued
    }
}

/// The settlement of one admitted attempt.
public struct Settlement: Sendable, Hashable {
    public var reservation: Reservation
    public var result: SettlementResult
    /// The provider's consecutive-failure threshold and the cooldown it opens.
    public var failureThreshold: Int
    public var failureCooldown: Duration
    /// The client request's model-group counts, when this settles its last attempt.
    public var modelEvent: ModelEvent?
    /// Set when the provider's 2xx announced that it is exhausted (``ExhaustionHint``): cool it down for
    /// this long from the settlement, reason ``CooldownReason/exhausted``, extend-only like every cooldown.
    /// Carried by the settlement so the announcement costs no round trip of its own.
    public var exhaustedCooldown: Duration?

    public init(
        reservation: Reservation,
        result: SettlementResult,
        failureThreshold: Int = 3,
        failureCooldown: Duration = .seconds(15),
        modelEvent: ModelEvent? = nil,
        exhaustedCooldown: Duration? = nil
    ) {
        self.reservation = reservation
        self.result = result
        self.failureThreshold = failureThreshold
        self.failureCooldown = failureCooldown
        self.modelEvent = modelEvent
        self.exhaustedCooldown = exhaustedCooldown
    }
}
