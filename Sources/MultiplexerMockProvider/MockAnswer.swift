import MultiplexerCore

/// The text of one answer: the JSON body of a non-stream answer, or the events of a stream.
struct Answer: Sendable {
    var id: String
    var created: Int
    var model: String
    /// `chat/completions`, `completions` or `embeddings`.
    var operation: String
    var usage: TokenUsage
    /// Streams: whether a usage chunk comes before `[DONE]`.
    var wantsUsage: Bool
    /// Embeddings: how many inputs.
    var inputCount: Int

    var modelJSON: String {
        var m = ""
        JSONValue.writeString(self.model, into: &m)
        return m
    }

    var usageJSON: String {
        "{\"prompt_tokens\":\(self.usage.promptTokens),\"completion_tokens\":\(self.usage.completionTokens),\"total_tokens\":\(self.usage.totalTokens)}"
    }

    /// The non-stream body.
    var json: String {
        let text = Array(repeating: "tok", count: self.usage.completionTokens).joined(separator: " ")
        switch self.operation {
        case "embeddings":
            let data = (0..<self.inputCount).map { "{\"object\":\"embedding\",\"index\":\($0),\"embedding\":[0.1,0.2,0.3,0.4]}" }.joined(separator: ",")
            return
                "{\"object\":\"list\",\"data\":[\(data)],\"model\":\(self.modelJSON),\"usage\":{\"prompt_tokens\":\(self.usage.promptTokens),\"total_tokens\":\(self.usage.promptTokens)}}"
        case "completions":
            return
                "{\"id\":\"\(self.id)\",\"object\":\"text_completion\",\"created\":\(self.created),\"model\":\(self.modelJSON),\"choices\":[{\"text\":\"\(text)\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":\(self.usageJSON)}"
        default:
            return
                "{\"id\":\"\(self.id)\",\"object\":\"chat.completion\",\"created\":\(self.created),\"model\":\(self.modelJSON),\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"\(text)\"},\"finish_reason\":\"stop\"}],\"usage\":\(self.usageJSON)}"
        }
    }

    /// A non-stream body of the right shape without `choices` (embeddings: without `data`).
    var jsonWithoutChoices: String {
        switch self.operation {
        case "embeddings": "{\"object\":\"list\",\"model\":\(self.modelJSON),\"usage\":{\"prompt_tokens\":\(self.usage.promptTokens),\"total_tokens\":\(self.usage.promptTokens)}}"
        default: "{\"id\":\"\(self.id)\",\"object\":\"chat.completion\",\"created\":\(self.created),\"model\":\(self.modelJSON),\"usage\":\(self.usageJSON)}"
        }
    }

    private var chunkHead: String {
        "{\"id\":\"\(self.id)\",\"object\":\"chat.completion.chunk\",\"created\":\(self.created),\"model\":\(self.modelJSON)"
    }

    /// A stream's events, each with its blank line: `chunks` content events, the finish event, the usage event if
    /// asked for, and `[DONE]`.
    func events(chunks: Int) -> [String] {
        var out: [String] = []
        for i in 0..<chunks {
            let piece = i == 0 ? "tok" : " tok"
            out.append("data: \(self.chunkHead),\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(piece)\"},\"finish_reason\":null}]}\n\n")
        }
        out.append("data: \(self.chunkHead),\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
        if self.wantsUsage { out.append("data: \(self.chunkHead),\"choices\":[],\"usage\":\(self.usageJSON)}\n\n") }
        out.append("data: [DONE]\n\n")
        return out
    }

    /// `count` chunk events without `choices`.
    func chunksWithoutChoices(_ count: Int) -> [String] {
        Array(repeating: "data: \(self.chunkHead)}\n\n", count: count)
    }
}
