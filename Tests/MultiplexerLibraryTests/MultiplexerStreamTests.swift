import Multiplexer
import MultiplexerCore
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// `chat.completions.stream`: chunks in order, usage settled at the end, failover before the first chunk,
/// breaks reported, dropped streams released.
@Suite("Multiplexer streams")
struct MultiplexerStreamTests {
    @Test func chunksArriveInOrderAndUsageIsSettledAtTheEnd() async throws {
        try await MockProviders.with([.init("a") { $0.streamChunks = 5 }]) { m in
            try await Multiplexer.withMultiplexer { mux in
                try mux.addModel(m.endpoint("a", limits: .init(tpm: 100_000)), weight: 1, modelName: "a")
                var text = ""
                var chunks: [ChatCompletionChunk] = []
                for try await chunk in try await mux.chat.completions.stream(messages: [.user("stream me please")]) {
                    chunks.append(chunk)
                    text += chunk.choices.first?.delta.content ?? ""
                }
                #expect(text == "tok1 tok2 tok3 tok4 tok5")
                #expect(chunks.count == 7, "the role delta, five words, the finish")
                #expect(chunks.last?.choices.first?.finishReason == "stop")
                #expect(chunks.allSatisfy { $0.servedBy == "a" && $0.model == "upstream-a" && $0.usage == nil })
                // Settled with the provider's usage (the library always asks for it), and released.
                let a = try #require(try await mux.fleetStats().providers.first)
                #expect(a.usage.success == 1)
                #expect(a.usage.completionTokens == 8)
                #expect(a.usage.promptTokens == m.counters("a").promptTokens)
                #expect(a.window.inFlight == 0)
                // The tokens reserved up front (estimate + 1024 default max_tokens) were settled to the real usage.
                #expect(a.window.tpm == a.usage.promptTokens + a.usage.completionTokens)

                // Asked for, the usage-only final chunk is yielded too.
                var last: ChatCompletionChunk?
                for try await chunk in try await mux.chat.completions.stream(messages: [.user("again")], includeUsage: true) { last = chunk }
                #expect(last?.choices.isEmpty == true)
                #expect(last?.usage?.completionTokens == 8)
            }
        }
    }

    @Test func aStreamFailsOverBeforeItsFirstChunk() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .rateLimited; $0.retryAfter = 30 }, .init("b")]) { m in
            try await Multiplexer.withMultiplexer(configuration: .init(tierWait: .zero)) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                try mux.addFallbackModel(m.endpoint("b"), weight: 1, modelName: "b")
                var servedBy: Set<String> = []
                for try await chunk in try await mux.chat.completions.stream(messages: [.user("hi")]) { servedBy.insert(chunk.servedBy ?? "?") }
                #expect(servedBy == ["b"])
                #expect(try await mux.stats()["a"]?.rateLimited == 1)
            }
        }
    }

    @Test func aBrokenStreamThrowsInsteadOfEndingQuietly() async throws {
        try await MockProviders.with([.init("a") { $0.mode = .streamCut; $0.streamChunks = 6 }]) { m in
            try await Multiplexer.withMultiplexer { mux in
                try mux.addModel(m.endpoint("a"), weight: 1, modelName: "a")
                var received = 0
                let error = await multiplexerError {
                    for try await _ in try await mux.chat.completions.stream(messages: [.user("hi")]) { received += 1 }
                }
                #expect(received > 0)
                #expect(error?.code == .serviceUnavailable)
                #expect(error?.message.contains("broke before it finished") == true, "\(error?.message ?? "")")
                let a = try #require(try await mux.fleetStats().providers.first)
                #expect(a.usage.errors == 1)
                // The broken attempt's slot stays taken for the 1 s release grace, then frees.
                var free = false
                for _ in 0..<30 where !free {
                    free = try await mux.fleetStats().providers.first?.window.inFlight == 0
                    if !free { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(free)
            }
        }
    }

    @Test func aDroppedStreamIsReleased() async throws {
        try await MockProviders.with([.init("a") { $0.streamChunks = 50; $0.chunkDelay = .milliseconds(20) }]) { m in
            try await Multiplexer.withMultiplexer { mux in
                try mux.addModel(m.endpoint("a", limits: .init(maxConcurrent: 1)), weight: 1, modelName: "a")
                do {
                    let stream = try await mux.chat.completions.stream(messages: [.user("hi")])
                    var iterator = stream.makeAsyncIterator()
                    _ = try await iterator.next()
                }
                // The consumer let go after one chunk: the reservation is settled by run(), freeing the slot.
                let released = try await eventually {
                    try await mux.fleetStats().providers.first?.window.inFlight == 0
                }
                #expect(released)
                #expect(try await ask(mux).servedBy == "a")
            }
        }
    }
}
