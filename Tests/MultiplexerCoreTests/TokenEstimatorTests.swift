import Foundation
import MultiplexerCore
import Testing

struct TokenEstimatorTests {
    static func json(_ s: String) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: Data(s.utf8)) }
    static let provider = Provider(name: "p", baseURL: "x", model: "m", defaultMaxTokens: 1024)

    @Test func chatCountsMessagesWithFraming() throws {
        // 2 messages: 3 priming + 2×4 framing + "You are helpful." (16 chars → 4) + "Hi there" (8 → 2)
        let body = try Self.json(#"{"model":"x","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Hi there"}]}"#)
        let cost = TokenEstimator.cost(of: body, operation: "chat/completions")
        #expect(cost.promptTokens == 3 + 8 + 4 + 2)
        #expect(cost.maxTokens == nil)
        #expect(cost.tokens(on: Self.provider) == 17 + 1024)
    }

    @Test func maxTokensAndChoicesSetTheCompletionBudget() throws {
        let a = TokenEstimator.cost(of: try Self.json(#"{"messages":[],"max_tokens":100,"n":3}"#), operation: "chat/completions")
        #expect(a.maxTokens == 300)
        let b = TokenEstimator.cost(of: try Self.json(#"{"messages":[],"max_completion_tokens":50,"max_tokens":9}"#), operation: "chat/completions")
        #expect(b.maxTokens == 50)
        let c = TokenEstimator.cost(of: try Self.json(#"{"messages":[],"n":2}"#), operation: "chat/completions")
        #expect(c.tokens(on: Self.provider) == 3 + 2048)
    }

    @Test func contentPartsAndToolsCount() throws {
        let body = try Self.json(
            #"{"messages":[{"role":"user","content":[{"type":"text","text":"abcdefgh"},{"type":"image_url","image_url":{"url":"data:"}}]}],"tools":[{"type":"function","function":{"name":"f"}}]}"#
        )
        let cost = TokenEstimator.cost(of: body, operation: "chat/completions")
        #expect(cost.promptTokens > 3 + 4 + 2 + TokenEstimator.tokensPerImage)
    }

    @Test func embeddingsReserveNoCompletion() throws {
        let one = TokenEstimator.cost(of: try Self.json(#"{"input":"12345678"}"#), operation: "embeddings")
        #expect(one.promptTokens == 2 && one.tokens(on: Self.provider) == 2)
        let many = TokenEstimator.cost(of: try Self.json(#"{"input":["1234","12345678",[1,2,3]]}"#), operation: "embeddings")
        #expect(many.promptTokens == 1 + 2 + 3)
    }

    @Test func legacyCompletionsUseThePrompt() throws {
        let c = TokenEstimator.cost(of: try Self.json(#"{"prompt":"abcdabcdabcd","max_tokens":7}"#), operation: "completions")
        #expect(c.promptTokens == 3 && c.tokens(on: Self.provider) == 10)
    }

    @Test func jsonValuesRoundTrip() throws {
        let text = #"{"a":[1,2.5,"x",null,true,{"b":false}]}"#
        let v = try Self.json(text)
        let again = try Self.json(String(decoding: try JSONEncoder().encode(v), as: UTF8.self))
        #expect(v == again)
        #expect(v["a"]?.arrayValue?[0].intValue == 1)
        #expect(v["a"]?.arrayValue?[1].intValue == nil)
    }
}
