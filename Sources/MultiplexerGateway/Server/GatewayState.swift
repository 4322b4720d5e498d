import Synchronization

/// Whether the node takes traffic: `/readyz` answers from it.
final class GatewayState: Sendable {
    enum Phase: Sendable {
        case starting
        case ready
        case draining
    }

    private let phase = Mutex(Phase.starting)
    private let deadline = Mutex<ContinuousClock.Instant?>(nil)

    /// When streams still open must end (with a `server_shutting_down` error event) so that they are
    /// settled before the server's graceful shutdown gives up on them; `nil` until shutdown begins.
    var streamDeadline: ContinuousClock.Instant? { self.deadline.withLock { $0 } }

    func setStreamDeadline(_ d: ContinuousClock.Instant) {
        self.deadline.withLock { $0 = d }
    }

    var current: Phase { self.phase.withLock { $0 } }

    func set(_ p: Phase) {
        self.phase.withLock { $0 = p }
    }
}
