public import MultiplexerCore

/// A provider's answer to a chat completion.
///
/// ``model`` is what the provider said it ran; ``servedBy`` is the registered name of the model entry that
/// served the request (the reference overwrote `model` with that name instead).
public struct ChatCompletion: JSONObjectRepresentable, Hashable {
    /// One generated choice.
    public struct Choice: JSONObjectRepresentable, Hashable {
        /// The choice's position.
        public var index: Int
        /// The generated message.
        public var message: ChatMessage
        /// Why generation stopped: `stop`, `length`, `tool_calls`, `content_filter`, …
        public var finishReason: String?
        /// Log probabilities, if requested.
        public var logprobs: JSONValue?
        /// Members not modelled above.
        public var extra: [String: JSONValue]

        /// - Parameters:
        ///   - index: the position.
        ///   - message: the message.
        ///   - finishReason: why generation stopped.
        ///   - logprobs: log probabilities.
        ///   - extra: further members.
        public init(index: Int, message: ChatMessage, finishReason: String?, logprobs: JSONValue? = nil, extra: [String: JSONValue] = [:]) {
            self.index = index
            self.message = message
            self.finishReason = finishReason
            self.logprobs = logprobs
            self.extra = extra
        }

        /// Decodes a choice.
        ///
        /// - Parameter json: a choice object.
        public init(json: JSONValue) throws(MultiplexerError) {
            var r = try JSONObjectReader(json, context: "choice")
            self.message = try r.object("message", as: ChatMessage.self) ?? ChatMessage(role: .assistant, content: nil)
            let shared = try ChoiceMembers(&r)
            (self.index, self.finishReason, self.logprobs) = (shared.index, shared.finishReason, shared.logprobs)
            self.extra = r.rest
        }

        /// The choice as a JSON object.
        public var json: JSONValue {
            var w = JSONObjectWriter(extra: self.extra)
            ChoiceMembers.write(into: &w, index: self.index, "message", self.message, finishReason: self.finishReason, logprobs: self.logprobs)
            return w.json
        }
    }

    /// The completion's id.
    public var id: String
    /// `chat.completion`.
    public var object: String
    /// Unix time of creation.
    public var created: Int
    /// The model the provider says it ran.
    public var model: String
    /// The choices.
    public var choices: [Choice]
    /// Token usage.
    public var usage: Usage?
    /// The provider's backend fingerprint.
    public var systemFingerprint: String?
    /// Members not modelled above.
    public var extra: [String: JSONValue]
    /// The registered name of the model that served the request (not part of the JSON).
    public var servedBy: String?

    /// - Parameters:
    ///   - id: the completion's id.
    ///   - object: the object type.
    ///   - created: Unix time of creation.
    ///   - model: the model the provider ran.
    ///   - choices: the choices.
    ///   - usage: token usage.
    ///   - systemFingerprint: the backend fingerprint.
    ///   - extra: further members.
    ///   - servedBy: the registered model that served it.
    public init(
        id: String, object: String = "chat.completion", created: Int, model: String, choices: [Choice], usage: Usage? = nil,
        systemFingerprint: String? = nil, extra: [String: JSONValue] = [:], servedBy: String? = nil
    ) {
        self.id = id
        self.object = object
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
        self.systemFingerprint = systemFingerprint
        self.extra = extra
        self.servedBy = servedBy
    }

    /// Decodes a completion (``servedBy`` is `nil`).
    ///
    /// - Parameter json: a chat completion object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "chat.completion")
        if let error = r.value("error") {
            throw MultiplexerError(.invalidResponse, "The provider answered 2xx with an error: \(error["message"]?.stringValue ?? error.jsonText)")
        }
        guard r.rest["choices"] != nil else {
            throw MultiplexerError(.invalidResponse, "The response has no 'choices'.")
        }
        let head = try CompletionHead<Choice>(&r, object: "chat.completion")
        (self.id, self.object, self.created, self.model, self.choices, self.usage) = (head.id, head.object, head.created, head.model, head.choices, head.usage)
        self.systemFingerprint = try r.string("system_fingerprint")
        self.extra = r.rest
        self.servedBy = nil
    }

    /// The completion as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        CompletionHead.write(
            into: &w, id: self.id, object: self.object, created: self.created, model: self.model, choices: self.choices, usage: self.usage)
        w.set("system_fingerprint", self.systemFingerprint)
        return w.json
    }
}

/// Tokens a request used, as the provider reported them.
public struct Usage: JSONObjectRepresentable, Hashable {
    /// Prompt tokens.
    public var promptTokens: Int
    /// Generated tokens (0 for embeddings).
    public var completionTokens: Int
    /// Both.
    public var totalTokens: Int
    /// Members not modelled above (e.g. `prompt_tokens_details`).
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - promptTokens: prompt tokens.
    ///   - completionTokens: generated tokens.
    ///   - totalTokens: both (default: the sum).
    ///   - extra: further members.
    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int? = nil, extra: [String: JSONValue] = [:]) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens ?? promptTokens + completionTokens
        self.extra = extra
    }

    /// Decodes usage.
    ///
    /// - Parameter json: a usage object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "usage")
        self.promptTokens = try r.int("prompt_tokens") ?? 0
        self.completionTokens = try r.int("completion_tokens") ?? 0
        self.totalTokens = try r.int("total_tokens") ?? self.promptTokens + self.completionTokens
        self.extra = r.rest
    }

    /// The usage as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("prompt_tokens", self.promptTokens)
        w.set("completion_tokens", self.completionTokens)
        w.set("total_tokens", self.totalTokens)
        return w.json
    }
}
