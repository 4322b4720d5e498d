public import MultiplexerCore

/// Reads the usage a streamed event reports.
public enum StreamUsage {
    /// The usage in a chunk, and whether the chunk carries nothing else (`choices` empty).
    ///
    /// Besides chat and completions chunks (`usage` with `prompt_tokens`), this reads the usage of the
    /// passthrough streams: `responses` (`response.completed`: `response.usage` with `input_tokens` and
    /// `output_tokens`) and Anthropic's `messages` (`message_start`: `message.usage.input_tokens`; each
    /// `message_delta`: `usage.output_tokens`, the running total — merged with `previous`). Those events
    /// are always forwarded (`usageOnly` is false).
    public static func usage(in data: String, previous: TokenUsage? = nil) -> (usage: TokenUsage, usageOnly: Bool)? {
        guard data.contains("\"usage\""), let m = JSONParser.members(["usage", "choices", "type", "response", "message"], in: Array(data.utf8))
        else { return nil }
        switch m["type"]?.stringValue {
        case "response.completed":
            guard let u = m["response"]?["usage"].flatMap(OpenAIResponseInspector.usage(from:)) else { return nil }
            return (u, false)
        case "message_start":
            guard let input = m["message"]?["usage"]?["input_tokens"]?.intValue else { return nil }
            let output = m["message"]?["usage"]?["output_tokens"]?.intValue ?? 0
            return (TokenUsage(promptTokens: input, completionTokens: max(output, previous?.completionTokens ?? 0)), false)
        case "message_delta":
            guard let output = m["usage"]?["output_tokens"]?.intValue else { return nil }
            let input = m["usage"]?["input_tokens"]?.intValue ?? previous?.promptTokens ?? 0
            return (TokenUsage(promptTokens: input, completionTokens: output), false)
        default:
            guard let u = m["usage"].flatMap(OpenAIResponseInspector.usage(from:)) else { return nil }
            return (u, m["choices"]?.arrayValue?.isEmpty ?? true)
        }
    }
}
