import Synchronization

/// Whether the node takes traffic: `/readyz` answers from it.
final class GatewayState: Sendable {
    enum Phase: Sendable {
        case starting
        case ready
        case draining
    }

    private let phase = Mutex(Phase.starting)

    var current: Phase { self.phase.withLock { $0 } }

    func set(_ p: Phase) {
        self.phase.withLock { $0 = p }
    }
}
