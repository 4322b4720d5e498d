import Multiplexer
import MultiplexerCore
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// Pricing on an endpoint and budgets on the multiplexer (ARCHITECTURE §8), through the library.
@Suite("Library budgets")
struct LibraryBudgetTests {
    static let pricing = Pricing(inputPerMillionUSD: 2, outputPerMillionUSD: 6)

    @Test func theMultiplexersBudgetAndAnEndpointsDailyBudgetHold() async throws {
        try await MockProviders.with([.init("a"), .init("b")]) { m in
            // 0.0005 USD a day for the multiplexer; a's own account 0.0002 USD.
            try await Multiplexer.withMultiplexer(configuration: .init(name: "svc", tierWait: .zero, dailyBudgetUSD: 0.0005)) { mux in
                var a = m.endpoint("a")
                a.pricing = Self.pricing
                a.dailyBudgetUSD = 0.0002
                var b = m.endpoint("b")
                b.pricing = Self.pricing
                try mux.addModel(a, weight: 1_000_000, modelName: "a")
                try mux.addFallbackModel(b, weight: 1, modelName: "b")
                var served: [String] = []
                var refusal: MultiplexerError?
                for _ in 0..<20 {
                    do {
                        let c = try await mux.chat.completions.create(messages: [.user("price me")], maxTokens: 8)
                        served.append(c.servedBy ?? "?")
                    } catch let e as MultiplexerError {
                        refusal = e
                        break
                    }
                }
                let e = try #require(refusal, "the budget stopped the calls: \(served)")
                #expect(e.code == .insufficientQuota && (e.retryAfter ?? .zero) > .zero, "\(e) after \(served)")
                #expect(served.first == "a" && served.contains("b"), "a until its own budget, then b: \(served)")
                let stats = try await mux.fleetStats()
                let spentA = try #require(stats.providers.first { $0.name == "a" }).spentToday
                let spentB = try #require(stats.providers.first { $0.name == "b" }).spentToday
                #expect(spentA <= 200 && spentA + spentB <= 500, "a \(spentA) ≤ 200 µUSD, all \(spentA + spentB) ≤ 500 µUSD")
                let c = m.counters("a")
                let perRequest = Self.pricing.cost(prompt: c.promptTokens / max(1, c.served), completion: c.completionTokens / max(1, c.served))
                #expect(spentA == Int64(c.served) * perRequest, "spend is the reported tokens priced")
            }
        }
    }
}
