/// A provider and its share of traffic inside a tier.
public struct WeightedProvider: Sendable, Hashable, Codable {
    /// The provider's name.
    public var provider: String
    /// A positive integer; a provider gets `weight / Σweight` of its tier's traffic while all have capacity.
    public var weight: Int

    public init(provider: String, weight: Int) {
        self.provider = provider
        self.weight = weight
    }
}

/// What clients put in `"model"`: a name (plus aliases) routed over a primary and a fallback tier.
public struct ModelGroup: Sendable, Hashable {
    /// The name clients use.
    public var name: String
    /// Further names that resolve to this group.
    public var aliases: [String]
    /// Providers used while any of them can serve.
    public var primary: [WeightedProvider]
    /// Providers used only when no primary can serve soon.
    public var fallback: [WeightedProvider]
    /// Upstream calls per request, all tiers together.
    public var maxAttempts: Int
    /// Transient failures (5xx, reset before headers) retried on the same primary when the only
    /// alternative left is the fallback tier (or nothing).
    public var retriesPerProvider: Int
    /// How long a request waits for a primary to free up before it uses the fallback tier.
    public var tierWait: Duration
    /// How long a request may wait for capacity when every candidate is exhausted (zero: answer at once).
    public var queueTimeout: Duration

    public init(
        name: String,
        aliases: [String] = [],
        primary: [WeightedProvider],
        fallback: [WeightedProvider] = [],
        maxAttempts: Int = 4,
        retriesPerProvider: Int = 1,
        tierWait: Duration = .milliseconds(3000),
        queueTimeout: Duration = .zero
    ) {
        self.name = name
        self.aliases = aliases
        self.primary = primary
        self.fallback = fallback
        self.maxAttempts = maxAttempts
        self.retriesPerProvider = retriesPerProvider
        self.tierWait = tierWait
        self.queueTimeout = queueTimeout
    }
}

/// A client of the gateway, identified by an API key, with its own limits and an optional model allow-list.
///
/// The key material itself is not part of this value: the gateway matches keys and hands the router
/// only the key's name, limits and allow-list.
public struct ClientKey: Sendable, Hashable {
    /// Unique name, used in store keys and metrics.
    public var name: String
    /// The key's own limits, enforced in the same atomic admission as the provider's.
    public var limits: KeyLimits
    /// Model groups this key may use; `nil` means all.
    public var models: Set<String>?

    public init(name: String, limits: KeyLimits = KeyLimits(), models: Set<String>? = nil) {
        self.name = name
        self.limits = limits
        self.models = models
    }

    /// Whether this key may use the model group `group`.
    public func allows(_ group: ModelGroup) -> Bool {
        guard let models = self.models else { return true }
        return models.contains(group.name)
    }
}
