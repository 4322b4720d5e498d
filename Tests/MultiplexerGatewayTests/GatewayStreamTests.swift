import Foundation
import MultiplexerCore
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerUpstream
import Prometheus
import Synchronization
import Testing

@Suite("Gateway streams")
struct GatewayStreamTests {
    static let body = #"{"model":"m","stream":true,"messages":[{"role":"user","content":"stream please"}]}"#

    /// Opens a stream through the gateway.
    static func open(_ f: GatewayFixture, body: String = Self.body) async throws -> UpstreamStreamingResponse {
        try await f.client.stream(
            UpstreamHTTPRequest(
                method: "POST", url: f.base + "/v1/chat/completions", headers: ["content-type": "application/json"], body: Array(body.utf8),
                timeouts: .init(connect: .seconds(2), response: .seconds(10))))
    }

    /// Reads a whole stream: its text and when each chunk arrived.
    static func drain(_ r: UpstreamStreamingResponse) async -> (text: String, arrivals: [ContinuousClock.Instant], error: UpstreamError?) {
        var text = "", arrivals: [ContinuousClock.Instant] = []
        do {
            for try await chunk in r.body {
                arrivals.append(.now)
                text += String(decoding: chunk, as: UTF8.self)
            }
            return (text, arrivals, nil)
        } catch {
            return (text, arrivals, error)
        }
    }

    @Test func eventsAreRelayedAsTheyArrive() async throws {
        let specs = [GatewayFixture.MockSpec("a") { $0.streamChunks = 8; $0.chunkDelay = .milliseconds(120) }]
        try await GatewayFixture.with(mocks: specs, yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            let r = try await Self.open(f)
            #expect(r.status == 200 && r.headers["content-type"] == "text/event-stream" && r.headers["x-multiplexer-provider"] == "a")
            let (text, arrivals, error) = await Self.drain(r)
            #expect(error == nil)
            #expect(text.hasSuffix("data: [DONE]\n\n"))
            #expect(text.components(separatedBy: "chat.completion.chunk").count - 1 == 10, "the role delta, 8 words, the finish")
            #expect(!text.contains("\"usage\""), "the usage chunk the gateway asked for is not shown to a client that did not")
            // 8 events 120 ms apart: the first reached the client long before the last was produced.
            #expect(arrivals.count > 3)
            #expect(arrivals.first!.duration(to: arrivals.last!) > .milliseconds(500))
            let s = try await f.stats("a")
            #expect(s.usage.success == 1 && s.usage.completionTokens == 8 && s.window.inFlight == 0, "settled with the stream's real usage")
        }
    }

    @Test func aClientThatAsksForUsageGetsIt() async throws {
        try await GatewayFixture.with(mocks: [GatewayFixture.MockSpec("a")], yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            let body = #"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#
            let (text, _, _) = await Self.drain(try await Self.open(f, body: body))
            #expect(text.contains(#""usage":{"prompt_tokens":0,"completion_tokens":8"#))
        }
    }

    @Test func failuresBeforeTheFirstByteFailOver() async throws {
        let specs = [
            GatewayFixture.MockSpec("a") { $0.mode = .error500 },
            GatewayFixture.MockSpec("b") { $0.mode = .streamStall; $0.streamChunks = 1 },  // headers, then silence: TTFT
            GatewayFixture.MockSpec("c"),
        ]
        try await GatewayFixture.with(
            mocks: specs,
            yaml: { gatewayYAML($0, primary: [("a", 1_000_000), ("b", 1000)], fallback: [("c", 1)], providerExtra: ["b": "ttft_timeout_seconds: 0.4"], groupExtra: "retries_per_provider: 0") }
        ) { f in
            let r = try await Self.open(f)
            #expect(r.status == 200 && r.headers["x-multiplexer-provider"] == "c" && r.headers["x-multiplexer-attempts"] == "3")
            let (text, _, error) = await Self.drain(r)
            #expect(error == nil && text.hasSuffix("data: [DONE]\n\n"))
            #expect(try await f.stats("b").usage.errors == 1, "the silent provider counted a failure")
        }
    }

    @Test(arguments: [MockProvider.Mode.streamCut, .streamStall])
    func aStreamThatBreaksAfterBytesEndsWithAnErrorAndNoDone(_ mode: MockProvider.Mode) async throws {
        let specs = [GatewayFixture.MockSpec("a") { $0.mode = mode; $0.streamChunks = 6 }]
        try await GatewayFixture.with(
            mocks: specs, yaml: { gatewayYAML($0, primary: [("a", 1)], providerExtra: ["a": "stream_idle_timeout_seconds: 0.5"]) }
        ) { f in
            let r = try await Self.open(f)
            #expect(r.status == 200)
            let (text, _, _) = await Self.drain(r)
            #expect(text.contains("chat.completion.chunk"), "some events were relayed")
            #expect(text.contains(#"data: {"error":{"message":"The provider's stream broke"#))
            #expect(!text.contains("[DONE]"), "a broken stream is never presented as complete")
            let s = try await f.stats("a")
            #expect(s.usage.errors == 1 && s.usage.success == 0)
            // The broken stream's slot stays taken for the 1 s release grace.
            #expect(try await GatewayFixture.eventually(timeout: .seconds(3)) { try await f.stats("a").window.inFlight == 0 })
        }
    }

    @Test func aClientThatGoesAwayCancelsTheUpstream() async throws {
        let specs = [GatewayFixture.MockSpec("a") { $0.streamChunks = 200; $0.chunkDelay = .milliseconds(50) }]
        try await GatewayFixture.with(mocks: specs, yaml: { gatewayYAML($0, primary: [("a", 1)], providerExtra: ["a": "limits: { max_concurrent: 5 }"]) }) { f in
            let mock = f.mocks["a"]!.state
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let r = try await Self.open(f)
                    for try await _ in r.body { break }  // read one chunk, then hang up
                    try await Task.sleep(for: .seconds(30))
                }
                #expect(await GatewayFixture.eventually { mock.counters.inFlight == 1 })
                try await Task.sleep(for: .milliseconds(300))
                group.cancelAll()
            }
            // 200 × 50 ms = 10 s of stream: ending within a couple of seconds means the cancel went through.
            #expect(await GatewayFixture.eventually(timeout: .seconds(3)) { mock.counters.inFlight == 0 }, "the upstream transfer was aborted")
            #expect(await GatewayFixture.eventually(timeout: .seconds(3)) { (try? await f.stats("a").window.inFlight) == 0 }, "the reservation was settled")
            #expect(mock.counters.served == 0)
        }
    }

    /// The client hangs up while the gateway still waits for the provider's first event: the gateway's
    /// response never starts, and the reservation (in-flight slot) is released at once, not by lease expiry.
    @Test func aClientThatLeavesBeforeTheStreamStartsReleasesItsSlot() async throws {
        let specs = [GatewayFixture.MockSpec("a") { $0.latency = .milliseconds(600) }]
        try await GatewayFixture.with(mocks: specs, yaml: { gatewayYAML($0, primary: [("a", 1)], providerExtra: ["a": "limits: { max_concurrent: 5 }"]) }) { f in
            let mock = f.mocks["a"]!.state
            let caller = Task { _ = try? await Self.open(f) }
            #expect(await GatewayFixture.eventually { (try? await f.stats("a").window.inFlight) == 1 })
            caller.cancel()  // closes the connection before any response byte
            await caller.value
            // The provider answers 600 ms after the request; the gateway then finds its client gone.
            #expect(await GatewayFixture.eventually(timeout: .seconds(4)) { mock.counters.inFlight == 0 && mock.counters.requests == 1 })
            #expect(
                await GatewayFixture.eventually(timeout: .seconds(4)) { (try? await f.stats("a").window.inFlight) == 0 },
                "the in-flight slot came back (the lease is 180 s)")
            var text: [UInt8] = []
            f.gateway.metrics.registry.emit(into: &text)
            #expect(String(decoding: text, as: UTF8.self).contains("multiplexer_inflight_requests 0.0"), "the in-flight gauge came back")
        }
    }
}
