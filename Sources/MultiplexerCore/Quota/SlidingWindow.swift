/// A sliding log of amounts over a rolling window: exact, so no 2× burst at a window edge.
///
/// Each entry (time, id, amount) counts while `time > now - length`. Amounts can be adjusted after the
/// fact (token settlement); the running sum makes the fit check O(1) and pruning amortised O(1).
/// A *unit* window (requests: every amount is 1 and never changes) keeps no per-entry amounts, and
/// finds when it frees up by index, in O(1).
struct SlidingWindow: Sendable {
    let length: Int64
    let unit: Bool
    private var times: [Int64] = []
    private var ids: [UInt64] = []
    private var head = 0
    private var amounts: [UInt64: Int64] = [:]
    private(set) var sum: Int64 = 0

    init(lengthMs: Int64, unit: Bool = false) {
        self.length = lengthMs
        self.unit = unit
    }

    var count: Int { self.times.count - self.head }

    /// Drops entries that have left the window at `now`.
    mutating func prune(now: Int64) {
        while self.head < self.times.count, self.times[self.head] + self.length <= now {
            if self.unit {
                self.sum -= 1
            } else if let a = self.amounts.removeValue(forKey: self.ids[self.head]) {
                self.sum -= a
            }
            self.head += 1
        }
        if self.head > 64, self.head * 2 > self.times.count {
            self.times.removeFirst(self.head)
            if !self.unit { self.ids.removeFirst(self.head) }
            self.head = 0
        }
    }

    /// The earliest time (≥ now) at which `amount` more fits under `limit`; `nil` if it never can.
    /// Call after ``prune(now:)``.
    func fitsAt(amount: Int64, limit: Int64, now: Int64) -> Int64? {
        if amount > limit { return nil }
        var excess = self.sum + amount - limit
        if excess <= 0 { return now }
        if self.unit {
            // Each entry frees 1: the `excess`-th oldest entry's expiry.
            let i = self.head + Int(excess) - 1
            return i < self.times.count ? self.times[i] + self.length : nil
        }
        var i = self.head
        while i < self.times.count {
            excess -= self.amounts[self.ids[i]] ?? 0
            if excess <= 0 { return self.times[i] + self.length }
            i += 1
        }
        return nil
    }

    /// The amount of the entries admitted after `time` (newest first, so O(entries after `time`)).
    func sum(after time: Int64) -> Int64 {
        var total: Int64 = 0
        var i = self.times.count - 1
        while i >= self.head, self.times[i] > time {
            total += self.unit ? 1 : (self.amounts[self.ids[i]] ?? 0)
            i -= 1
        }
        return total
    }

    /// Adds an entry (times must be non-decreasing; the store's clock is monotonic).
    mutating func add(time: Int64, id: UInt64, amount: Int64) {
        self.times.append(time)
        if self.unit {
            self.sum += 1
            return
        }
        self.ids.append(id)
        self.amounts[id] = amount
        self.sum += amount
    }

    /// Changes the amount of a still-live entry; an entry that already left the window is not revived.
    mutating func adjust(id: UInt64, to amount: Int64) {
        guard !self.unit, let old = self.amounts[id] else { return }
        self.amounts[id] = amount
        self.sum += amount - old
    }
}
