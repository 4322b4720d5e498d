import Synchronization
import Testing

@testable import MultiplexerCore

/// The one owner of a stream's reservation: settled exactly once on every path, renewed only while
/// unsettled, and a last resort in `deinit`.
struct ReservationOwnerTests {
    private func pending(_ store: InMemoryQuotaStore<ContinuousClock>) async throws -> PendingSettlement {
        let c = AdmissionCandidate(provider: "p", limits: ProviderLimits(maxConcurrent: 2), tokens: 10, lease: .seconds(30))
        guard case .admitted(let r) = try await store.admit(AdmissionRequest(candidates: [c])) else { throw CancellationError() }
        return PendingSettlement(store: store, template: Settlement(reservation: r, result: .abandoned))
    }

    @Test func settlesExactlyOnceWhicheverPathComesFirst() async throws {
        let store = InMemoryQuotaStore(clock: ContinuousClock())
        let calls = Mutex(0)
        let owner = ReservationOwner(try await self.pending(store)) { _ in calls.withLock { $0 += 1 } }
        #expect(await owner.settle(.success(usage: TokenUsage(promptTokens: 1, completionTokens: 1))))
        #expect(!(await owner.settle(.broken())), "a second path settles nothing")
        #expect(owner.claim() == nil)
        let s = try await store.stats(StatsQuery(providers: ["p"], keys: [], models: []))
        #expect(s.providers[0].usage.requests == 1 && s.providers[0].usage.success == 1 && s.providers[0].window.inFlight == 0)
        #expect(calls.withLock { $0 } == 0)
    }

    @Test func deinitHandsAnUnsettledReservationToItsLastResort() async throws {
        let store = InMemoryQuotaStore(clock: ContinuousClock())
        let handed = Mutex<[PendingSettlement]>([])
        do {
            _ = ReservationOwner(try await self.pending(store)) { p in handed.withLock { $0.append(p) } }
        }
        #expect(handed.withLock { $0.count } == 1)
        // A claimed one is the claimer's to settle: deinit leaves it alone.
        do {
            let owner = ReservationOwner(try await self.pending(store)) { p in handed.withLock { $0.append(p) } }
            #expect(owner.claim() != nil)
        }
        #expect(handed.withLock { $0.count } == 1)
    }

    @Test func renewsOnlyWhileUnsettledAndWhenDue() async throws {
        let store = RenewalCountingStore()
        guard case .admitted(let r) = try await store.admit(AdmissionRequest(candidates: [AdmissionCandidate(provider: "p", limits: ProviderLimits(), tokens: 1)]))
        else { throw CancellationError() }
        let owner = ReservationOwner(PendingSettlement(store: store, template: Settlement(reservation: r, result: .abandoned))) { _ in }
        await owner.renew(every: .seconds(3600), for: .seconds(30))  // not due yet
        #expect(store.renewals == 0)
        await owner.renew(for: .seconds(30))
        #expect(store.renewals == 1)
        await owner.settle(.success(usage: nil))
        await owner.renew(for: .seconds(30))  // settled: its lease is not renewed again
        #expect(store.renewals == 1)
    }
}

/// The in-memory store, counting lease renewals.
final class RenewalCountingStore: QuotaStore {
    private let inner = InMemoryQuotaStore(clock: ContinuousClock())
    private let count = Mutex(0)
    var renewals: Int { self.count.withLock { $0 } }

    func admit(_ request: AdmissionRequest) async throws -> AdmissionDecision { try await self.inner.admit(request) }
    @discardableResult
    func settle(_ settlement: Settlement) async -> SettlementEffect { await self.inner.settle(settlement) }
    func record(_ event: ModelEvent) async { await self.inner.record(event) }
    func renewLease(_ reservation: Reservation, for duration: Duration) async throws {
        self.count.withLock { $0 += 1 }
        try await self.inner.renewLease(reservation, for: duration)
    }
    func setCooldown(provider: String, for duration: Duration, reason: CooldownReason) async throws -> Duration {
        try await self.inner.setCooldown(provider: provider, for: duration, reason: reason)
    }
    func clearCooldown(provider: String) async throws { try await self.inner.clearCooldown(provider: provider) }
    func setDisabled(provider: String, _ disabled: Bool) async throws { try await self.inner.setDisabled(provider: provider, disabled) }
    func heartbeat(nodeID: String) async throws -> Int { try await self.inner.heartbeat(nodeID: nodeID) }
    func stats(_ query: StatsQuery) async throws -> FleetStats { try await self.inner.stats(query) }
}
