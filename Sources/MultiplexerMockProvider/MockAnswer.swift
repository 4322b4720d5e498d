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
    /// Words of the answer already given in an assistant prefill: the answer resumes after them.
    var skip = 0

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
        let text = (self.skip..<max(self.skip, self.skip + self.usage.completionTokens)).map { Self.word($0) }.joined()
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

    /// The `i`th word of every answer (0-based), with the space before it: `tok1`, ` tok2`, … — whoever
    /// serves it, so an answer continued on another mock reads the same as one served whole.
    static func word(_ i: Int) -> String {
        i == 0 ? "tok1" : " tok\(i + 1)"
    }

    /// The first event of a stream: the `role` delta, as OpenAI sends it.
    var roleEvent: String {
        "data: \(self.chunkHead),\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    }

    /// The content events of a `chunks`-word answer after the prefilled words, each with its blank line.
    func contentEvents(chunks: Int) -> [String] {
        (min(self.skip, chunks)..<chunks).map { i in
            "data: \(self.chunkHead),\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(Self.word(i))\"},\"finish_reason\":null}]}\n\n"
        }
    }

    /// The end of a stream: the finish event, the usage event if asked for, and `[DONE]`.
    var tailEvents: [String] {
        var out = ["data: \(self.chunkHead),\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"]
        if self.wantsUsage { out.append("data: \(self.chunkHead),\"choices\":[],\"usage\":\(self.usageJSON)}\n\n") }
        out.append("data: [DONE]\n\n")
        return out
    }

    /// A whole stream: the role delta, the content events, the tail.
    func events(chunks: Int) -> [String] {
        [self.roleEvent] + self.contentEvents(chunks: chunks) + self.tailEvents
    }

    /// `count` chunk events without `choices`.
    func chunksWithoutChoices(_ count: Int) -> [String] {
        Array(repeating: "data: \(self.chunkHead)}\n\n", count: count)
    }
}
