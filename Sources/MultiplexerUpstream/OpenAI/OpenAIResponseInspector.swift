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

    /// The usage in an already-decoded `usage` object (`prompt_tokens`, `completion_tokens`, else
    /// `total_tokens`).
    public static func usage(from usage: JSONValue) -> TokenUsage? {
        guard let prompt = usage["prompt_tokens"]?.intValue else { return nil }
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
