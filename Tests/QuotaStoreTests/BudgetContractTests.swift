import MultiplexerCore
import Testing

/// Budgets (ARCHITECTURE §8): quotas in micro-USD, reserved at admission in the same atomic decision as
/// every limit and settled to the real cost — on every store.
@Suite("QuotaStore budgets")
struct BudgetContractTests {
    /// 2 USD per million input tokens, 6 per million output tokens.
    static let pricing = Pricing(inputPerMillionUSD: 2, outputPerMillionUSD: 6)

    static func candidate(_ name: String, cost: Int64, budget: Int64? = nil) -> AdmissionCandidate {
        AdmissionCandidate(
            provider: name, limits: ProviderLimits(dailyBudgetMicroUSD: budget), tokens: 100, lease: .seconds(60), pricing: Self.pricing, cost: cost)
    }

    static func admit(_ h: any StoreHarness, _ c: [AdmissionCandidate], key: KeyAdmission? = nil) async throws -> AdmissionDecision {
        try await h.store.admit(AdmissionRequest(key: key, candidates: c))
    }

    static func spent(_ h: any StoreHarness, provider: String) async throws -> Int64 {
        try #require(try await h.store.stats(StatsQuery(providers: [provider], keys: [], models: [])).providers.first).spentToday
    }

    static func spent(_ h: any StoreHarness, key: String) async throws -> (Int64, Int64) {
        let k = try #require(try await h.store.stats(StatsQuery(providers: [], keys: [key], models: [])).keys.first)
        return (k.spentToday, k.spentThisMonth)
    }

    /// Whether `d` is the time until the next UTC midnight (give or take what the test itself took).
    static func untilMidnight(_ d: Duration?) -> Bool {
        guard let d else { return false }
        let expected = Duration.milliseconds(BudgetCalendar.untilNextDay(WallClock.epochMilliseconds()))
        return d > expected - .seconds(30) && d < expected + .seconds(30)
    }

    /// Virtual time to just after the next UTC midnight.
    static func toNextDay(_ h: any StoreHarness) async throws {
        try await h.advance(by: .milliseconds(BudgetCalendar.untilNextDay(WallClock.epochMilliseconds()) + 2000))
    }

    @Test func costsAreComputedInIntegersAndRoundedUp() {
        #expect(Self.pricing.cost(prompt: 50, completion: 20) == 220)
        #expect(Pricing(inputPerMillionUSD: 0.59, outputPerMillionUSD: 0.79).cost(prompt: 1, completion: 0) == 1, "0.59 µUSD rounds up to 1")
        #expect(Pricing(inputPerMillionUSD: 0.59, outputPerMillionUSD: 0.79).cost(prompt: 1_000_000, completion: 1_000_000) == 1_380_000)
        #expect(BudgetCalendar.day(0) == "1970-01-01" && BudgetCalendar.month(0) == "1970-01")
        #expect(BudgetCalendar.day(1_709_251_199_999) == "2024-02-29" && BudgetCalendar.day(1_709_251_200_000) == "2024-03-01")
        #expect(BudgetCalendar.untilNextDay(1_709_251_199_999) == 1 && BudgetCalendar.untilNextMonth(1_709_251_199_999) == 1)
        #expect(BudgetCalendar.day(1_798_761_599_000) == "2026-12-31" && BudgetCalendar.untilNextMonth(1_798_761_599_000) == 1000)
    }

    @Test(arguments: StoreKind.allCases)
    func aProviderBudgetIsReservedSettledAndRefunded(_ kind: StoreKind) async throws {
        try await withHarness(kind) { h in
            let c = Self.candidate("p-budget", cost: 1000, budget: 2500)
            let r1 = try QuotaStoreContractTests.reservation(try await Self.admit(h, [c]))
            #expect(r1.cost == 1000 && r1.spendDay == BudgetCalendar.day(WallClock.epochMilliseconds()) && r1.pricing == Self.pricing)
            let r2 = try QuotaStoreContractTests.reservation(try await Self.admit(h, [c]))
            #expect(try await Self.spent(h, provider: "p-budget") == 2000, "reserved while in flight")
            guard case .exhausted(let ra, let blocked) = try await Self.admit(h, [c]) else { Issue.record("a third fits"); return }
            #expect(blocked.first?.reason == .budget)
            #expect(Self.untilMidnight(ra), "free at the next UTC midnight")
            // Settled to the real cost: 50 input + 20 output tokens = 220 µUSD.
            await h.store.settle(Settlement(reservation: r1, result: .success(usage: TokenUsage(promptTokens: 50, completionTokens: 20))))
            #expect(try await Self.spent(h, provider: "p-budget") == 1220)
            let r3 = try QuotaStoreContractTests.reservation(try await Self.admit(h, [c]))
            // A failure refunds its whole reservation; a broken stream keeps what it relayed.
            await h.store.settle(Settlement(reservation: r2, result: .failure))
            await h.store.settle(Settlement(reservation: r3, result: .broken(usage: TokenUsage(promptTokens: 10, completionTokens: 5))))
            #expect(try await Self.spent(h, provider: "p-budget") == 220 + 50)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aKeyOverItsBudgetIsRefusedUntilThePeriodEnds(_ kind: StoreKind) async throws {
        try await withHarness(kind) { h in
            let key = KeyAdmission(name: "k-budget", limits: KeyLimits(dailyBudgetMicroUSD: 1500, monthlyBudgetMicroUSD: 100_000))
            let r = try QuotaStoreContractTests.reservation(try await Self.admit(h, [Self.candidate("p-k", cost: 1000)], key: key))
            #expect(r.keySpentToday == 1000 && r.keySpentThisMonth == 1000)
            guard case .keyOverBudget(let period, let ra) = try await Self.admit(h, [Self.candidate("p-k", cost: 1000)], key: key) else {
                Issue.record("admitted over the key's budget")
                return
            }
            #expect(period == .daily)
            #expect(Self.untilMidnight(ra))
            // A cheaper candidate still fits.
            let cheap = try QuotaStoreContractTests.reservation(
                try await Self.admit(h, [Self.candidate("p-k", cost: 1000), Self.candidate("p-cheap", cost: 400)], key: key))
            #expect(cheap.provider == "p-cheap")
            #expect(try await Self.spent(h, key: "k-budget") == (1400, 1400))
            // The monthly budget is checked too.
            let monthly = KeyAdmission(name: "k-month", limits: KeyLimits(dailyBudgetMicroUSD: 10_000, monthlyBudgetMicroUSD: 1200))
            _ = try QuotaStoreContractTests.reservation(try await Self.admit(h, [Self.candidate("p-k", cost: 1000)], key: monthly))
            guard case .keyOverBudget(.monthly, _) = try await Self.admit(h, [Self.candidate("p-k", cost: 1000)], key: monthly) else {
                Issue.record("the monthly budget was not checked")
                return
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aNewUTCDayStartsFromZero(_ kind: StoreKind) async throws {
        try await withHarness(kind) { h in
            let key = KeyAdmission(name: "k-day", limits: KeyLimits(dailyBudgetMicroUSD: 1000))
            let c = Self.candidate("p-day", cost: 1000, budget: 1000)
            let r = try QuotaStoreContractTests.reservation(try await Self.admit(h, [c], key: key))
            // Both budgets are spent; the key's own is what the client is told (it rules out every candidate).
            guard case .keyOverBudget(.daily, _) = try await Self.admit(h, [c], key: key) else { Issue.record("over the budget"); return }
            guard case .exhausted(_, let blocked) = try await Self.admit(h, [c]) else { Issue.record("over the provider's budget"); return }
            #expect(blocked.first?.reason == .budget)
            try await Self.toNextDay(h)
            #expect(try await Self.spent(h, provider: "p-day") == 0, "the new day's spend")
            let next = try QuotaStoreContractTests.reservation(try await Self.admit(h, [c], key: key))
            #expect(next.spendDay != r.spendDay)
            // The first day's reservation settles against its own day.
            await h.store.settle(Settlement(reservation: r, result: .success(usage: TokenUsage(promptTokens: 0, completionTokens: 0))))
            #expect(try await Self.spent(h, provider: "p-day") == 1000, "today's spend is untouched by yesterday's settlement")
        }
    }
}
