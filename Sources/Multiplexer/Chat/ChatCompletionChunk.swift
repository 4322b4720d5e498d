public import MultiplexerCore

/// One event of a streamed chat completion.
///
/// Concatenating the ``Delta/content`` of every chunk's choice gives the answer. The last chunk of a stream
/// asked with `includeUsage: true` has no choices and carries ``usage``.
public struct ChatCompletionChunk: JSONObjectRepresentable, Hashable {
    /// What one choice adds in this chunk.
    public struct Delta: JSONObjectRepresentable, Hashable {
        /// The role, in a choice's first chunk.
        public var role: ChatMessage.Role?
        /// More text.
        public var content: String?
        /// Pieces of tool calls (by ``ToolCall/index``).
        public var toolCalls: [ToolCall]?
        /// More refusal text.
        public var refusal: String?
        /// Members not modelled above (e.g. `reasoning_content`).
        public var extra: [String: JSONValue]

        /// - Parameters:
        ///   - role: the role.
        ///   - content: more text.
        ///   - toolCalls: pieces of tool calls.
        ///   - refusal: more refusal text.
        ///   - extra: further members.
        public init(
            role: ChatMessage.Role? = nil, content: String? = nil, toolCalls: [ToolCall]? = nil, refusal: String? = nil, extra: [String: JSONValue] = [:]
        ) {
            self.role = role
            self.content = content
            self.toolCalls = toolCalls
            self.refusal = refusal
            self.extra = extra
        }

        /// Decodes a delta.
        ///
        /// - Parameter json: a delta object.
        public init(json: JSONValue) throws(MultiplexerError) {
            var r = try JSONObjectReader(json, context: "delta")
            self.role = try r.string("role").map(ChatMessage.Role.init(rawValue:))
            self.content = try r.string("content")
            self.toolCalls = try r.array("tool_calls", of: ToolCall.self)
            self.refusal = try r.string("refusal")
            self.extra = r.rest
        }

        /// The delta as a JSON object.
        public var json: JSONValue {
            var w = JSONObjectWriter(extra: self.extra)
            w.set("role", self.role?.rawValue)
            w.set("content", self.content)
            w.set("tool_calls", self.toolCalls)
            w.set("refusal", self.refusal)
            return w.json
        }
    }

    /// One choice's part of a chunk.
    public struct Choice: JSONObjectRepresentable, Hashable {
        /// The choice's position.
        public var index: Int
        /// What it adds.
        public var delta: Delta
        /// Set in the choice's last chunk.
        public var finishReason: String?
        /// Log probabilities, if requested.
        public var logprobs: JSONValue?
        /// Members not modelled above.
        public var extra: [String: JSONValue]

        /// - Parameters:
        ///   - index: the position.
        ///   - delta: what it adds.
        ///   - finishReason: why generation stopped.
        ///   - logprobs: log probabilities.
        ///   - extra: further members.
        public init(index: Int, delta: Delta, finishReason: String? = nil, logprobs: JSONValue? = nil, extra: [String: JSONValue] = [:]) {
            self.index = index
            self.delta = delta
            self.finishReason = finishReason
            self.logprobs = logprobs
            self.extra = extra
        }

        /// Decodes a chunk choice.
        ///
        /// - Parameter json: a chunk choice object.
        public init(json: JSONValue) throws(MultiplexerError) {
            var r = try JSONObjectReader(json, context: "choice")
            self.delta = try r.object("delta", as: Delta.self) ?? Delta()
            let shared = try ChoiceMembers(&r)
            (self.index, self.finishReason, self.logprobs) = (shared.index, shared.finishReason, shared.logprobs)
            self.extra = r.rest
        }

        /// The chunk choice as a JSON object.
        public var json: JSONValue {
            var w = JSONObjectWriter(extra: self.extra)
            ChoiceMembers.write(into: &w, index: self.index, "delta", self.delta, finishReason: self.finishReason, logprobs: self.logprobs)
            return w.json
        }
    }

    /// The completion's id (the same in every chunk).
    public var id: String
    /// `chat.completion.chunk`.
    public var object: String
    /// Unix time of creation.
    public var created: Int
    /// The model the provider says it runs.
    public var model: String
    /// The choices' parts.
    public var choices: [Choice]
    /// Token usage, in the final chunk of a stream asked with `includeUsage: true`.
    public var usage: Usage?
    /// Members not modelled above.
    public var extra: [String: JSONValue]
    /// The registered name of the model serving the stream (not part of the JSON).
    public var servedBy: String?

    /// - Parameters:
    ///   - id: the completion's id.
    ///   - object: the object type.
    ///   - created: Unix time of creation.
    ///   - model: the model the provider runs.
    ///   - choices: the choices' parts.
    ///   - usage: token usage.
    ///   - extra: further members.
    ///   - servedBy: the registered model serving the stream.
    public init(
        id: String, object: String = "chat.completion.chunk", created: Int, model: String, choices: [Choice], usage: Usage? = nil,
        extra: [String: JSONValue] = [:], servedBy: String? = nil
    ) {
        self.id = id
        self.object = object
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
        self.extra = extra
        self.servedBy = servedBy
    }

    /// Decodes a chunk (``servedBy`` is `nil`).
    ///
    /// - Parameter json: a chunk object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "chat.completion.chunk")
        let head = try CompletionHead<Choice>(&r, object: "chat.completion.chunk")
        (self.id, self.object, self.created, self.model, self.choices, self.usage) = (head.id, head.object, head.created, head.model, head.choices, head.usage)
        self.extra = r.rest
        self.servedBy = nil
    }

    /// The chunk as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        CompletionHead.write(
            into: &w, id: self.id, object: self.object, created: self.created, model: self.model, choices: self.choices, usage: self.usage)
        return w.json
    }
}
