import Multiplexer
import MultiplexerCore
import MultiplexerMockProvider
import Testing

/// The library against real mock providers on loopback: weights, tiers, cooldowns, failover, errors, stats.
@Suite("Multiplexer routing")
struct MultiplexerRoutingTests {
    /// Uses fallbacks as soon as no primary can serve (the reference's tier rule).
    static let noTierWait = Multiplexer.Configuration(tierWait: .zero)

    @Test func weightedSharesFollowTheWeights() async throws {
        try await MockProviders.with([.init("a"), .init("b"), .init("f")]) { m in
            try await Multiplexer.withMultiplexer { mux in
                try mux.addModel(m.endpoint("a"), weight: 3, modelName: "a")
                try mux.addModel(m.endpoint("b"), weight: 1, modelName: "b")
                try mux.addFallbackModel(m.endpoint("f"), weight: 5, modelName: "f")
                let total = 400
                let servedBy = try await withThrowingTaskGroup(of: [String].self) { group in
                    for worker in 0..<8 {
                        group.addTask {
                            var names: [String] = []
                            for _ in stride(from: worker, to: total, by: 8) { names.append(try await ask(mux).servedBy ?? "?") }
                            return names
                        }
                    }
                    return try await group.reduce(into: [String]()) { $0 += $1 }
                }
                let a = servedBy.filter { $0 == "a" }.count
                let share = Double(a) / Double(total)
                // σ of the share over 400 requests is 0.022: 0.1 is 4.6 σ (a 3 σ bound failed about once in 400 runs).
                #expect(abs(share - 0.75) < 0.1, "a served \(a) of \(total)")
                #expect(servedBy.filter { $0 == "f" }.isEmpty)
                let stats = try await mux.stats()
                #expect(stats["a"] == SeedStats(success: a, rateLimited: 0, failed: 0))
                #expect(stats["b"] == SeedStats(success: total - a, rateLimited: 0, failed: 0))
                #expect(stats["f"] == SeedStats(success: 0, rateLimited: 0, failed: 0))
            }
        }
    }

    @Test func theReadmeQuickStartRuns() async throws {
        try await MockProviders.with([.init("model1-large"), .init("model2-base")]) { m in
            let (key1, key2) = ("sk-1", "sk-2")
            try await Multiplexer.withMultiplexer { mux in
                try mux.addModel(OpenAICompatibleEndpoint(baseURL: m.url("model1-large"), apiKey: key1), weight: 5, modelName: "model1-large")
                try mux.addModel(OpenAICompatibleEndpoint(baseURL: m.url("model2-base"), apiKey: key2), weight: 3, modelName: "model2-base")
                let completion = try await mux.chat.completions.create(messages: [
                    .system("You are a helpful assistant."),
                    .user("What is the capital of France?"),
                ])
                #expect(completion.choices[0].message.content?.text.isEmpty == false)
                // Without an endpoint `model`, the registered name is sent upstream (the mock echoes it).
                #expect(completion.model == completion.servedBy)
                let stats = try await mux.stats()
                #expect(stats.values.map(\.success).reduce(0, +) == 1)
            }
        }
    }

    @Test func theEndpointsModelIdIsSentAndTheAnswerKeepsIt() async throws {
        try await MockProviders.with([.init("a")]) { m in
            try await Multiplexer.withMultiplexer { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                var plain = m.endpoint("a")
                plain.model = nil
                try mux.addFallbackModel(plain, weight: 1, modelName: "a-by-name")
                let c = try await ask(mux)
                // The mock answers with the model it was asked for.
                #expect(c.model == "upstream-a")
                #expect(c.servedBy == "a")
                #expect(c.choices.first?.message.content?.text.hasPrefix("tok") == true)
                #expect(c.usage?.completionTokens == 8)
            }
        }
    }

    @Test func fallbacksServeOnlyWhenEveryPrimaryIsExhausted() async throws {
        try await MockProviders.with([.init("p1") { $0.rpm = 3 }, .init("p2") { $0.rpm = 2 }, .init("f")]) { m in
            try await Multiplexer.withMultiplexer(configuration: Self.noTierWait) { mux in
                try mux.addModel(m.endpoint("p1", limits: .init(rpm: 3)), weight: 1, modelName: "p1")
                try mux.addModel(m.endpoint("p2", limits: .init(rpm: 2)), weight: 1, modelName: "p2")
                try mux.addFallbackModel(m.endpoint("f"), weight: 1, modelName: "f")
                var served: [String] = []
                for _ in 0..<8 { served.append(try await ask(mux).servedBy ?? "?") }
                // The primaries' limits are used up first (enforced before sending: the strict mocks never overshoot).
                #expect(served.prefix(5).allSatisfy { $0 == "p1" || $0 == "p2" }, "\(served)")
                #expect(served.suffix(3) == ["f", "f", "f"], "\(served)")
                #expect(m.counters("p1").served == 3 && m.counters("p2").served == 2)
                #expect(m.counters("p1").overshoot == 0 && m.counters("p2").overshoot == 0)
                let stats = try await mux.fleetStats()
                #expect(stats.providers.first { $0.name == "f" }?.usage.fallbackServed == 3)
                #expect(stats.models.first?.counters.fallbacks == 3)
            }
        }
    }

    @Test func aBusyPrimaryOverflowsToTheFallbacks() async throws {
        try await MockProviders.with([.init("p") { $0.maxConcurrent = 1; $0.latency = .milliseconds(300) }, .init("f")]) { m in
            try await Multiplexer.withMultiplexer(configuration: Self.noTierWait) { mux in
                try mux.addModel(m.endpoint("p"), weight: 1, modelName: "p", maxConcurrent: 1)
                try mux.addFallbackModel(m.endpoint("f"), weight: 1, modelName: "f")
                // The reference spins ~1 s on a busy model and then fails; here the busy one is skipped.
                let served = try await withThrowingTaskGroup(of: String.self) { group in
                    for _ in 0..<4 { group.addTask { try await ask(mux).servedBy ?? "?" } }
                    return try await group.reduce(into: [String]()) { $0.append($1) }
                }
                #expect(served.filter { $0 == "p" }.count == 1, "\(served)")
                #expect(served.filter { $0 == "f" }.count == 3, "\(served)")
                #expect(m.counters("p").overshoot == 0)
            }
        }
    }

    @Test func fallbacksAloneServe() async throws {
        try await MockProviders.with([.init("f")]) { m in
            try await Multiplexer.withMultiplexer { mux in
                try mux.addFallbackModel(m.endpoint("f"), weight: 1, modelName: "f")
                #expect(try await ask(mux).servedBy == "f")
            }
        }
    }

    @Test func aRateLimitCoolsTheModelDownForItsRetryAfter() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .rateLimited; $0.retryAfter = 3 }, .init("f")]) { m in
            try await Multiplexer.withMultiplexer(configuration: Self.noTierWait) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                try mux.addFallbackModel(m.endpoint("f"), weight: 1, modelName: "f")
                #expect(try await ask(mux).servedBy == "f")
                let a = try #require(try await mux.fleetStats().providers.first { $0.name == "a" })
                let remaining = try #require(a.cooldownRemaining)
                // Retry-After: 3 — not the reference's fixed 60 s (seconds of slack for a loaded machine).
                #expect(remaining > .milliseconds(1000) && remaining <= .seconds(3), "\(remaining)")
                #expect(a.cooldownReason == .rateLimited)
                // Cooling down: not asked again.
                #expect(try await ask(mux).servedBy == "f")
                #expect(m.counters("a").requests == 1)
                // Back after the cooldown.
                m.set("a", .ok)
                try await Task.sleep(for: .milliseconds(3100))
                #expect(try await ask(mux).servedBy == "a")
                #expect(try await mux.stats()["a"] == SeedStats(success: 1, rateLimited: 1, failed: 0))
            }
        }
    }

    @Test func everyModelRateLimitedIsARateLimitErrorWithRetryAfter() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .rateLimited; $0.retryAfter = 30 }, .init("b") { $0.mode = .rateLimited; $0.retryAfter = 20 }]) { m in
            try await Multiplexer.withMultiplexer(configuration: Self.noTierWait) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                try mux.addFallbackModel(m.endpoint("b"), weight: 1, modelName: "b")
                let first = await multiplexerError { _ = try await ask(mux) }
                #expect(first?.code == .rateLimited)
                #expect(first?.modelName == "b")
                #expect(first?.attempts.map(\.modelName) == ["a", "b"])
                let retryAfter = try #require(first?.retryAfter)
                #expect(retryAfter > .seconds(15) && retryAfter <= .seconds(20))
                #expect(first?.message.contains("'b' at http://127.0.0.1:") == true, "\(first?.message ?? "")")
                #expect(first?.message.contains("None") == false)
                // Everything cooling down before any attempt: fails at once, nothing sent.
                let second = await multiplexerError { _ = try await ask(mux) }
                #expect(second?.code == .allModelsExhausted)
                #expect(second?.attempts.isEmpty == true)
                #expect(second?.retryAfter != nil)
                #expect(m.counters("a").requests + m.counters("b").requests == 2)
            }
        }
    }

    @Test func serverErrorsFailOverAndOpenACooldown() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .error500 }, .init("b")]) { m in
            try await Multiplexer.withMultiplexer { mux in
                try mux.addModel(m.endpoint("a", failureThreshold: 2), weight: 10, modelName: "a")
                try mux.addModel(m.endpoint("b"), weight: 1, modelName: "b")
                for _ in 0..<10 { #expect(try await ask(mux).servedBy == "b") }
                // Two consecutive failures open a's cooldown: it is not asked again.
                #expect(m.counters("a").requests == 2)
                let stats = try await mux.stats()
                #expect(stats["a"] == SeedStats(success: 0, rateLimited: 0, failed: 2))
                #expect(try await mux.fleetStats().providers.first?.cooldownReason == .failures)
            }
        }
    }

    @Test func timeoutsFailOver() async throws {
        try await MockProviders.with([.init("slow") { $0.mode = .hang }, .init("b")]) { m in
            try await Multiplexer.withMultiplexer(configuration: Self.noTierWait) { mux in
                try mux.addModel(m.endpoint("slow", timeouts: .init(connect: .seconds(1), request: .milliseconds(300))), weight: 1, modelName: "slow")
                try mux.addFallbackModel(m.endpoint("b"), weight: 1, modelName: "b")
                #expect(try await ask(mux).servedBy == "b")
                #expect(try await mux.stats()["slow"]?.failed == 1)
            }
        }
    }

    @Test func whenEveryModelFailsTheErrorIsServiceUnavailableWithEveryAttempt() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .error503 }, .init("b") { $0.mode = .error500 }]) { m in
            try await Multiplexer.withMultiplexer(configuration: .init(tierWait: .zero, retriesPerProvider: 0)) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                try mux.addFallbackModel(m.endpoint("b"), weight: 1, modelName: "b")
                let e = await multiplexerError { _ = try await ask(mux) }
                #expect(e?.code == .serviceUnavailable)
                #expect(e?.attempts.map(\.statusCode) == [503, 500])
                #expect(e?.modelName == "b")
            }
        }
    }

    @Test func clientErrorsAreTheirOwnErrorsAndNeverFailOver() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .notFound }, .init("f")]) { m in
            try await Multiplexer.withMultiplexer(configuration: Self.noTierWait) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                try mux.addFallbackModel(m.endpoint("f"), weight: 1, modelName: "f")
                let notFound = await multiplexerError { _ = try await ask(mux) }
                #expect(notFound?.code == .modelNotFound)
                #expect(notFound?.statusCode == 404)
                #expect(notFound?.message.hasPrefix("Model 'a' not found at endpoint http://127.0.0.1:") == true, "\(notFound?.message ?? "")")
                #expect(notFound?.upstreamMessage == "The model upstream-a does not exist")

                m.set("a", .badRequest)
                let bad = await multiplexerError { _ = try await ask(mux) }
                #expect(bad?.code == .invalidRequest)
                #expect(bad?.upstreamMessage == "mock bad request")
                #expect(m.counters("f").requests == 0)
                #expect(try await mux.stats()["a"] == SeedStats(success: 0, rateLimited: 0, failed: 2))

                // Invalid before sending: no quota spent, nothing sent.
                let empty = await multiplexerError { _ = try await mux.chat.completions.create(messages: []) }
                #expect(empty?.code == .invalidRequest)
                #expect(m.counters("a").requests == 2)
            }
        }
    }

    @Test func rejectedCredentialsEverywhereAreAnAuthenticationErrorWithoutTheKey() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .unauthorized }, .init("b") { $0.mode = .unauthorized }]) { m in
            try await Multiplexer.withMultiplexer(configuration: Self.noTierWait) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                try mux.addModel(m.endpoint("b"), weight: 1, modelName: "b")
                let e = await multiplexerError { _ = try await ask(mux) }
                #expect(e?.code == .authentication)
                #expect(e?.attempts.count == 2)
                #expect(e?.message.contains("secret") == false)
                #expect(e?.message.hasPrefix("Authentication failed for model") == true)
            }
        }
    }

    @Test func statsHaveTheReferenceShapeAndCountAttempts() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .rateLimited; $0.retryAfter = 30 }, .init("b"), .init("idle")]) { m in
            try await Multiplexer.withMultiplexer(configuration: Self.noTierWait) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                try mux.addFallbackModel(m.endpoint("b"), weight: 1, modelName: "b")
                try mux.addFallbackModel(m.endpoint("idle"), weight: 1, modelName: "idle", maxConcurrent: 1)
                for _ in 0..<3 { _ = try await ask(mux) }
                let stats = try await mux.stats()
                #expect(Set(stats.keys) == ["a", "b", "idle"])
                #expect(stats["a"] == SeedStats(success: 0, rateLimited: 1, failed: 0))
                let b = try #require(stats["b"]), idle = try #require(stats["idle"])
                #expect(b.success + idle.success == 3)
                let fleet = try await mux.fleetStats()
                #expect(fleet.providers.map(\.name) == mux.modelNames)
                #expect(fleet.models.first?.name == "library")
                #expect(fleet.models.first?.counters.requests == 3)
            }
        }
    }

    @Test func embeddingsAreRouted() async throws {
        try await MockProviders.with([.init("e")]) { m in
            try await Multiplexer.withMultiplexer { mux in
                try mux.addModel(m.endpoint("e"), weight: 1, modelName: "e")
                let r = try await mux.embeddings.create(input: .texts(["one text", "another text"]))
                #expect(r.data.count == 2)
                #expect(r.data[1].index == 1)
                #expect(r.data[0].floats == [0.1, 0.2, 0.3, 0.4])
                #expect(r.servedBy == "e")
                #expect(r.model == "upstream-e")
                #expect(try await mux.fleetStats().providers.first?.usage.promptTokens == r.usage?.promptTokens)
            }
        }
    }
}
