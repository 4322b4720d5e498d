import MultiplexerCore

/// A quota store under test plus control over its clock.
///
/// Every implementation of ``QuotaStore`` gets one harness; the contract suite runs each test against
/// each harness, so all stores honour one contract.
protocol StoreHarness: Sendable {
    var store: any QuotaStore { get }
    /// Moves the store's time forward (no real waiting).
    func advance(by duration: Duration) async throws
    /// Releases whatever the harness started.
    func shutdown() async
}

/// ``InMemoryQuotaStore`` on a ``ManualClock``.
struct InMemoryHarness: StoreHarness {
    let clock = ManualClock()
    let store: any QuotaStore

    init() {
        self.store = InMemoryQuotaStore(clock: self.clock)
    }

    func advance(by duration: Duration) async throws {
        self.clock.advance(by: duration)
    }

    func shutdown() async {}
}

/// The stores the contract suite runs against.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory

    var testDescription: String { self.rawValue }

    func makeHarness() async throws -> any StoreHarness {
        switch self {
        case .memory: InMemoryHarness()
        }
    }
}

import Testing

/// Runs `body` with a fresh harness of `kind` and shuts it down afterwards.
func withHarness(_ kind: StoreKind, _ body: (any StoreHarness) async throws -> Void) async throws {
    let h = try await kind.makeHarness()
    do {
        try await body(h)
    } catch {
        await h.shutdown()
        throw error
    }
    await h.shutdown()
}
