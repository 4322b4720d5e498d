/// An error in the set of providers, model groups and keys given to a ``RoutingTable``.
public struct RoutingTableError: Error, Hashable, CustomStringConvertible {
    /// What is wrong, naming the offending item.
    public var message: String
    public var description: String { self.message }
}

/// The validated set of providers and model groups one gateway (or one embedding service) routes over.
///
/// It resolves a requested model name or alias to its ``ModelGroup`` and builds each request's
/// weighted candidate order.
public struct RoutingTable: Sendable {
    /// Providers by name.
    public let providers: [String: Provider]
    /// Model groups in declaration order.
    public let groups: [ModelGroup]
    /// The group used when a request names an unknown model or `"placeholder"`, if any.
    public let defaultGroup: String?
    private let index: [String: Int]

    /// Builds a table, checking names, weights and references.
    ///
    /// - Throws: ``RoutingTableError`` listing every problem found (one per line).
    public init(providers: [Provider], groups: [ModelGroup], defaultGroup: String? = nil) throws {
        var problems: [String] = []
        var byName: [String: Provider] = [:]
        for p in providers {
            if !Provider.isValidName(p.name) { problems.append("provider name '\(p.name)' must match [a-z0-9._-]+") }
            if byName[p.name] != nil { problems.append("duplicate provider name '\(p.name)'") }
            byName[p.name] = p
        }
        var index: [String: Int] = [:]
        for (i, g) in groups.enumerated() {
            if g.name.isEmpty { problems.append("model group name must not be empty") }
            for n in [g.name] + g.aliases {
                if index[n] != nil { problems.append("model name or alias '\(n)' is used twice") }
                index[n] = i
            }
            if g.primary.isEmpty { problems.append("model group '\(g.name)' has no primary provider") }
            if g.maxAttempts < 1 { problems.append("model group '\(g.name)': max_attempts must be at least 1") }
            var seen = Set<String>()
            for wp in g.primary + g.fallback {
                if byName[wp.provider] == nil { problems.append("model group '\(g.name)' references unknown provider '\(wp.provider)'") }
                if wp.weight <= 0 { problems.append("model group '\(g.name)': weight of '\(wp.provider)' must be a positive integer") }
                if !seen.insert(wp.provider).inserted { problems.append("model group '\(g.name)' lists provider '\(wp.provider)' twice") }
            }
        }
        if let d = defaultGroup, index[d] == nil { problems.append("default model '\(d)' is not a model group") }
        guard problems.isEmpty else { throw RoutingTableError(message: problems.joined(separator: "\n")) }
        self.providers = byName
        self.groups = groups
        self.defaultGroup = defaultGroup
        self.index = index
    }

    /// The model group a request's `model` names: by name or alias, else the default group when the name
    /// is unknown, empty or `"placeholder"`; `nil` if nothing matches.
    public func group(forModel model: String?) -> ModelGroup? {
        if let model, let i = self.index[model] { return self.groups[i] }
        if let d = self.defaultGroup, let i = self.index[d] { return self.groups[i] }
        return nil
    }

    /// The request's candidate order: the primary tier in weighted-random order without replacement,
    /// then the fallback tier likewise.
    public func candidates(for group: ModelGroup, using random: some RandomSource) -> [Candidate] {
        var out: [Candidate] = []
        out.reserveCapacity(group.primary.count + group.fallback.count)
        for (tier, entries) in [(Tier.primary, group.primary), (Tier.fallback, group.fallback)] {
            for i in WeightedOrder.permutation(weights: entries.map(\.weight), using: random) {
                if let p = self.providers[entries[i].provider] { out.append(Candidate(provider: p, tier: tier)) }
            }
        }
        return out
    }
}

/// Which tier of a model group a provider belongs to.
public enum Tier: Int, Sendable, Hashable, Codable {
    case primary = 0
    case fallback = 1
}

/// A provider in a request's candidate order.
public struct Candidate: Sendable, Hashable {
    public var provider: Provider
    public var tier: Tier
    public init(provider: Provider, tier: Tier) {
        self.provider = provider
        self.tier = tier
    }
}
