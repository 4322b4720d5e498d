public import MultiplexerCore
import Synchronization

/// The reservation of a served stream's current attempt, shared between the task that reads the stream
/// and whatever runs beside it (a relay's watchdog, the library's lease keeper).
///
/// A continued stream (ARCHITECTURE §3 step 7) moves from one attempt to the next: each attempt's
/// reservation is owned by its own ``ReservationOwner`` (settled exactly once), and this holds the
/// current one. Renewal and cancellation always reach the attempt in progress.
public final class StreamReservation: Sendable {
    private struct Current {
        var owner: ReservationOwner
        var provider: Provider
        var events: SSEEventStream?
        /// The upstream transfer was cancelled from outside (shutdown): a continuation is not started, and
        /// one that was being admitted is cancelled at once.
        var cancelled = false
    }
    private let current: Mutex<Current>
    private let unsettled: @Sendable (PendingSettlement) -> Void

    /// - Parameters:
    ///   - pending: the first attempt's settlement.
    ///   - provider: the provider serving it.
    ///   - events: its events (cancelled by ``cancelUpstream()``).
    ///   - unsettled: called (from a `deinit`) with an attempt's settlement released unsettled; it must
    ///     settle it as abandoned.
    public init(pending: PendingSettlement, provider: Provider, events: SSEEventStream?, unsettled: @escaping @Sendable (PendingSettlement) -> Void) {
        self.unsettled = unsettled
        self.current = Mutex(Current(owner: ReservationOwner(pending, unsettled: unsettled), provider: provider, events: events))
    }

    /// The provider serving the current attempt.
    public var provider: Provider { self.current.withLock { $0.provider } }

    /// Whether the current attempt is settled (or claimed).
    public var isSettled: Bool { self.owner.isSettled }

    /// Whether ``cancelUpstream()`` was called.
    public var isCancelled: Bool { self.current.withLock { $0.cancelled } }

    private var owner: ReservationOwner { self.current.withLock { $0.owner } }

    /// Settles the current attempt unless it already is; returns whether this call did.
    @discardableResult
    public func settle(_ result: SettlementResult) async -> Bool {
        await self.owner.settle(result)
    }

    /// Takes the current attempt's settlement (see ``ReservationOwner/claim()``).
    public func claim() -> PendingSettlement? {
        self.owner.claim()
    }

    /// Renews the current attempt's lease if `every` has passed since its last renewal (its provider's lease
    /// duration when `lease` is `nil`).
    public func renew(every: Duration = .zero, for lease: Duration? = nil) async {
        let (owner, provider) = self.current.withLock { ($0.owner, $0.provider) }
        await owner.renew(every: every, for: lease ?? provider.leaseDuration)
    }

    /// Aborts the current upstream transfer from outside the reading task (see ``SSEEventStream/cancel()``);
    /// no continuation follows.
    public func cancelUpstream() {
        let events = self.current.withLock { c -> SSEEventStream? in
            c.cancelled = true
            return c.events
        }
        events?.cancel()
    }

    /// Makes a continuation the current attempt. Returns `false` (and cancels `events`) if the stream was
    /// cancelled meanwhile; the caller then settles `pending` itself.
    func replace(pending: PendingSettlement, provider: Provider, events: SSEEventStream) -> Bool {
        let owner = ReservationOwner(pending, unsettled: self.unsettled)
        let accepted = self.current.withLock { c -> Bool in
            guard !c.cancelled else { return false }
            c = Current(owner: owner, provider: provider, events: events)
            return true
        }
        if !accepted {
            _ = owner.claim()
            events.cancel()
        }
        return accepted
    }
}
