public import MultiplexerCore

/// The parameters of a chat completion.
///
/// There is no `model`: the multiplexer picks a registered model and sends its upstream id. Anything not
/// modelled here goes in ``extra`` and is sent as given (e.g. `"logit_bias"`, `"reasoning_effort"`, or a
/// provider's own parameters).
///
/// ```swift
/// var request = ChatCompletionRequest(messages: [.user("Name three rivers.")])
/// request.temperature = 0.2
/// request.maxTokens = 100
/// request.extra["top_k"] = .number(40)
/// ```
public struct ChatCompletionRequest: JSONObjectRepresentable, Hashable {
    /// The conversation so far.
    public var messages: [ChatMessage]
    /// Sampling temperature.
    public var temperature: Double?
    /// Nucleus sampling.
    public var topP: Double?
    /// Most tokens to generate (`max_tokens`).
    public var maxTokens: Int?
    /// Most tokens to generate, reasoning included (`max_completion_tokens`).
    public var maxCompletionTokens: Int?
    /// Choices to generate.
    public var n: Int?
    /// Sequences that end generation.
    public var stop: [String]?
    /// Presence penalty.
    public var presencePenalty: Double?
    /// Frequency penalty.
    public var frequencyPenalty: Double?
    /// Sampling seed.
    public var seed: Int?
    /// An end-user id, for the provider's abuse monitoring.
    public var user: String?
    /// Tools the model may call.
    public var tools: [Tool]?
    /// Which tool it must call.
    public var toolChoice: ToolChoice?
    /// Whether it may call several tools at once.
    public var parallelToolCalls: Bool?
    /// The answer's format.
    public var responseFormat: ResponseFormat?
    /// Members not modelled above, sent as given.
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - messages: the conversation.
    ///   - temperature: sampling temperature.
    ///   - topP: nucleus sampling.
    ///   - maxTokens: most tokens to generate.
    ///   - maxCompletionTokens: most tokens to generate, reasoning included.
    ///   - n: choices to generate.
    ///   - stop: stop sequences.
    ///   - presencePenalty: presence penalty.
    ///   - frequencyPenalty: frequency penalty.
    ///   - seed: sampling seed.
    ///   - user: an end-user id.
    ///   - tools: tools the model may call.
    ///   - toolChoice: which tool it must call.
    ///   - parallelToolCalls: several tool calls at once.
    ///   - responseFormat: the answer's format.
    ///   - extra: further members.
    public init(
        messages: [ChatMessage],
        temperature: Double? = nil,
        topP: Double? = nil,
        maxTokens: Int? = nil,
        maxCompletionTokens: Int? = nil,
        n: Int? = nil,
        stop: [String]? = nil,
        presencePenalty: Double? = nil,
        frequencyPenalty: Double? = nil,
        seed: Int? = nil,
        user: String? = nil,
        tools: [Tool]? = nil,
        toolChoice: ToolChoice? = nil,
        parallelToolCalls: Bool? = nil,
        responseFormat: ResponseFormat? = nil,
        extra: [String: JSONValue] = [:]
    ) {
        self.messages = messages
        self.temperature = temperature
        self.topP = topP
        self.maxTokens = maxTokens
        self.maxCompletionTokens = maxCompletionTokens
        self.n = n
        self.stop = stop
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.seed = seed
        self.user = user
        self.tools = tools
        self.toolChoice = toolChoice
        self.parallelToolCalls = parallelToolCalls
        self.responseFormat = responseFormat
        self.extra = extra
    }

    /// Decodes a request body (its `model` and `stream` members, if any, stay in ``extra`` and are replaced
    /// when sending).
    ///
    /// - Parameter json: a chat completion request object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "request")
        self.messages = try r.array("messages", of: ChatMessage.self) ?? []
        self.temperature = try r.double("temperature")
        self.topP = try r.double("top_p")
        self.maxTokens = try r.int("max_tokens")
        self.maxCompletionTokens = try r.int("max_completion_tokens")
        self.n = try r.int("n")
        switch r.value("stop") {
        case nil: self.stop = nil
        case .string(let s)?: self.stop = [s]
        case .array(let items)?: self.stop = items.compactMap(\.stringValue)
        case _?: throw MultiplexerError(.invalidResponse, "'request.stop' must be a string or an array of strings.")
        }
        self.presencePenalty = try r.double("presence_penalty")
        self.frequencyPenalty = try r.double("frequency_penalty")
        self.seed = try r.int("seed")
        self.user = try r.string("user")
        self.tools = try r.array("tools", of: Tool.self)
        self.toolChoice = r.value("tool_choice").map(ToolChoice.init(json:))
        self.parallelToolCalls = try r.bool("parallel_tool_calls")
        self.responseFormat = try r.object("response_format", as: ResponseFormat.self)
        self.extra = r.rest
    }

    /// The request body (without `model`, which the multiplexer sets per provider).
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("messages", self.messages)
        w.set("temperature", self.temperature)
        w.set("top_p", self.topP)
        w.set("max_tokens", self.maxTokens)
        w.set("max_completion_tokens", self.maxCompletionTokens)
        w.set("n", self.n)
        w.set("stop", self.stop.map { JSONValue.array($0.map(JSONValue.string)) })
        w.set("presence_penalty", self.presencePenalty)
        w.set("frequency_penalty", self.frequencyPenalty)
        w.set("seed", self.seed)
        w.set("user", self.user)
        w.set("tools", self.tools)
        w.set("tool_choice", self.toolChoice?.json)
        w.set("parallel_tool_calls", self.parallelToolCalls)
        w.set("response_format", self.responseFormat)
        return w.json
    }

    /// Checks what a provider would reject anyway, before any quota is spent.
    func validate() throws(MultiplexerError) {
        guard !self.messages.isEmpty else {
            throw MultiplexerError(.invalidRequest, "'messages' must be a non-empty array.")
        }
        for (name, value) in [("max_tokens", self.maxTokens), ("max_completion_tokens", self.maxCompletionTokens)] {
            if let v = value, v < 0 { throw MultiplexerError(.invalidRequest, "'\(name)' must be a non-negative integer.") }
        }
        if let n = self.n, !(1...128).contains(n) {
            throw MultiplexerError(.invalidRequest, "'n' must be an integer from 1 to 128.")
        }
    }
}
