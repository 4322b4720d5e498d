import MultiplexerCore
import Testing

struct WeightedOrderTests {
    @Test func firstPicksFollowTheWeights() {
        let random = SeededRandomSource(seed: 42)
        var firsts = [0, 0, 0]
        let n = 10_000
        for _ in 0..<n { firsts[WeightedOrder.permutation(weights: [5, 3, 2], using: random)[0]] += 1 }
        let shares = firsts.map { Double($0) / Double(n) * 100 }
        #expect(abs(shares[0] - 50) <= 2, "\(shares)")
        #expect(abs(shares[1] - 30) <= 2, "\(shares)")
        #expect(abs(shares[2] - 20) <= 2, "\(shares)")
    }

    @Test func everyDrawIsAPermutation() {
        let random = SeededRandomSource(seed: 7)
        for _ in 0..<500 {
            let p = WeightedOrder.permutation(weights: [1, 4, 2, 9, 1], using: random)
            #expect(p.sorted() == [0, 1, 2, 3, 4])
        }
        #expect(WeightedOrder.permutation(weights: [], using: random).isEmpty)
        #expect(WeightedOrder.permutation(weights: [3], using: random) == [0])
    }

    @Test func secondPicksShareTheRestInProportion() {
        // Given that index 0 went first, index 1 (weight 3) should be second 3/(3+2) = 60 % of the time.
        let random = SeededRandomSource(seed: 99)
        var afterZero = 0, oneSecond = 0
        for _ in 0..<20_000 {
            let p = WeightedOrder.permutation(weights: [5, 3, 2], using: random)
            if p[0] == 0 {
                afterZero += 1
                if p[1] == 1 { oneSecond += 1 }
            }
        }
        #expect(abs(Double(oneSecond) / Double(afterZero) * 100 - 60) <= 2)
    }

    @Test func seededSourcesAreReproducible() {
        let a = SeededRandomSource(seed: 1), b = SeededRandomSource(seed: 1)
        let xs = (0..<20).map { _ in a.next(below: 1000) }
        let ys = (0..<20).map { _ in b.next(below: 1000) }
        #expect(xs == ys)
        #expect(Set(xs).count > 10)
    }

    @Test func candidatesPutEveryPrimaryBeforeEveryFallback() throws {
        let table = try RoutingTable(
            providers: ["a", "b", "c", "d"].map { Provider(name: $0, baseURL: "http://127.0.0.1:1", model: "m") },
            groups: [ModelGroup(name: "g", primary: [.init(provider: "a", weight: 1), .init(provider: "b", weight: 1)],
                                fallback: [.init(provider: "c", weight: 1), .init(provider: "d", weight: 1)])])
        let random = SeededRandomSource(seed: 3)
        for _ in 0..<100 {
            let c = table.candidates(for: table.groups[0], using: random)
            #expect(c.map(\.tier) == [.primary, .primary, .fallback, .fallback])
            #expect(Set(c.prefix(2).map(\.provider.name)) == ["a", "b"])
        }
    }
}
