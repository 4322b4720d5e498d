import Multiplexer
import MultiplexerCore
import Testing

/// The typed request and response models keep unknown members both ways.
struct JSONModelTests {
    @Test func aCompletionKeepsUnknownMembersOnARoundTrip() throws {
        let text = #"""
            {"id":"c1","object":"chat.completion","created":7,"model":"m","system_fingerprint":"fp","service_tier":"flex",
             "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"reasoning_content":"hm",
               "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}}],
             "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}}
            """#
        let c = try ChatCompletion(jsonBytes: Array(text.utf8))
        #expect(c.extra["service_tier"] == .string("flex"))
        #expect(c.choices[0].message.extra["reasoning_content"] == .string("hm"))
        #expect(c.choices[0].message.toolCalls?.first?.function?.arguments == #"{"x":1}"#)
        #expect(c.usage?.extra["prompt_tokens_details"]?["cached_tokens"] == .number(1))
        let again = try ChatCompletion(json: c.json)
        #expect(again == c)
        #expect(c.json["service_tier"] == .string("flex"))
    }

    @Test func aRequestSendsItsExtrasAndModelledFieldsWin() throws {
        var r = ChatCompletionRequest(
            messages: [.system("s"), .user([.text("look"), .image(url: "https://x/cat.png", detail: "low")]), .tool("42", toolCallID: "call_1")],
            temperature: 0.5, maxTokens: 10,
            tools: [.function(name: "f", description: "d", parameters: .object(["type": .string("object")]))], toolChoice: .function("f"),
            responseFormat: .jsonObject)
        r.extra["logit_bias"] = .object(["1": .number(-100)])
        r.extra["temperature"] = .number(2)
        let json = r.json
        #expect(json["logit_bias"]?["1"] == .number(-100))
        #expect(json["temperature"] == .number(0.5))
        #expect(json["messages"]?.arrayValue?[1]["content"]?.arrayValue?[1]["image_url"]?["detail"] == .string("low"))
        #expect(json["messages"]?.arrayValue?[2]["tool_call_id"] == .string("call_1"))
        #expect(json["tool_choice"]?["function"]?["name"] == .string("f"))
        #expect(json["response_format"]?["type"] == .string("json_object"))
        #expect(json["model"] == nil)
        let back = try ChatCompletionRequest(json: json)
        #expect(back.json == json)
    }

    @Test func theTypesWorkWithJSONEncoderAndDecoder() throws {
        let chunk = try ChatCompletionChunk(
            jsonBytes: Array(#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi","x_extra":true}}]}"#.utf8))
        let data = try JSONEncoderShim.encode(chunk)
        let decoded = try JSONEncoderShim.decode(ChatCompletionChunk.self, data)
        #expect(decoded == chunk)
        #expect(decoded.choices[0].delta.extra["x_extra"] == .bool(true))
    }

    @Test func aTwoHundredWithAnErrorBodyIsNotACompletion() {
        #expect(throws: MultiplexerError.self) { try ChatCompletion(jsonBytes: Array(#"{"error":{"message":"boom"}}"#.utf8)) }
        // An empty choices list is a valid (if unusual) completion.
        #expect(throws: Never.self) { try ChatCompletion(jsonBytes: Array(#"{"id":"a","choices":[]}"#.utf8)) }
    }
}
