import MultiplexerCore
import MultiplexerUpstream
import Synchronization

/// Renews the leases of the streams the library has handed out, while their upstream transfers are open,
/// whatever their consumers read (ARCHITECTURE §3 step 7): a stream registers when it is handed out and
/// leaves when it settles; ``run()`` (a child of ``Multiplexer/run()``) renews every registered lease every
/// ``MultiplexerCore/Provider/leaseRenewal``.
final class LeaseKeeper: Sendable {
    private struct State {
        var next: UInt64 = 0
        var open: [UInt64: StreamReservation] = [:]
    }

    private let state = Mutex(State())

    /// Registers a stream's reservation; the token unregisters it.
    func register(_ owner: StreamReservation) -> UInt64 {
        self.state.withLock { s in
            s.next += 1
            s.open[s.next] = owner
            return s.next
        }
    }

    func unregister(_ token: UInt64) {
        self.state.withLock { _ = $0.open.removeValue(forKey: token) }
    }

    /// Streams whose leases are being kept.
    var count: Int { self.state.withLock { $0.open.count } }

    /// Renews every registered lease each ``MultiplexerCore/Provider/leaseRenewal`` until cancelled.
    func run() async {
        while true {
            do {
                try await Task.sleep(for: Provider.leaseRenewal)
            } catch {
                return
            }
            let open = self.state.withLock { Array($0.open.values) }
            await withDiscardingTaskGroup { group in
                for owner in open {
                    group.addTask { await owner.renew() }
                }
            }
        }
    }
}
