/// Lifetime usage counters of a provider or a client key (the fields of the store's usage hashes).
public struct UsageCounters: Sendable, Hashable, Codable {
    /// Attempts sent (= success + rateLimited + errors, plus abandoned attempts).
    public var requests: Int = 0
    public var success: Int = 0
    public var rateLimited: Int = 0
    /// 5xx, timeouts, connection errors, 401/403 and other 4xx.
    public var errors: Int = 0
    public var promptTokens: Int = 0
    public var completionTokens: Int = 0
    /// Successes served by a fallback-tier provider.
    public var fallbackServed: Int = 0

    public init() {}

    /// The field names used in store hashes, in a stable order.
    public static let fieldNames = ["requests", "success", "rate_limited", "errors", "prompt_tokens", "completion_tokens", "fallback_served"]

    /// Reads a field by its store name.
    public subscript(field: String) -> Int {
        get {
            switch field {
            case "requests": self.requests
            case "success": self.success
            case "rate_limited": self.rateLimited
            case "errors": self.errors
            case "prompt_tokens": self.promptTokens
            case "completion_tokens": self.completionTokens
            case "fallback_served": self.fallbackServed
            default: 0
            }
        }
        set {
            switch field {
            case "requests": self.requests = newValue
            case "success": self.success = newValue
            case "rate_limited": self.rateLimited = newValue
            case "errors": self.errors = newValue
            case "prompt_tokens": self.promptTokens = newValue
            case "completion_tokens": self.completionTokens = newValue
            case "fallback_served": self.fallbackServed = newValue
            default: break
            }
        }
    }

    /// The increments one settlement applies.
    public static func delta(for settlement: Settlement) -> UsageCounters {
        var d = UsageCounters()
        d.requests = 1
        switch settlement.result {
        case .success(let usage):
            d.success = 1
            d.promptTokens = usage?.promptTokens ?? 0
            d.completionTokens = usage?.completionTokens ?? 0
            if settlement.reservation.tier == .fallback { d.fallbackServed = 1 }
        case .rateLimited:
            d.rateLimited = 1
        case .failure, .broken, .unauthorized, .contextLengthExceeded, .clientError:
            d.errors = 1
        case .abandoned:
            break
        }
        return d
    }

    /// Adds `other` field by field.
    public mutating func add(_ other: UsageCounters) {
        for f in Self.fieldNames { self[f] += other[f] }
    }
}

/// Lifetime counters of a model group.
public struct ModelCounters: Sendable, Hashable, Codable {
    /// Client requests.
    public var requests: Int = 0
    /// Client requests served by the fallback tier.
    public var fallbacks: Int = 0
    /// Client requests that found every candidate exhausted.
    public var exhausted: Int = 0
    /// Streams that broke mid-way and were completed on another provider.
    public var continued: Int = 0
    public init() {}
}

/// What one caller wants in a ``FleetStats`` snapshot.
public struct StatsQuery: Sendable, Hashable {
    /// Providers to report; `nil`: every provider the store knows.
    public var providers: [String]?
    /// Client keys to report; `nil`: every key the store knows.
    public var keys: [String]?
    /// Model groups to report; `nil`: every group the store knows.
    public var models: [String]?
    public init(providers: [String]? = nil, keys: [String]? = nil, models: [String]? = nil) {
        self.providers = providers
        self.keys = keys
        self.models = models
    }
    /// Everything the store knows.
    public static let all = StatsQuery()
}

/// Current use of a provider's (or key's) rolling windows.
public struct WindowUse: Sendable, Hashable, Codable {
    /// Requests in the last minute.
    public var rpm: Int = 0
    /// Requests in the last day.
    public var rpd: Int = 0
    /// Tokens in the last minute.
    public var tpm: Int = 0
    /// Tokens in the last day.
    public var tpd: Int = 0
    /// Live in-flight reservations.
    public var inFlight: Int = 0
    public init() {}
}

/// One provider in a ``FleetStats`` snapshot.
public struct ProviderStats: Sendable, Hashable, Codable {
    public var name: String
    public var usage: UsageCounters
    public var window: WindowUse
    /// Micro-USD spent this UTC day (reserved while in flight, settled to the real cost).
    public var spentToday: Int64 = 0
    /// Remaining cooldown, if cooling down.
    public var cooldownRemaining: Duration?
    public var cooldownReason: CooldownReason?
    public var disabled: Bool
    public var consecutiveFailures: Int

    public init(
        name: String, usage: UsageCounters, window: WindowUse, cooldownRemaining: Duration?, cooldownReason: CooldownReason?,
        disabled: Bool, consecutiveFailures: Int
    ) {
        self.name = name
        self.usage = usage
        self.window = window
        self.cooldownRemaining = cooldownRemaining
        self.cooldownReason = cooldownReason
        self.disabled = disabled
        self.consecutiveFailures = consecutiveFailures
    }
}

/// One client key in a ``FleetStats`` snapshot.
public struct KeyStats: Sendable, Hashable, Codable {
    public var name: String
    public var usage: UsageCounters
    public var window: WindowUse
    /// Micro-USD spent this UTC day and month.
    public var spentToday: Int64 = 0
    public var spentThisMonth: Int64 = 0

    public init(name: String, usage: UsageCounters, window: WindowUse) {
        self.name = name
        self.usage = usage
        self.window = window
    }
}

/// One model group in a ``FleetStats`` snapshot.
public struct ModelStats: Sendable, Hashable, Codable {
    public var name: String
    public var counters: ModelCounters

    public init(name: String, counters: ModelCounters) {
        self.name = name
        self.counters = counters
    }
}

/// A live gateway node.
public struct NodeInfo: Sendable, Hashable, Codable {
    public var id: String
    /// Time since its last heartbeat.
    public var lastSeen: Duration

    public init(id: String, lastSeen: Duration) {
        self.id = id
        self.lastSeen = lastSeen
    }
}

/// A snapshot of everything the store keeps, for `/admin/stats`, `multiplexer stats` and the library's
/// `stats()`.
public struct FleetStats: Sendable, Hashable, Codable {
    public var providers: [ProviderStats]
    public var keys: [KeyStats]
    public var models: [ModelStats]
    public var nodes: [NodeInfo]

    public init(providers: [ProviderStats] = [], keys: [KeyStats] = [], models: [ModelStats] = [], nodes: [NodeInfo] = []) {
        self.providers = providers
        self.keys = keys
        self.models = models
        self.nodes = nodes
    }

    /// The reference design's `get_stats()` shape: per provider, attempts that succeeded, were rate
    /// limited, or failed.
    public var seedStats: [String: SeedStats] {
        Dictionary(uniqueKeysWithValues: self.providers.map {
            ($0.name, SeedStats(success: $0.usage.success, rateLimited: $0.usage.rateLimited, failed: $0.usage.errors))
        })
    }
}

/// The reference design's per-model counters: `{"success", "rateLimited", "failed"}`.
public struct SeedStats: Sendable, Hashable, Codable {
    public var success: Int
    public var rateLimited: Int
    public var failed: Int
    public init(success: Int, rateLimited: Int, failed: Int) {
        self.success = success
        self.rateLimited = rateLimited
        self.failed = failed
    }
}
