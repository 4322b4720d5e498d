/// The token cost a request reserves before it is sent: an estimate of its prompt plus the completion it
/// may produce.
public struct RequestCost: Sendable, Hashable {
    /// Estimated prompt tokens.
    public var promptTokens: Int
    /// The completion budget the request asked for (`max_tokens` / `max_completion_tokens`, times `n`),
    /// or `nil` when it set none (the provider's `default_max_tokens` then applies).
    public var maxTokens: Int?
    /// Choices requested (`n`); multiplies the default completion budget.
    public var choices: Int
    /// Whether the operation produces completion tokens at all (embeddings do not).
    public var producesCompletion: Bool

    public init(promptTokens: Int, maxTokens: Int? = nil, choices: Int = 1, producesCompletion: Bool = true) {
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
        self.choices = max(1, choices)
        self.producesCompletion = producesCompletion
    }

    /// Tokens to reserve on `provider`: prompt + completion budget.
    public func tokens(on provider: Provider) -> Int {
        guard self.producesCompletion else { return self.promptTokens }
        return self.promptTokens + (self.maxTokens ?? provider.defaultMaxTokens * self.choices)
    }
}

/// Estimates a request's prompt tokens from its body without a tokenizer.
///
/// The estimate is deliberately a little high (about four characters per token, rounded up, plus
/// OpenAI's per-message framing), because a reservation that is too small could let a provider's TPM be
/// overshot before settlement corrects it, whereas one that is too large is refunded at settlement.
public enum TokenEstimator {
    /// Characters per token assumed for text.
    public static let charactersPerToken = 4
    /// Framing tokens per chat message (role, separators).
    public static let tokensPerMessage = 4
    /// Tokens assumed for one image part.
    public static let tokensPerImage = 765

    /// The cost of a request body for an operation.
    ///
    /// - Parameters:
    ///   - body: the parsed JSON body.
    ///   - operation: the path after `/v1/`, e.g. `chat/completions`, `completions`, `embeddings`.
    public static func cost(of body: JSONValue, operation: String) -> RequestCost {
        let n = body["n"]?.intValue ?? 1
        let maxTokens = (body["max_completion_tokens"]?.intValue ?? body["max_tokens"]?.intValue).map { max(0, $0) * max(1, n) }
        switch operation {
        case "embeddings":
            return RequestCost(promptTokens: self.inputTokens(body["input"]), producesCompletion: false)
        case "completions":
            return RequestCost(promptTokens: self.inputTokens(body["prompt"]), maxTokens: maxTokens, choices: n)
        default:
            var tokens = 3  // every reply is primed with <|start|>assistant<|message|>
            if let messages = body["messages"]?.arrayValue {
                for m in messages {
                    tokens += self.tokensPerMessage + self.textTokens(m["content"]) + self.textTokens(m["name"])
                    if let calls = m["tool_calls"] { tokens += self.jsonTokens(calls) }
                }
            } else if body["messages"] == nil {
                // Not a chat body (an unknown /v1 operation): charge its size.
                tokens += self.jsonTokens(body)
            }
            if let tools = body["tools"] { tokens += self.jsonTokens(tools) }
            if let functions = body["functions"] { tokens += self.jsonTokens(functions) }
            return RequestCost(promptTokens: tokens, maxTokens: maxTokens, choices: n)
        }
    }

    /// Tokens of a text-ish value: a string, or an array of content parts.
    public static func textTokens(_ v: JSONValue?) -> Int {
        switch v {
        case .string(let s)?:
            return self.tokens(forCharacters: s.utf8.count)
        case .array(let parts)?:
            return parts.reduce(0) { sum, part in
                if let t = part["text"]?.stringValue { return sum + self.tokens(forCharacters: t.utf8.count) }
                if part["image_url"] != nil || part["type"]?.stringValue == "image_url" { return sum + self.tokensPerImage }
                if case .string(let s) = part { return sum + self.tokens(forCharacters: s.utf8.count) }
                return sum + self.jsonTokens(part)
            }
        case nil, .null?:
            return 0
        case let other?:
            return self.jsonTokens(other)
        }
    }

    /// Tokens of an embeddings `input` or completions `prompt`: a string, strings, or token id arrays.
    static func inputTokens(_ v: JSONValue?) -> Int {
        switch v {
        case .string(let s)?: return self.tokens(forCharacters: s.utf8.count)
        case .array(let items)?:
            return items.reduce(0) { sum, item in
                switch item {
                case .number: return sum + 1  // a pre-tokenised prompt: one id per token
                case .array(let ids): return sum + ids.count
                default: return sum + self.textTokens(item)
                }
            }
        case nil, .null?: return 0
        case let other?: return self.jsonTokens(other)
        }
    }

    static func jsonTokens(_ v: JSONValue) -> Int {
        self.tokens(forCharacters: self.approximateLength(v))
    }

    /// Tokens of `n` bytes of text (about four bytes a token, rounded up).
    public static func tokens(forCharacters n: Int) -> Int {
        (n + self.charactersPerToken - 1) / self.charactersPerToken
    }

    private static func approximateLength(_ v: JSONValue) -> Int {
        switch v {
        case .null: 4
        case .bool: 5
        case .number: 8
        case .string(let s): s.utf8.count + 2
        case .array(let a): a.reduce(2) { $0 + self.approximateLength($1) + 1 }
        case .object(let o): o.reduce(2) { $0 + $1.key.utf8.count + 3 + self.approximateLength($1.value) + 1 }
        }
    }
}
