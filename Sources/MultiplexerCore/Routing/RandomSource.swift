import Synchronization

/// A source of random numbers the router draws from; injectable so tests are reproducible.
public protocol RandomSource: Sendable {
    /// A uniformly distributed integer in `0..<upperBound` (`upperBound` > 0).
    func next(below upperBound: UInt64) -> UInt64
}

/// The system's cryptographic random generator; the default. Lock-free.
public struct SystemRandomSource: RandomSource {
    public init() {}
    public func next(below upperBound: UInt64) -> UInt64 {
        var g = SystemRandomNumberGenerator()
        return g.next(upperBound: upperBound)
    }
}

/// A reproducible generator (SplitMix64) for tests and simulations. Thread-safe.
public final class SeededRandomSource: RandomSource {
    private let state: Mutex<UInt64>

    /// - Parameter seed: the same seed gives the same sequence.
    public init(seed: UInt64) {
        self.state = Mutex(seed)
    }

    public func next(below upperBound: UInt64) -> UInt64 {
        precondition(upperBound > 0, "upperBound must be positive")
        // Lemire's multiply-shift with rejection keeps the draw unbiased.
        while true {
            let x = self.state.withLock { s -> UInt64 in
                s &+= 0x9E37_79B9_7F4A_7C15
                var z = s
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return z ^ (z >> 31)
            }
            let m = x.multipliedFullWidth(by: upperBound)
            if m.low >= (0 &- upperBound) % upperBound { return m.high }
        }
    }
}
