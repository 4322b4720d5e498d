import Synchronization

/// The one owner of a served stream's reservation, from the moment the stream is handed out to its
/// settlement — used by the gateway's relay and the library's streams alike (ARCHITECTURE §3 step 7).
///
/// - ``settle(_:)`` settles exactly once, whichever path ends the stream first (done, broken, client
///   gone, write timeout, shutdown); later calls do nothing.
/// - ``renew(every:for:)`` renews the in-flight lease while the upstream transfer is open, called by
///   whatever runs beside the stream (the relay's watchdog, the library's lease keeper) — never by
///   the client's reads, so a client that stops reading cannot let the lease expire.
/// - ``claim()`` takes the settlement for a path that cannot await (a `deinit`), which then dispatches it.
/// - `deinit` is the last resort: an owner released unsettled and unclaimed hands its settlement to
///   `unsettled`, which must settle it (as abandoned) and should say so loudly — it means a path forgot it.
public final class ReservationOwner: Sendable {
    /// The settlement being owned.
    public let pending: PendingSettlement
    private struct State {
        var settled = false
        var lastRenewal = ContinuousClock.now
    }
    private let state = Mutex(State())
    private let unsettled: @Sendable (PendingSettlement) -> Void

    /// - Parameters:
    ///   - pending: the stream's settlement.
    ///   - unsettled: called from `deinit` if the owner is released without a settlement or a claim.
    public init(_ pending: PendingSettlement, unsettled: @escaping @Sendable (PendingSettlement) -> Void) {
        self.pending = pending
        self.unsettled = unsettled
    }

    /// Whether the reservation has been settled (or claimed).
    public var isSettled: Bool { self.state.withLock { $0.settled } }

    /// Settles the reservation unless it already is; returns whether this call did.
    @discardableResult
    public func settle(_ result: SettlementResult) async -> Bool {
        guard let pending = self.claim() else { return false }
        await pending.settle(result)
        return true
    }

    /// Marks the reservation settled and returns it, for the caller to settle without awaiting here;
    /// `nil` if it was settled (or claimed) already.
    public func claim() -> PendingSettlement? {
        self.state.withLock { s in
            defer { s.settled = true }
            return s.settled ? nil : self.pending
        }
    }

    /// Renews the lease for `lease` if `every` has passed since the last renewal and the reservation is
    /// not settled yet.
    public func renew(every: Duration = .zero, for lease: Duration) async {
        let due = self.state.withLock { s -> Bool in
            guard !s.settled, s.lastRenewal.duration(to: .now) >= every else { return false }
            s.lastRenewal = .now
            return true
        }
        if due { try? await self.pending.renewLease(for: lease) }
    }

    deinit {
        if let pending = self.claim() { self.unsettled(pending) }
    }
}
