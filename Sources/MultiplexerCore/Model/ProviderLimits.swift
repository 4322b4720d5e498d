/// The rate limits of one upstream provider, each enforced fleet-wide over a rolling window.
///
/// Every field is optional: `nil` means "no limit of that kind". A limit is global: across every
/// gateway node and every embedding service that share one quota store, the provider never receives
/// more than the limit in *any* rolling window of that length (see ``QuotaStore``).
public struct ProviderLimits: Sendable, Hashable, Codable {
    /// Requests per rolling minute.
    public var rpm: Int?
    /// Requests per rolling day (24 hours).
    public var rpd: Int?
    /// Tokens per rolling minute (estimated at admission, reconciled at settlement).
    public var tpm: Int?
    /// Tokens per rolling day.
    public var tpd: Int?
    /// Requests in flight at once, across the fleet.
    public var maxConcurrent: Int?
    /// Spend per UTC day, in micro-USD (ARCHITECTURE §8 Budgets): the provider account's daily budget.
    public var dailyBudgetMicroUSD: Int64?

    public init(rpm: Int? = nil, rpd: Int? = nil, tpm: Int? = nil, tpd: Int? = nil, maxConcurrent: Int? = nil, dailyBudgetMicroUSD: Int64? = nil) {
        self.rpm = rpm
        self.rpd = rpd
        self.tpm = tpm
        self.tpd = tpd
        self.maxConcurrent = maxConcurrent
        self.dailyBudgetMicroUSD = dailyBudgetMicroUSD
    }

    /// No limit of any kind.
    public static let unlimited = ProviderLimits()

    /// The share one node enforces on its own when the shared store is unreachable: each limit divided by
    /// `nodes`, rounded down but never below one.
    ///
    /// - Parameter nodes: the number of live nodes last seen (values below 1 count as 1).
    public func share(amongNodes nodes: Int) -> ProviderLimits {
        let n = max(1, nodes)
        func part(_ v: Int?) -> Int? { v.map { max(1, $0 / n) } }
        // A budget is not shared out: without the store, spend cannot be checked (see RedisQuotaStore's degraded mode).
        return ProviderLimits(
            rpm: part(self.rpm), rpd: part(self.rpd), tpm: part(self.tpm), tpd: part(self.tpd), maxConcurrent: part(self.maxConcurrent),
            dailyBudgetMicroUSD: self.dailyBudgetMicroUSD.map { _ in 0 })
    }
}

/// The limits of one client key: requests and tokens per rolling minute.
public struct KeyLimits: Sendable, Hashable, Codable {
    /// Requests per rolling minute.
    public var rpm: Int?
    /// Tokens per rolling minute.
    public var tpm: Int?
    /// Spend per UTC day and per UTC month, in micro-USD (ARCHITECTURE §8 Budgets).
    public var dailyBudgetMicroUSD: Int64?
    public var monthlyBudgetMicroUSD: Int64?

    public init(rpm: Int? = nil, tpm: Int? = nil, dailyBudgetMicroUSD: Int64? = nil, monthlyBudgetMicroUSD: Int64? = nil) {
        self.rpm = rpm
        self.tpm = tpm
        self.dailyBudgetMicroUSD = dailyBudgetMicroUSD
        self.monthlyBudgetMicroUSD = monthlyBudgetMicroUSD
    }

    /// Whether the key has a budget.
    public var hasBudget: Bool { self.dailyBudgetMicroUSD != nil || self.monthlyBudgetMicroUSD != nil }

    /// The per-node share when the shared store is unreachable; see ``ProviderLimits/share(amongNodes:)``.
    public func share(amongNodes nodes: Int) -> KeyLimits {
        let n = max(1, nodes)
        return KeyLimits(
            rpm: self.rpm.map { max(1, $0 / n) }, tpm: self.tpm.map { max(1, $0 / n) }, dailyBudgetMicroUSD: self.dailyBudgetMicroUSD.map { _ in 0 },
            monthlyBudgetMicroUSD: self.monthlyBudgetMicroUSD.map { _ in 0 })
    }
}
