import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import MultiplexerUpstream
import Testing

/// Budgets across a fleet (ARCHITECTURE §8): a small key budget under concurrent requests through two
/// nodes is never exceeded, and Redis's spend equals Σ(reported tokens × price) in micro-USD exactly; a
/// provider whose daily budget is spent is skipped and the traffic moves on.
@Suite("Budgets (fleet)")
struct BudgetFleetTests {
    /// 2 USD per million input tokens, 6 per million output tokens.
    static let pricing = "pricing: { input_per_mtok: 2, output_per_mtok: 6 }"
    static let body = #"{"model":"demo","max_tokens":8,"messages":[{"role":"user","content":"Say hello to the budget."}]}"#

    /// Sends `total` identical requests, `concurrency` at a time, over `targets`; the statuses.
    static func load(_ fleet: LocalFleet, targets: [String], total: Int, concurrency: Int, key: String?) async -> [Int] {
        await withTaskGroup(of: [Int].self) { group in
            for w in 0..<concurrency {
                group.addTask {
                    var out: [Int] = []
                    // Worker w sends requests w, w + concurrency, …: each worker waits for its answer before the next.
                    for i in stride(from: w, to: total, by: concurrency) {
                        let headers: UpstreamHeaders = key.map { ["Authorization": "Bearer \($0)"] } ?? [:]
                        out.append(await fleet.http.post(targets[i % targets.count] + "/v1/chat/completions", json: Self.body, headers: headers)?.status ?? 0)
                    }
                    return out
                }
            }
            var all: [Int] = []
            for await part in group { all += part }
            return all
        }
    }

    @Test func aKeyBudgetHoldsExactlyUnderConcurrencyAcrossTwoNodes() async throws {
        var plan = fleetPlan([.init(name: "priced", latency: .milliseconds(30), settings: [Self.pricing])], nodes: 2)
        plan.nginx = false
        plan.model = "demo"
        // 0.002 USD a day: about 34 of these requests (58 µUSD each once settled; 74 reserved while in flight).
        plan.extraYAML = "keys:\n  - { name: team, key: team-budget-key, budget: { daily_usd: 0.002 } }\n"
        try await LocalFleet.run(plan) { fleet in
            let statuses = await Self.load(fleet, targets: fleet.nodes.map(\.url), total: 80, concurrency: 8, key: "team-budget-key")
            let served = statuses.filter { $0 == 200 }.count
            #expect(statuses.allSatisfy { $0 == 200 || $0 == 429 }, "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
            let mock = fleet.mocks["priced"]!.state.counters
            #expect(mock.served == served)
            // Every request is the same: the mock's usage per request prices it.
            try #require(served > 0 && mock.promptTokens % served == 0 && mock.completionTokens % served == 0)
            let perRequest = Pricing(inputPerMillionUSD: 2, outputPerMillionUSD: 6).cost(prompt: mock.promptTokens / served, completion: mock.completionTokens / served)
            let day = BudgetCalendar.day(WallClock.epochMilliseconds())
            let spentOK = await fleet.eventually(within: .seconds(5)) {
                let v = (try? await fleet.redisCLI(["GET", "\(fleet.keyPrefix):key:team:spend:\(day)"]))?.trimmingCharacters(in: CharacterSet(charactersIn: "\" \n"))
                return v == String(Int64(served) * perRequest)
            }
            let keySpend = try await fleet.redisCLI(["GET", "\(fleet.keyPrefix):key:team:spend:\(day)"]).trimmingCharacters(in: CharacterSet(charactersIn: "\" \n"))
            let providerSpend = try await fleet.redisCLI(["GET", "\(fleet.keyPrefix):provider:priced:spend:\(day)"]).trimmingCharacters(in: CharacterSet(charactersIn: "\" \n"))
            print("budget: \(served) of 80 served at \(perRequest) µUSD each = \(keySpend) µUSD of 2000; provider spend \(providerSpend)")
            #expect(spentOK, "Redis's spend is Σ(reported tokens × price) exactly: \(keySpend) vs \(served) × \(perRequest)")
            #expect(providerSpend == keySpend)
            #expect(Int64(served) * perRequest <= 2000, "the budget is never exceeded")
            #expect(Int64(served + 1) * perRequest > 2000 - 2 * 74, "and is used up (within two reservations)")
            // The refusals say which budget and when it resets.
            let refused = try #require(await fleet.http.post(fleet.nodes[0].url + "/v1/chat/completions", json: Self.body, headers: ["Authorization": "Bearer team-budget-key"]))
            #expect(refused.status == 429 && refused.body.contains(#""code":"insufficient_quota""#) && refused.body.contains("daily budget"))
            #expect(Int(refused.headers["retry-after"] ?? "") ?? 0 > 0)
            fleet.expectNoOvershoot()
        }
    }

    @Test func aProviderOverItsDailyBudgetIsSkipped() async throws {
        var plan = fleetPlan(
            [
                .init(name: "cheap", weight: 1_000_000, latency: .milliseconds(10), settings: [Self.pricing, "budget: { daily_usd: 0.0005 }"]),
                .init(name: "other", latency: .milliseconds(10)),
            ], nodes: 1)
        plan.nginx = false
        plan.model = "demo"
        try await LocalFleet.run(plan) { fleet in
            let statuses = await Self.load(fleet, targets: [fleet.nodes[0].url], total: 30, concurrency: 3, key: nil)
            #expect(statuses.allSatisfy { $0 == 200 }, "none refused: \(statuses)")
            let cheap = fleet.mocks["cheap"]!.state.counters, other = fleet.mocks["other"]!.state.counters
            #expect(cheap.served > 0 && cheap.served <= 8 && other.served == 30 - cheap.served, "cheap \(cheap.served), other \(other.served)")
            let stats = try await fleet.fleetStats()
            let spent = try #require(stats.providers.first { $0.name == "cheap" }).spentToday
            #expect(spent <= 500 && spent > 500 - 74, "spent \(spent) of 500 µUSD")
        }
    }
}
