import MultiplexerCore
import MultiplexerUpstream
import Testing

/// The continuation state machine without I/O: what it keeps, what it rewrites, when it refuses.
@Suite("Stream continuation state")
struct StreamContinuationStateTests {
    static func chunk(id: String = "c1", created: Int = 100, model: String = "m-a", delta: String, finish: String = "null", extra: String = "") -> SSEEvent {
        SSEEvent(data: #"{"id":"\#(id)","object":"chat.completion.chunk","created":\#(created),"model":"\#(model)","choices":[{"index":0,"delta":\#(delta),"finish_reason":\#(finish)}]\#(extra)}"#)
    }

    static func relayed(_ step: StreamContinuationState.Step) -> JSONValue? {
        guard case .relay(let e, _) = step else { return nil }
        return try? JSONParser.parse(Array(e.data.utf8)).value
    }

    @Test func theFirstAttemptIsRelayedByteForByte() {
        var s = StreamContinuationState(operation: "chat/completions", choices: 1)
        let e = Self.chunk(delta: #"{"role":"assistant","content":""}"#)
        #expect(s.take(e) == .relay(e, usageOnly: false))
        let t = Self.chunk(delta: #"{"content":"Hello"}"#)
        #expect(s.take(t) == .relay(t, usageOnly: false))
        #expect(s.continuable)
    }

    @Test func aContinuationIsRewrittenIntoTheFirstStream() throws {
        var s = StreamContinuationState(operation: "chat/completions", choices: 1)
        _ = s.take(Self.chunk(delta: #"{"role":"assistant","content":""}"#))
        _ = s.take(Self.chunk(delta: #"{"content":"The quick"}"#))
        _ = s.take(Self.chunk(delta: #"{"content":" brown"}"#))
        let charged = s.broke(promptTokens: 20)
        #expect(s.text == "The quick brown")
        #expect(charged == TokenUsage(promptTokens: 20, completionTokens: TokenEstimator.tokens(forCharacters: 15)))
        s.beginContinuation()

        // Its role delta alone is dropped; a role delta that carries text keeps the text.
        #expect(s.take(Self.chunk(id: "c2", created: 200, model: "m-b", delta: #"{"role":"assistant","content":"","refusal":null}"#)) == .drop)
        let first = try #require(Self.relayed(s.take(Self.chunk(id: "c2", created: 200, model: "m-b", delta: #"{"role":"assistant","content":" fox"}"#))))
        #expect(first["id"] == .string("c1") && first["created"]?.intValue == 100 && first["model"] == .string("m-b"))
        #expect(first["choices"]?.arrayValue?.first?["delta"] == .object(["content": .string(" fox")]))
        // A continuation that repeats a word or starts with a space is relayed exactly as it came.
        let again = try #require(Self.relayed(s.take(Self.chunk(id: "c2", delta: #"{"content":" brown fox"}"#))))
        #expect(again["choices"]?.arrayValue?.first?["delta"]?["content"] == .string(" brown fox"))
        #expect(s.text == "The quick brown fox brown fox")
        // The finish chunk stays (an empty delta with a finish reason).
        #expect(Self.relayed(s.take(Self.chunk(id: "c2", delta: "{}", finish: #""stop""#))) != nil)

        // The usage chunk adds up both attempts.
        let usageEvent = SSEEvent(data: #"{"id":"c2","object":"chat.completion.chunk","created":200,"model":"m-b","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":7,"total_tokens":37}}"#)
        guard case .relay(let u, let usageOnly) = s.take(usageEvent) else { Issue.record("usage dropped"); return }
        #expect(usageOnly)
        let usage = try JSONParser.parse(Array(u.data.utf8)).value["usage"]
        let relayedTokens = TokenEstimator.tokens(forCharacters: 15)
        #expect(usage?["prompt_tokens"]?.intValue == 50 && usage?["completion_tokens"]?.intValue == relayedTokens + 7)
        #expect(usage?["total_tokens"]?.intValue == 57 + relayedTokens)
        #expect(s.totalUsage == TokenUsage(promptTokens: 50, completionTokens: relayedTokens + 7))
    }

    @Test func reportedUsageIsChargedInsteadOfTheEstimate() {
        var s = StreamContinuationState(operation: "chat/completions", choices: 1)
        _ = s.take(Self.chunk(delta: #"{"content":"abc"}"#, extra: #","usage":{"prompt_tokens":11,"completion_tokens":1}"#))
        #expect(s.broke(promptTokens: 99) == TokenUsage(promptTokens: 11, completionTokens: 1))
    }

    @Test func toolCallsSecondChoicesAndNAreNotContinuable() {
        var tools = StreamContinuationState(operation: "chat/completions", choices: 1)
        _ = tools.take(Self.chunk(delta: #"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}"#))
        _ = tools.broke(promptTokens: 1)
        #expect(!tools.continuable)

        var second = StreamContinuationState(operation: "chat/completions", choices: 1)
        _ = second.take(SSEEvent(data: #"{"id":"x","choices":[{"index":1,"delta":{"content":"b"}}]}"#))
        _ = second.broke(promptTokens: 1)
        #expect(!second.continuable)

        #expect(!StreamContinuationState(operation: "chat/completions", choices: 2).eligible)
        #expect(!StreamContinuationState(operation: "chat/completions", choices: 1, declaresTools: true).eligible)
        #expect(!StreamContinuationState(operation: "completions", choices: 1).eligible)
        #expect(!StreamContinuationState(operation: "responses", choices: 1).eligible)
    }

    @Test func anInBandErrorIsABreakOnlyWhenTheStreamCanBeContinued() {
        var s = StreamContinuationState(operation: "chat/completions", choices: 1)
        #expect(s.take(SSEEvent(data: #"{"error":{"message":"overloaded"}}"#)) == .error(#"{"error":{"message":"overloaded"}}"#))
        var passthrough = StreamContinuationState(operation: "responses", choices: 1)
        let e = SSEEvent(data: #"{"error":{"message":"x"}}"#)
        #expect(passthrough.take(e) == .relay(e, usageOnly: false))
    }

    @Test func theContinuationBodyAppendsThePrefillAndLowersMaxTokens() throws {
        let body = Array(#"{"model":"up","stream":true,"max_tokens":100,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.7}"#.utf8)
        let out = ContinuationBody.make(from: body, prefill: "Hello \"world\"\n", maxTokens: 96)
        #expect(
            String(decoding: out, as: UTF8.self)
                == #"{"model":"up","stream":true,"max_tokens":96,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"Hello \"world\"\n"}],"temperature":0.7}"#)
        #expect(ContinuationBody.make(from: body, prefill: "", maxTokens: nil) == body, "nothing relayed: the original request")
    }
}
