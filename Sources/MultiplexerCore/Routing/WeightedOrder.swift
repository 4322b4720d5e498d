/// Weighted random ordering without replacement.
///
/// The first element is drawn with probability `weight / Σweight`; it is removed and the next is drawn the
/// same way among the rest. So while every provider can serve, each gets its weight's share of first
/// attempts, and a provider that cannot serve passes its share to the others in proportion to theirs.
public enum WeightedOrder {
    /// A permutation of `weights.indices`, drawn as described above. Non-positive weights are treated as 1.
    public static func permutation(weights: [Int], using random: some RandomSource) -> [Int] {
        switch weights.count {
        case 0: return []
        case 1: return [0]
        default: break
        }
        var remaining = Array(weights.indices)
        var total = weights.reduce(0) { $0 + max(1, $1) }
        var out: [Int] = []
        out.reserveCapacity(weights.count)
        while remaining.count > 1 {
            var r = Int(random.next(below: UInt64(total)))
            var pick = remaining.count - 1
            for (pos, i) in remaining.enumerated() {
                let w = max(1, weights[i])
                if r < w {
                    pick = pos
                    break
                }
                r -= w
            }
            let i = remaining.remove(at: pick)
            total -= max(1, weights[i])
            out.append(i)
        }
        out.append(remaining[0])
        return out
    }
}
