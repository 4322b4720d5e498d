import Logging
import MultiplexerCore
import Prometheus

/// A ``QuotaStore`` decorator that records the admission round trip in the gateway's metrics.
struct InstrumentedQuotaStore: QuotaStore {
    let base: any QuotaStore
    let metrics: GatewayMetrics
    var logger: Logger? = nil

    func admit(_ request: AdmissionRequest) async throws -> AdmissionDecision {
        let start = ContinuousClock.now
        defer { self.metrics.admission.record(start.duration(to: .now)) }
        return try await self.base.admit(request)
    }
    /// A cooldown opened at a provider's failure threshold is counted and logged here (the store decides it).
    @discardableResult
    func settle(_ settlement: Settlement) async -> SettlementEffect {
        let effect = await self.base.settle(settlement)
        let r = settlement.reservation
        let cost = settlement.result.chargedCost(reserved: r.cost, pricing: r.pricing)
        if cost > 0 { self.metrics.spend(provider: r.provider, key: r.key, microUSD: cost) }
        if let d = effect.failureCooldown {
            self.metrics.cooldown(provider: settlement.reservation.provider, reason: CooldownReason.failures.rawValue)
            self.logger?.warning(
                "provider cooling down",
                metadata: [
                    "gateway.provider": .string(settlement.reservation.provider), "gateway.cooldown.reason": "failures",
                    "gateway.cooldown_ms": .stringConvertible(d.millisecondsRoundedUp),
                    "gateway.failure_threshold": .stringConvertible(settlement.failureThreshold),
                ])
        }
        return effect
    }
    func record(_ event: ModelEvent) async { await self.base.record(event) }
    func renewLease(_ reservation: Reservation, for duration: Duration) async throws { try await self.base.renewLease(reservation, for: duration) }
    func setCooldown(provider: String, for duration: Duration, reason: CooldownReason) async throws -> Duration {
        try await self.base.setCooldown(provider: provider, for: duration, reason: reason)
    }
    func clearCooldown(provider: String) async throws { try await self.base.clearCooldown(provider: provider) }
    func setDisabled(provider: String, _ disabled: Bool) async throws { try await self.base.setDisabled(provider: provider, disabled) }
    func heartbeat(nodeID: String) async throws -> Int { try await self.base.heartbeat(nodeID: nodeID) }
    func stats(_ query: StatsQuery) async throws -> FleetStats { try await self.base.stats(query) }
}
