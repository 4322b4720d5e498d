import MultiplexerCore
import MultiplexerUpstream
import Testing

@testable import MultiplexerGateway

/// What an attempt costs needs the provider's reported usage for every operation (ARCHITECTURE §3 step 6):
/// chat chunks, `responses` and Anthropic `messages`, plain and streamed.
struct StreamUsageTests {
    @Test func chatChunksCarryUsageAndAUsageOnlyChunkIsMarked() throws {
        let only = try #require(StreamRelay.usage(in: #"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#))
        #expect(only.usage == TokenUsage(promptTokens: 12, completionTokens: 5) && only.usageOnly)
        let with = try #require(StreamRelay.usage(in: #"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1,"total_tokens":4}}"#))
        #expect(with.usage == TokenUsage(promptTokens: 1, completionTokens: 3) && !with.usageOnly)
        #expect(StreamRelay.usage(in: #"{"choices":[{"delta":{"content":"usage"}}]}"#) == nil)
    }

    @Test func aResponsesStreamReportsItsUsageInResponseCompleted() throws {
        #expect(StreamRelay.usage(in: #"{"type":"response.output_text.delta","delta":"hi usage"}"#) == nil)
        let done = try #require(
            StreamRelay.usage(in: #"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":30,"output_tokens":7,"total_tokens":37}}}"#))
        #expect(done.usage == TokenUsage(promptTokens: 30, completionTokens: 7) && !done.usageOnly)
    }

    @Test func aMessagesStreamTakesInputFromMessageStartAndOutputFromTheLastDelta() throws {
        let start = try #require(
            StreamRelay.usage(in: #"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":25,"output_tokens":1}}}"#))
        #expect(start.usage == TokenUsage(promptTokens: 25, completionTokens: 1) && !start.usageOnly)
        let delta = try #require(StreamRelay.usage(in: #"{"type":"message_delta","delta":{},"usage":{"output_tokens":15}}"#, previous: start.usage))
        #expect(delta.usage == TokenUsage(promptTokens: 25, completionTokens: 15))
        let last = try #require(StreamRelay.usage(in: #"{"type":"message_delta","delta":{},"usage":{"output_tokens":40}}"#, previous: delta.usage))
        #expect(last.usage == TokenUsage(promptTokens: 25, completionTokens: 40))
    }

    @Test func plainResponsesAndMessagesBodiesReportInputAndOutputTokens() {
        let responses = OpenAIResponseInspector.inspectSuccess(
            Array(#"{"id":"r","output":[],"usage":{"input_tokens":11,"output_tokens":4,"total_tokens":15}}"#.utf8), operation: "responses",
            contentType: "application/json")
        #expect(responses.usage == TokenUsage(promptTokens: 11, completionTokens: 4) && responses.invalid == nil)
        let messages = OpenAIResponseInspector.inspectSuccess(
            Array(#"{"id":"m","type":"message","content":[],"usage":{"input_tokens":9,"output_tokens":2}}"#.utf8), operation: "messages",
            contentType: "application/json")
        #expect(messages.usage == TokenUsage(promptTokens: 9, completionTokens: 2))
    }
}
