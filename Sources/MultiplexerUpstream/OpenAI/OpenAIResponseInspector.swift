public import MultiplexerCore

/// Reads the few fields of an OpenAI-compatible response body the router needs, without decoding the rest.
public enum OpenAIResponseInspector {
    /// The `usage` of a response body or stream chunk: `{"usage": {"prompt_tokens": P, "completion_tokens": C}}`.
    ///
    /// - Parameter body: a JSON body, or the `data` of a stream event (its UTF-8).
    /// - Returns: the usage, or `nil` when the body is not JSON or has no usable `usage`.
    public static func usage(in body: some Collection<UInt8>) -> TokenUsage? {
        guard let usage = JSONParser.members(["usage"], in: Array(body))?["usage"] else { return nil }
        return Self.usage(from: usage)
    }

    /// What a 2xx non-stream body holds: its usage, and whether it is what the operation promises.
    public struct SuccessBody: Sendable, Hashable {
        /// The `usage` the body reports, if any.
        public var usage: TokenUsage?
        /// Why the body is not what the operation promises; `nil` when it is.
        public var invalid: String?
        /// The body's `model`, if any.
        public var model: String?
    }

    /// Checks a 2xx non-stream body against what `operation` returns, and reads its usage, in one pass.
    ///
    /// - `chat/completions` and `completions`: a JSON object with a `choices` array;
    /// - `embeddings`: a JSON object with a `data` array;
    /// - any other operation (the passthrough ones: `responses`, `messages`, …): a JSON object when the
    ///   content type is JSON (`application/json`, `…+json`); any other content type — audio from
    ///   `audio/speech`, or none at all — is relayed as it is and never rejected.
    ///
    /// - Parameters:
    ///   - body: the whole body.
    ///   - operation: the path below the base URL, e.g. `chat/completions`.
    ///   - contentType: the response's `Content-Type`, if any.
    public static func inspectSuccess(_ body: [UInt8], operation: String, contentType: String?) -> SuccessBody {
        var op = Substring(operation)
        while op.first == "/" { op.removeFirst() }
        let required: String?
        switch op {
        case "chat/completions", "completions": required = "choices"
        case "embeddings": required = "data"
        default:
            guard Self.isJSON(contentType) else { return SuccessBody(usage: Self.usage(in: body), invalid: nil) }
            required = nil
        }
        guard !body.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else {
            return SuccessBody(usage: nil, invalid: "the body is empty")
        }
        guard let object = JSONParser.object(decoding: ["usage", "model"], in: body) else {
            return SuccessBody(usage: nil, invalid: "the body is not a JSON object")
        }
        let usage = object.decoded["usage"].flatMap(Self.usage(from:))
        let model = object.decoded["model"]?.stringValue
        if let required, object.kinds[required] != .array {
            return SuccessBody(usage: usage, invalid: "the body has no '\(required)' array", model: model)
        }
        return SuccessBody(usage: usage, invalid: nil, model: model)
    }

    /// Whether a content type is JSON: `application/json` or a `+json` suffix, parameters ignored.
    static func isJSON(_ contentType: String?) -> Bool {
        guard let ct = contentType else { return false }
        let mime = ct.split(separator: ";", maxSplits: 1).first.map { $0.trimmingBlanks().lowercased() } ?? ""
        return mime == "application/json" || mime.hasSuffix("+json")
    }

    /// The usage in an already-decoded `usage` object: `prompt_tokens`, `completion_tokens` (else
    /// `total_tokens`) — or, for `responses` and Anthropic's `messages`, `input_tokens` and `output_tokens`.
    public static func usage(from usage: JSONValue) -> TokenUsage? {
        guard let prompt = usage["prompt_tokens"]?.intValue else {
            guard let input = usage["input_tokens"]?.intValue else { return nil }
            return TokenUsage(promptTokens: input, completionTokens: usage["output_tokens"]?.intValue ?? 0)
        }
        let completion = usage["completion_tokens"]?.intValue ?? max(0, (usage["total_tokens"]?.intValue ?? prompt) - prompt)
        return TokenUsage(promptTokens: prompt, completionTokens: completion)
    }

    /// The error code of an OpenAI-shaped error body: `error.code` (a string or number), else `error.type`.
    ///
    /// - Parameter body: a JSON error body.
    /// - Returns: the code, or `nil` when the body is not such JSON.
    public static func errorCode(in body: some Collection<UInt8>) -> String? {
        guard let error = JSONParser.members(["error"], in: Array(body))?["error"] else { return nil }
        switch error["code"] {
        case .string(let code) where !code.isEmpty:
            return code
        case .number:
            if let code = error["code"]?.intValue { return String(code) }
        default:
            break
        }
        if let type = error["type"]?.stringValue, !type.isEmpty { return type }
        return nil
    }
}
