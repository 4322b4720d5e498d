import Foundation
import MultiplexerCore
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import MultiplexerUpstream
import Testing

/// Mid-stream continuation through the gateway (ARCHITECTURE §3 step 7), over Redis: a stream that breaks or
/// stalls after relaying text is finished by the next candidate that accepts a prefill, and the client sees
/// one stream. Every mock answers `tok1 tok2 … tok8` (a continued answer resumes after the prefilled words),
/// so the exact text proves that nothing was lost or repeated.
@Suite("Stream continuation")
struct StreamContinuationTests {
    static let words = 8
    static let answer = (0..<words).map { $0 == 0 ? "tok1" : " tok\($0 + 1)" }.joined()
    static let prompt = "please continue me"

    static func body(usage: Bool = false, extra: String = "") -> String {
        #"{"model":"m","stream":true,"max_tokens":50,"#
            + (usage ? #""stream_options":{"include_usage":true},"# : "")
            + #""messages":[{"role":"user","content":"\#(prompt)"}]\#(extra)}"#
    }

    /// The parsed events of a stream body: each `data:` payload, `[DONE]` as the string.
    struct Events {
        var raw: String
        var data: [String]
        var chunks: [JSONValue] { self.data.compactMap { $0 == "[DONE]" ? nil : (try? JSONParser.parse(Array($0.utf8)))?.value } }
        var text: String { self.chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined() }
        var roles: Int { self.chunks.filter { $0["choices"]?.arrayValue?.first?["delta"]?["role"] != nil }.count }
        var ids: Set<String> { Set(self.chunks.compactMap { $0["id"]?.stringValue }) }
        var created: Set<Int> { Set(self.chunks.compactMap { $0["created"]?.intValue }) }
        var models: [String] { self.chunks.compactMap { $0["model"]?.stringValue } }
        var dones: Int { self.data.filter { $0 == "[DONE]" }.count }
        var usageChunks: [JSONValue] { self.chunks.filter { $0["usage"].map { $0 != .null } ?? false } }
        var errors: [JSONValue] { self.chunks.filter { $0["error"] != nil } }

        init(_ raw: String) {
            self.raw = raw
            self.data = raw.components(separatedBy: "\n\n").compactMap { block in
                let lines = block.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { $0.dropFirst(6) }
                return lines.isEmpty ? nil : lines.joined(separator: "\n")
            }
        }
    }

    static func stream(_ f: GatewayFixture, body: String = Self.body()) async throws -> (status: Int, events: Events) {
        let r = try await f.request("/v1/chat/completions", body: body, timeout: .seconds(20))
        return (r.status, Events(r.text))
    }

    /// The group's counters in Redis.
    static func model(_ f: GatewayFixture) async throws -> ModelCounters {
        @Sendable func read() async throws -> ModelCounters? {
            try await f.gateway.store.stats(StatsQuery(providers: [], keys: [], models: ["m"])).models.first?.counters
        }
        // The request is counted with its last settlement, which the store's drain loop may write a moment later.
        _ = try await GatewayFixture.eventually { try await read()?.requests == 1 }
        return try #require(try await read())
    }

    /// The audit every test ends with: no strict mock over its limit, Redis's success and token counters equal
    /// what each mock served, and no lease left.
    static func audit(_ f: GatewayFixture) async throws {
        // Successes are written by the store's drain loop a moment after their streams end.
        for (name, mock) in f.mocks {
            _ = try await GatewayFixture.eventually { try await f.stats(name).usage.success == mock.state.counters.served }
        }
        for (name, mock) in f.mocks {
            let c = mock.state.counters
            #expect(c.overshoot == 0, "\(name) was pushed over its limit")
            let s = try await f.stats(name)
            #expect(s.usage.success == c.served, "\(name): Redis counts \(s.usage.success) successes, the mock served \(c.served)")
            #expect(s.usage.promptTokens == c.promptTokens && s.usage.completionTokens == c.completionTokens, "\(name): tokens in Redis equal the mock's")
        }
        for name in f.mocks.keys {
            #expect(try await GatewayFixture.eventually(timeout: .seconds(4)) { try await f.stats(name).window.inFlight == 0 }, "\(name) holds no lease")
        }
    }

    static func yaml(
        _ redis: RedisServer, primary: [(String, Int)], fallback: [(String, Int)] = [], providerExtra: [String: String] = [:]
    ) -> @Sendable ([String: Int]) -> String {
        let ns = "cont\(UInt32.random(in: 0...UInt32.max))"
        let url = redis.url
        return { ports in
            gatewayYAML(ports, primary: primary, fallback: fallback, providerExtra: providerExtra, top: "redis: { url: \"\(url)\", namespace: \(ns) }\n")
        }
    }

    static func mock(_ name: String, _ configure: @escaping @Sendable (inout MockProvider.Configuration) -> Void = { _ in }) -> GatewayFixture.MockSpec {
        GatewayFixture.MockSpec(name) {
            $0.streamChunks = Self.words
            $0.completionTokens = Self.words
            configure(&$0)
        }
    }

    /// The stream is one answer: the exact text, one role delta, the first attempt's id and created throughout, one [DONE].
    static func expectSeamless(_ e: Events, models: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(e.text == Self.answer, "the whole answer, nothing lost or repeated: \(e.raw)", sourceLocation: sourceLocation)
        #expect(e.roles == 1, "one role delta", sourceLocation: sourceLocation)
        #expect(e.ids.count == 1 && e.created.count == 1, "one id and created: \(e.ids) \(e.created)", sourceLocation: sourceLocation)
        #expect(e.dones == 1 && e.data.last == "[DONE]", "one [DONE], at the end", sourceLocation: sourceLocation)
        #expect(e.errors.isEmpty, sourceLocation: sourceLocation)
        let runs = e.models.reduce(into: [String]()) { r, m in if r.last != m { r.append(m) } }
        #expect(runs == models, "each chunk's model as its provider sent it: \(e.models)", sourceLocation: sourceLocation)
    }

    @Test(arguments: [1, 3, 7])
    func aStreamCutAfterKEventsIsFinishedByTheNextProvider(_ k: Int) async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = k }, Self.mock("b")]
        try await GatewayFixture.with(mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1)], fallback: [("b", 1)])) { f in
            let (status, e) = try await Self.stream(f)
            #expect(status == 200)
            Self.expectSeamless(e, models: ["upstream-a", "upstream-b"])
            let relayed = (0..<k).map { $0 == 0 ? "tok1" : " tok\($0 + 1)" }.joined()
            #expect(f.mocks["b"]!.state.prefills() == [relayed], "the continuation carried exactly the text relayed")
            #expect(try await f.stats("a").usage.errors == 1)
            let m = try await Self.model(f)
            #expect(m.requests == 1 && m.continued == 1 && m.fallbacks == 1)
            let metrics = try await f.request("/metrics", method: "GET").text
            #expect(metrics.contains(#"multiplexer_stream_continuations_total{model="m",outcome="completed"} 1"#))
            try await Self.audit(f)
        }
    }

    @Test func aStalledStreamIsFinishedByTheNextProvider() async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamStall; $0.breakAfter = 4 }, Self.mock("b")]
        try await GatewayFixture.with(
            mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1)], fallback: [("b", 1)], providerExtra: ["a": "stream_idle_timeout_seconds: 0.5"])
        ) { f in
            let (status, e) = try await Self.stream(f)
            #expect(status == 200)
            Self.expectSeamless(e, models: ["upstream-a", "upstream-b"])
            #expect(f.mocks["b"]!.state.prefills() == ["tok1 tok2 tok3 tok4"])
            #expect(try await Self.model(f).continued == 1)
            try await Self.audit(f)
        }
    }

    @Test func aContinuationThatBreaksTooIsContinuedAgain() async throws {
        let redis = try RedisServer()
        let specs = [
            Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = 2 },
            Self.mock("b") { $0.mode = .streamCut; $0.breakAfter = 3 },
            Self.mock("c"),
        ]
        try await GatewayFixture.with(mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1)], fallback: [("b", 1_000_000), ("c", 1)])) { f in
            let (status, e) = try await Self.stream(f)
            #expect(status == 200)
            Self.expectSeamless(e, models: ["upstream-a", "upstream-b", "upstream-c"])
            #expect(f.mocks["b"]!.state.prefills() == ["tok1 tok2"])
            #expect(f.mocks["c"]!.state.prefills() == ["tok1 tok2 tok3 tok4 tok5"])
            #expect(try await f.stats("a").usage.errors == 1)
            #expect(try await f.stats("b").usage.errors == 1)
            let m = try await Self.model(f)
            #expect(m.requests == 1 && m.continued == 1)
            try await Self.audit(f)
        }
    }

    @Test func aProviderThatRefusesThePrefillIsSkipped() async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = 3 }, Self.mock("b") { $0.acceptsPrefill = false }, Self.mock("c")]
        try await GatewayFixture.with(mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1_000_000), ("b", 1)], fallback: [("c", 1)])) { f in
            let (status, e) = try await Self.stream(f)
            #expect(status == 200)
            Self.expectSeamless(e, models: ["upstream-a", "upstream-c"])
            #expect(f.mocks["b"]!.state.counters.refusedPrefill == 1, "the primary was asked first (tier discipline) and refused")
            #expect(f.mocks["c"]!.state.prefills() == ["tok1 tok2 tok3"])
            #expect(try await Self.model(f).continued == 1)
            try await Self.audit(f)
        }
    }

    @Test func whenNoProviderCanContinueTheStreamEndsWithAnError() async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = 3 }, Self.mock("b") { $0.acceptsPrefill = false }, Self.mock("c")]
        try await GatewayFixture.with(
            mocks: specs,
            yaml: Self.yaml(redis, primary: [("a", 1_000_000), ("b", 1)], fallback: [("c", 1)], providerExtra: ["c": "supports_prefill: false"])
        ) { f in
            let (status, e) = try await Self.stream(f)
            #expect(status == 200)
            #expect(e.text == "tok1 tok2 tok3")
            #expect(e.dones == 0, "never presented as complete")
            #expect(e.errors.count == 1 && e.errors.first?["error"]?["code"]?.stringValue == "upstream_stream_error")
            #expect(e.data.last.map { $0.contains("upstream_stream_error") } == true, "the error is the last event")
            #expect(f.mocks["b"]!.state.counters.refusedPrefill == 1)
            #expect(f.mocks["c"]!.state.counters.requests == 0, "a provider without supports_prefill is not asked")
            let m = try await Self.model(f)
            #expect(m.requests == 1 && m.continued == 0)
            let metrics = try await f.request("/metrics", method: "GET").text
            #expect(metrics.contains(#"multiplexer_stream_continuations_total{model="m",outcome="failed"} 1"#))
            try await Self.audit(f)
        }
    }

    @Test func theUsageChunkAddsUpBothAttempts() async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = 3 }, Self.mock("b")]
        let limits = "limits: { tpm: 100000 }"
        try await GatewayFixture.with(
            mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1)], fallback: [("b", 1)], providerExtra: ["a": limits, "b": limits])
        ) { f in
            let (status, e) = try await Self.stream(f, body: Self.body(usage: true))
            #expect(status == 200)
            Self.expectSeamless(e, models: ["upstream-a", "upstream-b"])
            try #require(e.usageChunks.count == 1, "one usage chunk: \(e.raw)")
            let usage = e.usageChunks[0]["usage"]!
            #expect(e.usageChunks[0]["choices"]?.arrayValue?.isEmpty == true && e.data.suffix(2).first == e.data.first { $0.contains("\"usage\":{") })
            // The broken attempt is charged its estimate: the gateway's prompt estimate and the relayed text's.
            let promptEstimate = TokenEstimator.cost(of: try JSONParser.parse(Array(Self.body(usage: true).utf8)).value, operation: "chat/completions").promptTokens
            let relayedEstimate = TokenEstimator.tokens(forCharacters: "tok1 tok2 tok3".utf8.count)
            let b = f.mocks["b"]!.state.counters
            #expect(b.completionTokens == Self.words - 3, "the continuation generated the rest")
            #expect(usage["prompt_tokens"]?.intValue == promptEstimate + b.promptTokens)
            #expect(usage["completion_tokens"]?.intValue == relayedEstimate + b.completionTokens)
            #expect(usage["total_tokens"]?.intValue == promptEstimate + relayedEstimate + b.promptTokens + b.completionTokens)
            // Redis keeps exactly that for the broken attempt (not its whole reservation) and the reported usage for the continuation.
            _ = try await GatewayFixture.eventually { try await f.stats("b").usage.success == 1 }
            let (aTPM, bTPM) = (try await f.stats("a").window.tpm, try await f.stats("b").window.tpm)
            #expect(aTPM == promptEstimate + relayedEstimate, "a: \(aTPM) vs \(promptEstimate) + \(relayedEstimate)")
            #expect(bTPM == b.promptTokens + b.completionTokens, "b: \(bTPM) vs \(b.promptTokens) + \(b.completionTokens)")
            try await Self.audit(f)
        }
    }

    @Test func withoutUsageAskedNoUsageChunkIsShown() async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = 2 }, Self.mock("b")]
        try await GatewayFixture.with(mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1)], fallback: [("b", 1)])) { f in
            let (_, e) = try await Self.stream(f)
            Self.expectSeamless(e, models: ["upstream-a", "upstream-b"])
            #expect(e.usageChunks.isEmpty && !e.raw.contains("\"usage\""))
            // (A success's settlement is written by the store's drain loop, a moment after the stream ends.)
            #expect(
                try await GatewayFixture.eventually { try await f.stats("b").usage.completionTokens == Self.words - 2 },
                "the usage the gateway asked for was settled")
            try await Self.audit(f)
        }
    }

    @Test func aRequestWithToolsIsNotContinued() async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = 3 }, Self.mock("b")]
        try await GatewayFixture.with(mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1)], fallback: [("b", 1)])) { f in
            let tools = #","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{}}}}]"#
            let (_, e) = try await Self.stream(f, body: Self.body(extra: tools))
            #expect(e.text == "tok1 tok2 tok3")
            #expect(e.dones == 0 && e.errors.first?["error"]?["code"]?.stringValue == "upstream_stream_error")
            #expect(f.mocks["b"]!.state.counters.requests == 0)
            #expect(try await Self.model(f).continued == 0)
            try await Self.audit(f)
        }
    }

    @Test func nGreaterThanOneIsNotContinued() async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = 3 }, Self.mock("b")]
        try await GatewayFixture.with(mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1)], fallback: [("b", 1)])) { f in
            let (_, e) = try await Self.stream(f, body: Self.body(extra: #","n":2"#))
            #expect(e.dones == 0 && e.errors.count == 1)
            #expect(f.mocks["b"]!.state.counters.requests == 0)
            try await Self.audit(f)
        }
    }

    @Test func theContinuationRequestIsTheOriginalPlusTheRelayedText() async throws {
        let redis = try RedisServer()
        let specs = [Self.mock("a") { $0.mode = .streamCut; $0.breakAfter = 2 }, Self.mock("b")]
        try await GatewayFixture.with(mocks: specs, yaml: Self.yaml(redis, primary: [("a", 1)], fallback: [("b", 1)])) { f in
            _ = try await Self.stream(f, body: Self.body(extra: #","temperature":0.25,"user":"u-1""#))
            let sent = try #require(f.mocks["b"]!.state.recentBodies().last)
            let v = try JSONParser.parse(Array(sent.utf8)).value
            let messages = try #require(v["messages"]?.arrayValue)
            #expect(messages.count == 2)
            #expect(messages[0] == .object(["role": .string("user"), "content": .string(Self.prompt)]))
            #expect(messages[1] == .object(["role": .string("assistant"), "content": .string("tok1 tok2")]))
            #expect(v["model"] == .string("upstream-b") && v["temperature"] == .number(0.25) && v["user"] == .string("u-1") && v["stream"] == .bool(true))
            #expect(v["max_tokens"]?.intValue == 50 - TokenEstimator.tokens(forCharacters: "tok1 tok2".utf8.count), "the relayed tokens come off max_tokens")
        }
    }
}
