import MultiplexerCore

/// The members a chat completion and a chunk share (`id`, `object`, `created`, `model`, `choices`, `usage`),
/// and those a completion's choice and a chunk's choice share (`index`, `finish_reason`, `logprobs`): read and
/// written in one place, so that the two pairs of types differ only in what really differs (a `message` or
/// a `delta`; a fingerprint).
struct CompletionHead<Choice: JSONObjectRepresentable> {
    var id: String
    var object: String
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: Usage?

    init(_ r: inout JSONObjectReader, object defaultObject: String) throws(MultiplexerError) {
        self.id = try r.requiredString("id", default: "")
        self.object = try r.requiredString("object", default: defaultObject)
        self.created = try r.int("created") ?? 0
        self.model = try r.requiredString("model", default: "")
        self.choices = try r.array("choices", of: Choice.self) ?? []
        self.usage = try r.object("usage", as: Usage.self)
    }

    static func write(into w: inout JSONObjectWriter, id: String, object: String, created: Int, model: String, choices: [Choice], usage: Usage?) {
        w.set("id", id)
        w.set("object", object)
        w.set("created", created)
        w.set("model", model)
        w.set("choices", choices)
        w.set("usage", usage)
    }
}

/// `index`, `finish_reason`, `logprobs` of a choice (a completion's or a chunk's).
struct ChoiceMembers {
    var index: Int
    var finishReason: String?
    var logprobs: JSONValue?

    init(_ r: inout JSONObjectReader) throws(MultiplexerError) {
        self.index = try r.int("index") ?? 0
        self.finishReason = try r.string("finish_reason")
        self.logprobs = r.value("logprobs")
    }

    /// Writes `index`, then `content` under `key` (`message` or `delta`), then the finish reason and logprobs.
    static func write(into w: inout JSONObjectWriter, index: Int, _ key: String, _ content: some JSONObjectRepresentable, finishReason: String?, logprobs: JSONValue?) {
        w.set("index", index)
        w.set(key, content)
        w.set("finish_reason", finishReason)
        w.set("logprobs", logprobs)
    }
}
