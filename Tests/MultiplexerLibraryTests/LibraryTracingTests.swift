import InMemoryTracing
import Multiplexer
import MultiplexerCore
import MultiplexerMockProvider
import Testing
import Tracing

/// The library traces with any swift-distributed-tracing tracer (the gateway's swift-otel one, or this in-memory
/// one): a span per call under the caller's span, the admission and each upstream attempt under it
/// (ARCHITECTURE §10), a broken stream's attempt marked `broken_stream`.
@Suite("Library tracing")
struct LibraryTracingTests {
    @Test func aCallIsASpanUnderTheCallersWithItsAdmissionAndAttempts() async throws {
        let tracer = InMemoryTracer()
        try await MockProviders.with([.init("a") { $0.mode = .error500 }, .init("b")]) { m in
            try await Multiplexer.withMultiplexer(configuration: .init(tierWait: .zero), tracer: tracer) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1_000_000, modelName: "a")
                try mux.addFallbackModel(m.endpoint("b"), weight: 1, modelName: "b")
                try await tracer.withSpan("caller") { _ in
                    _ = try await mux.chat.completions.create(messages: [.user("a private question")])
                }
            }
        }
        let spans = tracer.finishedSpans
        let caller = try #require(spans.first { $0.operationName == "caller" })
        let call = try #require(spans.first { $0.operationName == "chat library" }, "\(spans.map(\.operationName))")
        #expect(call.parentSpanID == caller.spanID && call.traceID == caller.traceID)
        #expect(call.attributes["gen_ai.provider.name"]?.toSpanAttribute() == "b")
        let admissions = spans.filter { $0.operationName == "multiplexer.admission" }
        // a fails, is retried once (only the fallback is left), then b serves: three admissions, three attempts.
        #expect(admissions.count == 3 && admissions.allSatisfy { $0.parentSpanID == call.spanID })
        let attempts = spans.filter { $0.kind == .client }
        #expect(attempts.map(\.operationName).sorted() == ["chat upstream-a", "chat upstream-a", "chat upstream-b"])
        #expect(attempts.allSatisfy { $0.parentSpanID == call.spanID && $0.traceID == caller.traceID })
        let failed = try #require(attempts.first { $0.operationName == "chat upstream-a" })
        #expect(failed.attributes["multiplexer.outcome"]?.toSpanAttribute() == "failure")
        #expect(failed.attributes["http.response.status_code"]?.toSpanAttribute() == 500)
        #expect(failed.status?.code == .error)
        let served = try #require(attempts.first { $0.operationName == "chat upstream-b" })
        #expect(served.attributes["multiplexer.outcome"]?.toSpanAttribute() == "success")
        #expect(served.attributes["multiplexer.tier"]?.toSpanAttribute() == "fallback")
        #expect(served.status == nil)
        // The context injected into each upstream request is its attempt span's.
        let injected = tracer.performedContextInjections.map { $0.values[InMemoryTracer.spanIDKey] }
        #expect(Set(injected.compactMap { $0 }) == Set(attempts.map(\.spanID)))
        for s in spans {
            #expect(!"\(s.attributes)".contains("private question"), "no message content in \(s.operationName)")
        }
    }

    @Test func aBrokenStreamsAttemptEndsWhenTheStreamEndsAsBroken() async throws {
        let tracer = InMemoryTracer()
        try await MockProviders.with([.init("a") { $0.mode = .streamCut; $0.breakAfter = 2; $0.streamChunks = 6 }, .init("b")]) { m in
            try await Multiplexer.withMultiplexer(configuration: .init(tierWait: .zero), tracer: tracer) { mux in
                try mux.addModel(m.endpoint("a"), weight: 1_000_000, modelName: "a")
                try mux.addModel(m.endpoint("b"), weight: 1, modelName: "b")
                var text = ""
                for try await chunk in try await mux.chat.completions.stream(messages: [.user("go on")]) {
                    text += chunk.choices.first?.delta.content ?? ""
                }
                #expect(!text.isEmpty)
            }
        }
        let attempts = tracer.finishedSpans.filter { $0.kind == .client }
        let broken = try #require(attempts.first { $0.operationName == "chat upstream-a" }, "\(attempts.map(\.operationName))")
        #expect(broken.attributes["multiplexer.outcome"]?.toSpanAttribute() == "broken_stream")
        #expect(broken.status?.code == .error)
        #expect(broken.attributes["gen_ai.server.time_to_first_token"] != nil)
        let finished = try #require(attempts.first { $0.operationName == "chat upstream-b" })
        #expect(finished.attributes["multiplexer.continued"]?.toSpanAttribute() == true)
        #expect(finished.attributes["multiplexer.outcome"]?.toSpanAttribute() == "success")
        #expect(finished.traceID == broken.traceID, "the continuation is in the call's trace")
    }
}
