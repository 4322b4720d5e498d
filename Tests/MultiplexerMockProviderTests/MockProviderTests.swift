import Foundation
import MultiplexerCore
@testable import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// The mock behaves like a provider: timing, rate-limit headers and 429s per dialect, failure modes, counters.
@Suite("Mock provider", .serialized)
struct MockProviderTests {
    // MARK: Timing

    @Test func aNonStreamAnswersHeadersOnlyAfterTheLatency() async throws {
        try await MockFixture.with({ $0.latency = .milliseconds(400) }) { f in
            let r = try await Curl.run(["-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer}", "-d", Curl.chat(), f.base + "/v1/chat/completions"])
            let parts = r.output.split(separator: " ")
            #expect(parts.first == "200")
            #expect(try #require(Double(parts.last ?? "")) >= 0.39, "headers after the whole answer")
        }
    }

    @Test func aStreamSendsHeadersAtOnceThenTokensThatTrickle() async throws {
        try await MockFixture.with({
            $0.latency = .milliseconds(600)
            $0.tokenInterval = .milliseconds(100)
            $0.streamChunks = 4
        }) { f in
            let r = try await Curl.run(
                ["-N", "-w", "\n%{http_code} %{time_starttransfer} %{time_total}", "-d", Curl.chat(stream: true), f.base + "/v1/chat/completions"])
            let w = r.output.split(separator: "\n").last?.split(separator: " ") ?? []
            #expect(w.first == "200")
            #expect(try #require(Double(w[1])) < 0.4, "headers at once")
            #expect(try #require(Double(w[2])) >= 0.9, "first token after 600 ms, then 3 × 100 ms")
            #expect(r.output.components(separatedBy: "\"content\":\"").count - 1 == 5, "a role delta (empty content), then 4 words")
            #expect(r.output.components(separatedBy: "\"role\":\"assistant\"").count - 1 == 1)
            #expect(r.output.contains(#""content":"tok1""#) && r.output.contains(#""content":" tok4""#))
            #expect(r.output.contains("data: [DONE]"))
        }
    }

    // MARK: Prefill (mid-stream continuation)

    static let prefilled = #"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"tok1 tok2"}]}"#

    @Test func aPrefillIsContinuedAfterItsWords() async throws {
        try await MockFixture.with({ $0.streamChunks = 5 }) { f in
            let r = try await Curl.run(["-N", "-d", Self.prefilled, f.base + "/v1/chat/completions"])
            let words = r.output.components(separatedBy: "\"content\":\"").dropFirst().map { $0.prefix { $0 != "\"" } }
            #expect(words == ["", " tok3", " tok4", " tok5"], "the role delta, then the answer after the prefilled words")
            #expect(f.mock.state.prefills() == ["tok1 tok2"] && f.mock.state.counters.prefilled == 1)
        }
    }

    @Test func aPrefillCanBeRefused() async throws {
        try await MockFixture.with({ $0.acceptsPrefill = false }) { f in
            let r = try await Curl.run(["-w", "\n%{http_code}", "-d", Self.prefilled, f.base + "/v1/chat/completions"])
            #expect(r.output.hasSuffix("\n400") && r.output.contains(#""code":"invalid_prefill""#))
            #expect(f.mock.state.counters.refusedPrefill == 1 && f.mock.state.counters.served == 0)
            // A request without a prefill is served as ever.
            let ok = try await Curl.run(["-w", "\n%{http_code}", "-d", Curl.chat(), f.base + "/v1/chat/completions"])
            #expect(ok.output.hasSuffix("\n200"))
        }
    }

    @Test func tokenIntervalKeepsItsFormerNameChunkDelay() {
        var c = MockProvider.Configuration()
        c.chunkDelay = .milliseconds(7)
        #expect(c.tokenInterval == .milliseconds(7))
    }

    // MARK: Rate-limit headers and 429s

    @Test func openAIHeadersComeFromTheStrictLimits() async throws {
        try await MockFixture.with({
            $0.rpm = 10
            $0.tpm = 1000
        }) { f in
            _ = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            let r = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(r.status == 200)
            #expect(r.headers["x-ratelimit-limit-requests"] == "10")
            #expect(r.headers["x-ratelimit-remaining-requests"] == "8")
            #expect(r.headers["x-ratelimit-limit-tokens"] == "1000")
            // 2 requests of 2 prompt + 8 completion tokens.
            #expect(r.headers["x-ratelimit-remaining-tokens"] == "980")
            let reset = try #require(r.headers["x-ratelimit-reset-requests"])
            #expect(reset.wholeMatch(of: /(59(\.\d+)?s|1m0s)/) != nil, "\(reset)")
        }
    }

    @Test(arguments: [(250, "250ms"), (20_000, "20s"), (90_000, "1m30s"), (1500, "1.5s"), (3_605_000, "1h0m5s"), (0, "0ms")])
    func openAIDurationsLookLikeOpenAIs(_ ms: Int, _ text: String) {
        #expect(MockProvider.Dialect.openAIDuration(.milliseconds(ms)) == text)
    }

    @Test func exhaustedModeAnnouncesNothingLeftOnA200() async throws {
        try await MockFixture.with({
            $0.mode = .exhausted
            $0.retryAfter = 7
        }) { f in
            let r = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(r.status == 200)
            #expect(r.headers["x-ratelimit-remaining-requests"] == "0")
            #expect(r.headers["x-ratelimit-remaining-tokens"] == "0")
            #expect(r.headers["x-ratelimit-reset-requests"] == "7s")
            #expect(r.headers["x-ratelimit-reset-tokens"] == "7s")
            #expect(f.state.counters.served == 1)
        }
    }

    @Test func openAI429() async throws {
        try await MockFixture.with({ $0.rpm = 1 }) { f in
            _ = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            let r = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(r.status == 429)
            #expect(Int(r.headers["retry-after"] ?? "") ?? 0 >= 59)
            #expect(r.headers["x-ratelimit-remaining-requests"] == "0")
            let json = try JSONParser.parse(Array(r.body.utf8)).value
            #expect(json["error"]?["type"]?.stringValue == "rate_limit_error")
            #expect(json["error"]?["code"]?.stringValue == "rate_limit_exceeded")
            #expect(f.state.counters.overshoot == 1)
        }
    }

    @Test func anthropic429AndHeaders() async throws {
        try await MockFixture.with({
            $0.dialect = .anthropic
            $0.rpm = 5
            $0.tpm = 500
        }) { f in
            let ok = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(ok.headers["anthropic-ratelimit-requests-limit"] == "5")
            #expect(ok.headers["anthropic-ratelimit-requests-remaining"] == "4")
            #expect(ok.headers["anthropic-ratelimit-tokens-limit"] == "500")
            let reset = try #require(ok.headers["anthropic-ratelimit-requests-reset"])
            #expect(reset.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/) != nil, "\(reset)")
            #expect(ok.headers["x-ratelimit-limit-requests"] == nil)
            f.state.setMode(.rateLimited, retryAfter: 3)
            let r = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(r.status == 429)
            #expect(r.headers["retry-after"] == "3")
            let json = try JSONParser.parse(Array(r.body.utf8)).value
            #expect(json["type"]?.stringValue == "error")
            #expect(json["error"]?["type"]?.stringValue == "rate_limit_error")
            #expect(json["error"]?["message"]?.stringValue != nil)
        }
    }

    @Test func anthropicOverloadedIs529() async throws {
        try await MockFixture.with({
            $0.dialect = .anthropic
            $0.mode = .overloaded
        }) { f in
            let r = try await Curl.post(f.base + "/v1/messages", Curl.chat())
            #expect(r.status == 529)
            #expect(try JSONParser.parse(Array(r.body.utf8)).value["error"]?["type"]?.stringValue == "overloaded_error")
        }
    }

    @Test func azure429HasMillisecondRetryHeaders() async throws {
        try await MockFixture.with({
            $0.dialect = .azure
            $0.mode = .rateLimited
            $0.retryAfter = 2
        }) { f in
            let r = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(r.status == 429)
            #expect(r.headers["retry-after-ms"] == "2000")
            #expect(r.headers["x-ms-retry-after-ms"] == "2000")
            let json = try JSONParser.parse(Array(r.body.utf8)).value
            #expect(json["error"]?["code"]?.stringValue == "429")
            #expect(json["error"]?["message"]?.stringValue?.hasPrefix("Requests to the ChatCompletions_Create Operation") == true)
        }
    }

    @Test func theDialectAndModeSwitchOverHTTP() async throws {
        try await MockFixture.with { f in
            let r = try await Curl.run(["-d", #"{"mode":"429","retry_after":4,"dialect":"azure"}"#, f.base + "/mock/mode"])
            #expect(r.output.contains(#""dialect":"azure""#))
            #expect(f.state.mode == .rateLimited)
            #expect(f.state.dialect == .azure)
            #expect(try await Curl.post(f.base + "/v1/chat/completions", Curl.chat()).headers["retry-after-ms"] == "4000")
        }
    }

    // MARK: Failure modes

    @Test func commentsOnlySendsKeepAlivesForever() async throws {
        try await MockFixture.with({ $0.mode = .commentsOnly }) { f in
            let r = try await Curl.run(["-N", "--max-time", "0.7", "-d", Curl.chat(stream: true), f.base + "/v1/chat/completions"])
            #expect(r.exitCode == 28, "still going when curl gave up")
            let body = r.output.components(separatedBy: "curl:").first ?? ""
            let comments = body.components(separatedBy: ": keep-alive\n\n")
            #expect(comments.count - 1 >= 3)
            #expect(comments.allSatisfy { $0.isEmpty }, "nothing but comments")
            #expect(await eventually { f.state.counters.inFlight == 0 }, "the stream ended when the client left")
        }
    }

    @Test func blankKeepaliveSendsOnlyBlankLines() async throws {
        try await MockFixture.with({ $0.mode = .blankKeepalive }) { f in
            let r = try await Curl.run(["-N", "--max-time", "0.7", "-d", Curl.chat(stream: true), f.base + "/v1/chat/completions"])
            #expect(r.exitCode == 28)
            let body = r.output.components(separatedBy: "curl:").first ?? ""
            #expect(body.count >= 3)
            #expect(body.allSatisfy { $0 == "\n" })
        }
    }

    @Test func trickleBytesSendsOneByteAtATime() async throws {
        try await MockFixture.with({ $0.mode = .trickleBytes; $0.trickleInterval = .milliseconds(100) }) { f in
            let r = try await Curl.run(["-N", "--max-time", "1", "-d", Curl.chat(stream: true), f.base + "/v1/chat/completions"])
            #expect(r.exitCode == 28)
            let body = r.output.components(separatedBy: "curl:").first ?? ""
            #expect((3...11).contains(body.utf8.count), "\(body.utf8.count) bytes in a second, one each 100 ms")
            #expect("data: {\"id\"".hasPrefix(body) || body.hasPrefix("data: {"))
        }
    }

    @Test func endlessLineNeverSendsANewline() async throws {
        try await MockFixture.with({ $0.mode = .endlessLine }) { f in
            let out = NSTemporaryDirectory() + "endless-\(UUID().uuidString.prefix(6))"
            defer { try? FileManager.default.removeItem(atPath: out) }
            let r = try await Curl.run(["-N", "--max-time", "1", "--limit-rate", "2M", "-o", out, "-d", Curl.chat(stream: true), f.base + "/v1/chat/completions"])
            #expect(r.exitCode == 28)
            let data = try Data(contentsOf: URL(fileURLWithPath: out))
            #expect(data.count > 500_000)
            #expect(data.starts(with: Array("data: xxxx".utf8)))
            #expect(!data.contains(UInt8(ascii: "\n")))
            #expect(await eventually { f.state.counters.inFlight == 0 }, "the writer stopped when the client left")
        }
    }

    @Test func invalidJSON200() async throws {
        try await MockFixture.with({ $0.mode = .invalidJSON200 }) { f in
            let r = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(r.status == 200)
            #expect(r.headers["content-type"] == "application/json")
            #expect(!r.body.isEmpty)
            #expect((try? JSONParser.parse(Array(r.body.utf8))) == nil)
            #expect(f.state.counters.failed == 1 && f.state.counters.served == 0)
        }
    }

    @Test func empty200() async throws {
        try await MockFixture.with({ $0.mode = .empty200 }) { f in
            let r = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(r.status == 200)
            #expect(r.body.isEmpty)
            let s = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat(stream: true))
            #expect(s.status == 200 && s.headers["content-type"] == "text/event-stream" && s.body.isEmpty)
        }
    }

    @Test func noChoices200() async throws {
        try await MockFixture.with({ $0.mode = .noChoices200 }) { f in
            let r = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat())
            #expect(r.status == 200)
            let json = try JSONParser.parse(Array(r.body.utf8)).value
            #expect(json["id"] != nil && json["choices"] == nil)
        }
    }

    @Test(arguments: [(MockProvider.Mode.commentsOnly, " "), (.blankKeepalive, "\n")])
    func keepAliveModesSendBlanksToANonStreamRequest(_ mode: MockProvider.Mode, _ blank: String) async throws {
        try await MockFixture.with({ $0.mode = mode }) { f in
            let r = try await Curl.run(["-i", "-N", "--max-time", "0.7", "-d", Curl.chat(), f.base + "/v1/chat/completions"])
            #expect(r.exitCode == 28)
            let reply = Curl.parse(r.output.components(separatedBy: "curl:").first ?? "")
            #expect(reply.status == 200 && reply.headers["content-type"] == "application/json")
            #expect(reply.body.count >= 3 && reply.body.allSatisfy { String($0) == blank })
        }
    }

    @Test func brokenBodyModesBreakStreamsTheSameWay() async throws {
        try await MockFixture.with({ $0.mode = .invalidJSON200 }) { f in
            let bad = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat(stream: true))
            #expect(bad.status == 200 && bad.headers["content-type"] == "text/event-stream")
            let data = bad.body.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { $0.dropFirst(6) }
            #expect(data.last == "[DONE]")
            #expect(data.dropLast().allSatisfy { (try? JSONParser.parse(Array($0.utf8))) == nil })
            f.state.setMode(.noChoices200, retryAfter: nil)
            let none = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat(stream: true))
            let chunks = none.body.split(separator: "\n").filter { $0.hasPrefix("data: {") }
            #expect(!chunks.isEmpty)
            #expect(chunks.allSatisfy { (try? JSONParser.parse(Array($0.dropFirst(6).utf8)))?.value["choices"] == nil })
            #expect(f.state.counters.failed == 2 && f.state.counters.served == 0)
        }
    }

    @Test func trickleBytesTricklesANonStreamAnswerToo() async throws {
        try await MockFixture.with({ $0.mode = .trickleBytes; $0.trickleInterval = .milliseconds(100) }) { f in
            let r = try await Curl.run(["-N", "--max-time", "0.6", "-d", Curl.chat(), f.base + "/v1/chat/completions"])
            #expect(r.exitCode == 28)
            let body = r.output.components(separatedBy: "curl:").first ?? ""
            #expect(!body.isEmpty && #"{"id":"mock-"#.hasPrefix(body))
        }
    }

    // MARK: Counters and recorded requests

    @Test func maxInFlightCountsEveryRequestAtTheMockAtOnce() async throws {
        try await MockFixture.with({ $0.latency = .milliseconds(800) }) { f in
            let n = 40
            let url = f.base + "/v1/chat/completions"
            let r = try await Curl.run(["-Z", "--parallel-immediate", "--parallel-max", "\(n)", "-o", "/dev/null", "-d", Curl.chat()] + Array(repeating: url, count: n))
            #expect(r.exitCode == 0, "\(r.output)")
            let c = f.state.counters
            #expect(c.requests == n && c.served == n)
            #expect(c.maxInFlight == n)
            #expect(c.inFlight == 0)
            let stats = try await Curl.run([f.base + "/mock/stats"])
            #expect(stats.output.contains("\"max_in_flight\":\(n)"))
        }
    }

    @Test func slowModesCountInFlightUntilTheyEnd() async throws {
        try await MockFixture.with({ $0.mode = .hang }) { f in
            let r = try await Curl.run(["--max-time", "1", "-d", Curl.chat(), f.base + "/v1/chat/completions"])
            #expect(r.exitCode == 28)
            #expect(await eventually { f.state.counters.inFlight == 1 }, "a hung request never ended")
            #expect(f.state.counters.maxInFlight == 1)
        }
    }

    @Test func theHeadersOfRecentRequestsAreRecorded() async throws {
        try await MockFixture.with { f in
            _ = try await Curl.post(f.base + "/v1/chat/completions", Curl.chat(), extra: ["-H", "x-client-trace: abc123", "-H", "authorization: Bearer sk-x"])
            let last = try #require(f.state.recentRequests().last)
            #expect(last.method == "POST" && last.path == "/v1/chat/completions")
            #expect(last["X-Client-Trace"] == "abc123")
            #expect(last["authorization"] == "Bearer sk-x")
            #expect(last["host"] == "127.0.0.1:\(f.port)")
            let json = try await Curl.run([f.base + "/mock/requests"])
            let doc = try JSONParser.parse(Array(json.output.utf8)).value
            let headers = try #require(doc["requests"]?.arrayValue?.last?["headers"]?.arrayValue)
            #expect(headers.contains(.array([.string("x-client-trace"), .string("abc123")])))
        }
    }

    @Test func theRecordedRequestsAreBounded() async throws {
        try await MockFixture.with { f in
            let url = f.base + "/v1/chat/completions"
            let urls = (0..<70).flatMap { i in ["-H", "x-n: \(i)", url, "--next", "-o", "/dev/null", "-d", Curl.chat()] }
            _ = try await Curl.run(["-o", "/dev/null", "-d", Curl.chat()] + urls.dropLast(5))
            let recent = f.state.recentRequests()
            #expect(recent.count == MockProviderState.recentRequestLimit)
            #expect(recent.last?["x-n"] == "69")
            #expect(recent.first?["x-n"] == "6")
        }
    }
}
