import Multiplexer
import MultiplexerCore
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// The library's streams continue a broken stream the way the gateway does (one shared implementation,
/// ARCHITECTURE §3 step 7), with their counters in Redis.
@Suite("Library stream continuation")
struct LibraryStreamContinuationTests {
    static let answer = "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8"

    static func spec(_ name: String, _ configure: @escaping @Sendable (inout MockProvider.Configuration) -> Void = { _ in }) -> MockProviders.Spec {
        .init(name) {
            $0.streamChunks = 8
            $0.completionTokens = 8
            configure(&$0)
        }
    }

    @Test(arguments: [false, true])
    func aBrokenStreamIsContinuedOnTheNextModel(_ includeUsage: Bool) async throws {
        let redis = try RedisServer()
        let specs = [Self.spec("a") { $0.mode = .streamCut; $0.breakAfter = 3 }, Self.spec("b") { $0.acceptsPrefill = false }, Self.spec("c")]
        try await MockProviders.with(specs) { m in
            try await Multiplexer.withMultiplexer(
                store: try .redis(url: redis.url, namespace: "libcont\(UInt32.random(in: 0...UInt32.max))", nodeID: "lib-1"),
                configuration: .init(tierWait: .zero)
            ) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1_000_000, modelName: "a")
                try mux.addModel(m.endpoint("b"), weight: 1, modelName: "b")
                try mux.addFallbackModel(m.endpoint("c"), weight: 1, modelName: "c")
                var chunks: [ChatCompletionChunk] = []
                for try await chunk in try await mux.chat.completions.stream(messages: [.user("continue me")], includeUsage: includeUsage) {
                    chunks.append(chunk)
                }
                #expect(chunks.compactMap { $0.choices.first?.delta.content }.joined() == Self.answer)
                #expect(chunks.filter { $0.choices.first?.delta.role != nil }.count == 1, "one role delta")
                #expect(Set(chunks.map(\.id)).count == 1 && Set(chunks.map(\.created)).count == 1, "the first attempt's id and created throughout")
                let servedBy = chunks.compactMap(\.servedBy).reduce(into: [String]()) { r, s in if r.last != s { r.append(s) } }
                #expect(servedBy == ["a", "c"], "b refused the prefill; c continued")
                #expect(m.mocks["b"]!.state.counters.refusedPrefill == 1)
                #expect(m.mocks["c"]!.state.prefills() == ["tok1 tok2 tok3"])
                let usageChunks = chunks.filter { $0.usage != nil }
                if includeUsage {
                    let c = m.counters("c")
                    let u = try #require(usageChunks.first?.usage)
                    #expect(usageChunks.count == 1)
                    #expect(u.completionTokens == TokenEstimator.tokens(forCharacters: "tok1 tok2 tok3".utf8.count) + c.completionTokens)
                    #expect(u.promptTokens > c.promptTokens, "the broken attempt's prompt estimate is added")
                } else {
                    #expect(usageChunks.isEmpty)
                }
                let ok = await eventually {
                    let s = try? await mux.fleetStats()
                    return s?.models.first?.counters.continued == 1 && s?.providers.first { $0.name == "c" }?.usage.success == 1
                }
                #expect(ok, "continued is counted in Redis")
                let s = try await mux.fleetStats()
                let a = try #require(s.providers.first { $0.name == "a" })
                #expect(a.usage.errors == 1 && a.usage.success == 0)
                #expect(s.models.first?.counters.requests == 1)
                #expect(await eventually { (try? await mux.fleetStats())?.providers.allSatisfy { $0.window.inFlight == 0 } == true }, "no lease left")
                for name in ["a", "b", "c"] { #expect(m.counters(name).overshoot == 0) }
            }
        }
    }

    @Test func withNoModelToContinueTheIterationThrows() async throws {
        try await MockProviders.with([Self.spec("a") { $0.mode = .streamCut; $0.breakAfter = 3 }, Self.spec("b") { $0.acceptsPrefill = false }]) { m in
            try await Multiplexer.withMultiplexer(configuration: .init(tierWait: .zero)) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1_000_000, modelName: "a")
                try mux.addFallbackModel(m.endpoint("b"), weight: 1, modelName: "b")
                var text = ""
                await #expect(throws: MultiplexerError.self) {
                    for try await chunk in try await mux.chat.completions.stream(messages: [.user("hi")]) { text += chunk.choices.first?.delta.content ?? "" }
                }
                #expect(text == "tok1 tok2 tok3")
                #expect(m.mocks["b"]!.state.counters.refusedPrefill == 1)
                #expect(try await mux.fleetStats().models.first?.counters.continued == 0)
            }
        }
    }
}
