import MultiplexerCore

/// A client's request to an OpenAI route, parsed and validated once.
///
/// The body is kept as bytes; ``upstreamBody(model:includeUsage:)`` rewrites only the `model` member
/// (and, for streams, `stream_options.include_usage`) and relays every other byte as the client sent it.
struct OpenAIRequest: Sendable {
    /// The path after `/v1/`, e.g. `chat/completions`.
    let operation: String
    let body: [UInt8]
    let document: JSONParser.Document
    /// The requested model (`nil` if the body has none).
    let model: String?
    let stream: Bool
    /// Whether the client asked for the usage chunk itself (`stream_options.include_usage: true`).
    let clientWantsUsage: Bool
    let cost: RequestCost
    /// The request offers `tools` or `functions` (its stream is never continued mid-way).
    var declaresTools: Bool {
        for name in ["tools", "functions"] {
            if let t = self.document.value[name], t != .null, t.arrayValue?.isEmpty != true { return true }
        }
        return false
    }

    /// Parses and validates `body` for `operation`.
    ///
    /// - Throws: ``OpenAIError`` 400 `invalid_request_error` naming the offending parameter.
    /// The longest `model` accepted (ARCHITECTURE §6): never echoed at any length in errors or logs.
    static let maxModelBytes = 256

    init(operation: String, body: [UInt8]) throws(OpenAIError) {
        self.operation = operation
        self.body = body
        let doc: JSONParser.Document
        do {
            doc = try JSONParser.parse(body, rejectingDuplicateKeys: true)
        } catch {
            throw OpenAIError.invalidRequest("We could not parse the JSON body of your request (\(error)). Send a JSON object.", param: nil)
        }
        guard case .object = doc.value else {
            throw OpenAIError.invalidRequest("The request body must be a JSON object.", param: nil)
        }
        self.document = doc
        let v = doc.value
        switch v["model"] {
        case nil, .null?: self.model = nil
        case .string(let s)?:
            guard s.utf8.count <= Self.maxModelBytes else {
                throw OpenAIError.invalidRequest("'model' is longer than \(Self.maxModelBytes) bytes.", param: "model")
            }
            self.model = s
        default: throw OpenAIError.invalidRequest("'model' must be a string.", param: "model")
        }
        switch v["stream"] {
        case nil, .null?, .bool(false)?: self.stream = false
        case .bool(true)?: self.stream = true
        default: throw OpenAIError.invalidRequest("'stream' must be a boolean.", param: "stream")
        }
        if let so = v["stream_options"], so != .null {
            guard case .object = so else { throw OpenAIError.invalidRequest("'stream_options' must be an object.", param: "stream_options") }
            if let iu = so["include_usage"], iu != .null, case .bool = iu {} else if so["include_usage"] != nil && so["include_usage"] != .null {
                throw OpenAIError.invalidRequest("'stream_options.include_usage' must be a boolean.", param: "stream_options.include_usage")
            }
        }
        self.clientWantsUsage = v["stream_options"]?["include_usage"] == .bool(true)
        for name in ["max_tokens", "max_completion_tokens"] {
            if let m = v[name], m != .null {
                guard let n = m.intValue, n >= 0 else { throw OpenAIError.invalidRequest("'\(name)' must be a non-negative integer.", param: name) }
                _ = n
            }
        }
        if let n = v["n"], n != .null {
            guard let k = n.intValue, k >= 1, k <= 128 else { throw OpenAIError.invalidRequest("'n' must be an integer from 1 to 128.", param: "n") }
        }
        switch operation {
        case "chat/completions":
            guard let messages = v["messages"] else { throw OpenAIError.invalidRequest("Missing required parameter: 'messages'.", param: "messages") }
            guard let list = messages.arrayValue, !list.isEmpty else {
                throw OpenAIError.invalidRequest("'messages' must be a non-empty array.", param: "messages")
            }
            for (i, m) in list.enumerated() {
                guard case .object = m, m["role"]?.stringValue != nil else {
                    throw OpenAIError.invalidRequest("'messages[\(i)]' must be an object with a string 'role'.", param: "messages[\(i)]")
                }
            }
        case "completions":
            guard let p = v["prompt"], p != .null else { throw OpenAIError.invalidRequest("Missing required parameter: 'prompt'.", param: "prompt") }
        case "embeddings":
            guard let input = v["input"], input != .null else { throw OpenAIError.invalidRequest("Missing required parameter: 'input'.", param: "input") }
            switch input {
            case .string, .array: break
            default: throw OpenAIError.invalidRequest("'input' must be a string or an array.", param: "input")
            }
            if self.stream { throw OpenAIError.invalidRequest("Embeddings cannot be streamed.", param: "stream") }
        default:
            break
        }
        self.cost = TokenEstimator.cost(of: v, operation: operation)
    }

    /// The body to send upstream: `model` set to the provider's model id and, for a stream,
    /// `stream_options.include_usage` set to true (so usage can be settled); every other byte unchanged.
    func upstreamBody(model: String, includeUsage: Bool) -> [UInt8] {
        var modelJSON = ""
        JSONValue.writeString(model, into: &modelJSON)
        var replacements: [(Range<Int>, [UInt8])] = []
        var inserts: [UInt8] = []
        if let m = self.document.member("model") {
            replacements.append((m.valueRange, Array(modelJSON.utf8)))
        } else {
            inserts += Array("\"model\":\(modelJSON),".utf8)
        }
        if includeUsage && !self.clientWantsUsage {
            if let so = self.document.member("stream_options"), case .object(var o) = self.document.value["stream_options"] ?? .null {
                o["include_usage"] = .bool(true)
                replacements.append((so.valueRange, Array(JSONValue.object(o).jsonText.utf8)))
            } else if let so = self.document.member("stream_options") {  // "stream_options": null
                replacements.append((so.valueRange, Array("{\"include_usage\":true}".utf8)))
            } else {
                inserts += Array("\"stream_options\":{\"include_usage\":true},".utf8)
            }
        }
        replacements.sort { $0.0.lowerBound < $1.0.lowerBound }
        var out: [UInt8] = []
        out.reserveCapacity(self.body.count + inserts.count + 64)
        var pos = 0
        if !inserts.isEmpty, let brace = self.body.firstIndex(of: UInt8(ascii: "{")) {
            out += self.body[...brace]
            pos = brace + 1
            // An empty object gets no trailing comma.
            let restIsEmpty = self.document.members.isEmpty
            out += restIsEmpty ? inserts.dropLast() : inserts[...]
        }
        for (range, bytes) in replacements {
            out += self.body[pos..<range.lowerBound]
            out += bytes
            pos = range.upperBound
        }
        out += self.body[pos...]
        return out
    }
}
