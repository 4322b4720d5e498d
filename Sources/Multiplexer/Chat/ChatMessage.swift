public import MultiplexerCore

/// One message of a chat conversation: a request message, or the message a provider answered.
///
/// ```swift
/// let messages: [ChatMessage] = [
///     .system("You are a helpful assistant."),
///     .user("What is the capital of France?"),
/// ]
/// ```
///
/// Members not modelled here (e.g. a provider's `reasoning_content`) are kept in ``extra``.
public struct ChatMessage: JSONObjectRepresentable, Hashable {
    /// Who wrote a message.
    public struct Role: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
        /// The role's name as sent on the wire.
        public var rawValue: String

        /// - Parameter rawValue: the role's name.
        public init(rawValue: String) {
            self.rawValue = rawValue
        }

        /// - Parameter value: the role's name.
        public init(stringLiteral value: String) {
            self.rawValue = value
        }

        /// `system`
        public static let system = Role(rawValue: "system")
        /// `developer` (newer OpenAI models' system role)
        public static let developer = Role(rawValue: "developer")
        /// `user`
        public static let user = Role(rawValue: "user")
        /// `assistant`
        public static let assistant = Role(rawValue: "assistant")
        /// `tool`: the result of a tool call.
        public static let tool = Role(rawValue: "tool")

        /// The role's name.
        public var description: String { self.rawValue }
    }

    /// A message's content: plain text, or a list of parts (text, images, …).
    public enum Content: Hashable, Sendable {
        /// Plain text.
        case text(String)
        /// Content parts.
        case parts([ContentPart])

        /// The text: the string itself, or the text parts joined.
        public var text: String {
            switch self {
            case .text(let s): s
            case .parts(let parts): parts.compactMap(\.text).joined()
            }
        }

        var json: JSONValue {
            switch self {
            case .text(let s): .string(s)
            case .parts(let parts): .array(parts.map(\.json))
            }
        }
    }

    /// Who wrote the message.
    public var role: Role
    /// The content (`nil`, e.g., for an assistant message that only calls tools).
    public var content: Content?
    /// An optional participant name.
    public var name: String?
    /// Tool calls an assistant message makes.
    public var toolCalls: [ToolCall]?
    /// For a ``Role/tool`` message: the id of the call it answers.
    public var toolCallID: String?
    /// An assistant's refusal, if it refused.
    public var refusal: String?
    /// Members not modelled above.
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - role: who wrote the message.
    ///   - content: its content.
    ///   - name: a participant name.
    ///   - toolCalls: tool calls (assistant messages).
    ///   - toolCallID: the call a tool message answers.
    ///   - refusal: an assistant's refusal.
    ///   - extra: further members.
    public init(
        role: Role, content: Content?, name: String? = nil, toolCalls: [ToolCall]? = nil, toolCallID: String? = nil, refusal: String? = nil,
        extra: [String: JSONValue] = [:]
    ) {
        self.role = role
        self.content = content
        self.name = name
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.refusal = refusal
        self.extra = extra
    }

    /// A system message.
    ///
    /// - Parameter text: the instructions.
    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: .system, content: .text(text)) }

    /// A user message with text.
    ///
    /// - Parameter text: the text.
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: .text(text)) }

    /// A user message with content parts (text and images).
    ///
    /// - Parameter parts: the parts.
    public static func user(_ parts: [ContentPart]) -> ChatMessage { ChatMessage(role: .user, content: .parts(parts)) }

    /// An assistant message (e.g. a previous answer, to continue a conversation).
    ///
    /// - Parameters:
    ///   - text: the text, if any.
    ///   - toolCalls: the tool calls it made, if any.
    public static func assistant(_ text: String?, toolCalls: [ToolCall]? = nil) -> ChatMessage {
        ChatMessage(role: .assistant, content: text.map { .text($0) }, toolCalls: toolCalls)
    }

    /// A tool result.
    ///
    /// - Parameters:
    ///   - content: the result.
    ///   - toolCallID: the id of the call it answers.
    public static func tool(_ content: String, toolCallID: String) -> ChatMessage {
        ChatMessage(role: .tool, content: .text(content), toolCallID: toolCallID)
    }

    /// Decodes a message.
    ///
    /// - Parameter json: a message object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "message")
        self.role = Role(rawValue: try r.requiredString("role", default: "assistant"))
        switch r.value("content") {
        case nil: self.content = nil
        case .string(let s)?: self.content = .text(s)
        case .array(let items)?:
            var parts: [ContentPart] = []
            for item in items { parts.append(try ContentPart(json: item)) }
            self.content = .parts(parts)
        case _?: throw MultiplexerError(.invalidResponse, "'message.content' must be a string or an array.")
        }
        self.name = try r.string("name")
        self.toolCalls = try r.array("tool_calls", of: ToolCall.self)
        self.toolCallID = try r.string("tool_call_id")
        self.refusal = try r.string("refusal")
        self.extra = r.rest
    }

    /// The message as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("role", self.role.rawValue)
        w.set("content", self.content?.json)
        w.set("name", self.name)
        w.set("tool_calls", self.toolCalls)
        w.set("tool_call_id", self.toolCallID)
        w.set("refusal", self.refusal)
        return w.json
    }
}

/// One part of a message's content: text, an image, or any other kind (kept as sent).
public struct ContentPart: JSONObjectRepresentable, Hashable {
    /// An image reference.
    public struct ImageURL: Hashable, Sendable {
        /// An `https:` or `data:` URL.
        public var url: String
        /// `low`, `high` or `auto`.
        public var detail: String?

        /// - Parameters:
        ///   - url: the image URL.
        ///   - detail: the detail level.
        public init(url: String, detail: String? = nil) {
            self.url = url
            self.detail = detail
        }
    }

    /// The part's type: `text`, `image_url`, `input_audio`, …
    public var type: String
    /// The text of a `text` part.
    public var text: String?
    /// The image of an `image_url` part.
    public var imageURL: ImageURL?
    /// Members not modelled above (e.g. `input_audio`, `cache_control`).
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - type: the part's type.
    ///   - text: its text.
    ///   - imageURL: its image.
    ///   - extra: further members.
    public init(type: String, text: String? = nil, imageURL: ImageURL? = nil, extra: [String: JSONValue] = [:]) {
        self.type = type
        self.text = text
        self.imageURL = imageURL
        self.extra = extra
    }

    /// A text part.
    ///
    /// - Parameter text: the text.
    public static func text(_ text: String) -> ContentPart { ContentPart(type: "text", text: text) }

    /// An image part.
    ///
    /// - Parameters:
    ///   - url: an `https:` or `data:` URL.
    ///   - detail: `low`, `high` or `auto`.
    public static func image(url: String, detail: String? = nil) -> ContentPart {
        ContentPart(type: "image_url", imageURL: ImageURL(url: url, detail: detail))
    }

    /// Decodes a part.
    ///
    /// - Parameter json: a content part object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "content part")
        self.type = try r.requiredString("type", default: "text")
        self.text = try r.string("text")
        if let image = r.value("image_url") {
            switch image {
            case .string(let url): self.imageURL = ImageURL(url: url)
            default:
                var ir = try JSONObjectReader(image, context: "image_url")
                self.imageURL = ImageURL(url: try ir.requiredString("url", default: ""), detail: try ir.string("detail"))
            }
        } else {
            self.imageURL = nil
        }
        self.extra = r.rest
    }

    /// The part as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("type", self.type)
        w.set("text", self.text)
        if let image = self.imageURL {
            var iw = JSONObjectWriter(extra: [:])
            iw.set("url", image.url)
            iw.set("detail", image.detail)
            w.set("image_url", iw.json)
        }
        return w.json
    }
}
