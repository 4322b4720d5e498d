import MultiplexerCore
import MultiplexerMockProvider

/// The one audit every hostile-world test ends with, once its traffic is over: what the providers saw
/// against what the fleet promised and what Redis says.
///
/// - every strict mock stayed within its limits in every rolling window (no overshoot 429) and never had
///   more requests at once than its `max_concurrent`;
/// - no lease is left in Redis (every reservation settled, none waiting to expire);
/// - optionally, Redis's usage counters equal what the mocks counted: successes and reported tokens.
public struct FleetAudit: Sendable, CustomStringConvertible {
    /// Each violation, readable; empty when the fleet kept every promise.
    public var problems: [String] = []
    /// In-flight leases per provider, as Redis holds them at the end.
    public var leases: [String: Int] = [:]

    public var isClean: Bool { self.problems.isEmpty }
    public var description: String { self.isClean ? "audit clean" : "audit: " + self.problems.joined(separator: "; ") }
}

extension LocalFleet {
    /// Runs the audit (see ``FleetAudit``).
    ///
    /// - Parameters:
    ///   - counters: also require Redis's usage counters to equal the mocks' (successes, prompt and completion
    ///     tokens). Leave it off when clients cut streams mid-way: a mock may count as served what the fleet
    ///     settled as abandoned.
    ///   - settleWithin: how long leases may take to disappear (a response dropped before its body ran is
    ///     settled on its own task).
    ///   - outageAllowance: overshoot requests accepted per strict mock — 0, except for a Redis outage, where
    ///     ARCHITECTURE §8 bounds it by what the fleet admitted between each node's last reply and the outage
    ///     (at most one request per node with steady traffic).
    public func audit(counters: Bool = true, settleWithin: Duration = .seconds(3), outageAllowance: Int = 0) async -> FleetAudit {
        var audit = FleetAudit()
        for p in self.plan.providers {
            guard let c = self.mocks[p.name]?.state.counters else { continue }
            if c.overshoot > outageAllowance {
                audit.problems.append("\(p.name): \(c.overshoot) requests beyond its strict limits\(outageAllowance > 0 ? " (the outage allows \(outageAllowance))" : "")")
            }
            if let max = p.mockLimits.maxConcurrent, c.maxInFlight > max {
                audit.problems.append("\(p.name): \(c.maxInFlight) at once, max_concurrent \(max)")
            }
        }
        guard self.redis != nil else { return audit }
        let deadline = ContinuousClock.now + settleWithin
        var stats: FleetStats?
        while true {
            stats = try? await self.fleetStats()
            let busy = stats?.providers.contains { $0.window.inFlight > 0 } ?? true
            if !busy || ContinuousClock.now >= deadline { break }
            try? await Task.sleep(for: .milliseconds(100))
        }
        guard let stats else {
            audit.problems.append("Redis did not answer the audit")
            return audit
        }
        for p in stats.providers {
            audit.leases[p.name] = p.window.inFlight
            if p.window.inFlight > 0 { audit.problems.append("\(p.name): \(p.window.inFlight) leases left") }
            guard counters, let c = self.mocks[p.name]?.state.counters else { continue }
            if p.usage.success != c.served || p.usage.promptTokens != c.promptTokens || p.usage.completionTokens != c.completionTokens {
                audit.problems.append(
                    "\(p.name): Redis counted \(p.usage.success) successes, \(p.usage.promptTokens)+\(p.usage.completionTokens) tokens; "
                        + "the mock \(c.served), \(c.promptTokens)+\(c.completionTokens)")
            }
        }
        return audit
    }
}
