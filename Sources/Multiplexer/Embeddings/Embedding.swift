public import MultiplexerCore

/// The parameters of an embeddings call. There is no `model`: the multiplexer picks a registered model.
public struct EmbeddingRequest: JSONObjectRepresentable, Hashable {
    /// What to embed.
    public enum Input: Hashable, Sendable {
        /// One text.
        case text(String)
        /// Several texts (one embedding each).
        case texts([String])
        /// One pre-tokenised input.
        case tokens([Int])
        /// Several pre-tokenised inputs.
        case tokenBatches([[Int]])

        var json: JSONValue {
            switch self {
            case .text(let s): .string(s)
            case .texts(let a): .array(a.map(JSONValue.string))
            case .tokens(let t): .array(t.map { .number(Double($0)) })
            case .tokenBatches(let b): .array(b.map { .array($0.map { .number(Double($0)) }) })
            }
        }

        var isEmpty: Bool {
            switch self {
            case .text: false
            case .texts(let a): a.isEmpty
            case .tokens(let t): t.isEmpty
            case .tokenBatches(let b): b.isEmpty
            }
        }
    }

    /// What to embed.
    public var input: Input
    /// The vectors' length, for models that can shorten them.
    public var dimensions: Int?
    /// `float` or `base64`.
    public var encodingFormat: String?
    /// An end-user id.
    public var user: String?
    /// Members not modelled above, sent as given.
    public var extra: [String: JSONValue]

    /// - Parameters:
    ///   - input: what to embed.
    ///   - dimensions: the vectors' length.
    ///   - encodingFormat: `float` or `base64`.
    ///   - user: an end-user id.
    ///   - extra: further members.
    public init(input: Input, dimensions: Int? = nil, encodingFormat: String? = nil, user: String? = nil, extra: [String: JSONValue] = [:]) {
        self.input = input
        self.dimensions = dimensions
        self.encodingFormat = encodingFormat
        self.user = user
        self.extra = extra
    }

    /// Decodes a request body.
    ///
    /// - Parameter json: an embeddings request object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "request")
        switch r.value("input") {
        case .string(let s)?: self.input = .text(s)
        case .array(let items)? where items.allSatisfy({ $0.stringValue != nil }): self.input = .texts(items.compactMap(\.stringValue))
        case .array(let items)? where items.allSatisfy({ $0.intValue != nil }): self.input = .tokens(items.compactMap(\.intValue))
        case .array(let items)?: self.input = .tokenBatches(items.map { $0.arrayValue?.compactMap(\.intValue) ?? [] })
        default: throw MultiplexerError(.invalidResponse, "'request.input' must be a string or an array.")
        }
        self.dimensions = try r.int("dimensions")
        self.encodingFormat = try r.string("encoding_format")
        self.user = try r.string("user")
        self.extra = r.rest
    }

    /// The request body (without `model`).
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("input", self.input.json)
        w.set("dimensions", self.dimensions)
        w.set("encoding_format", self.encodingFormat)
        w.set("user", self.user)
        return w.json
    }
}

/// A provider's answer to an embeddings call.
public struct EmbeddingResponse: JSONObjectRepresentable, Hashable {
    /// `list`.
    public var object: String
    /// One embedding per input, by ``Embedding/index``.
    public var data: [Embedding]
    /// The model the provider says it ran.
    public var model: String
    /// Token usage.
    public var usage: Usage?
    /// Members not modelled above.
    public var extra: [String: JSONValue]
    /// The registered name of the model that served the request (not part of the JSON).
    public var servedBy: String?

    /// - Parameters:
    ///   - object: the object type.
    ///   - data: the embeddings.
    ///   - model: the model the provider ran.
    ///   - usage: token usage.
    ///   - extra: further members.
    ///   - servedBy: the registered model that served it.
    public init(object: String = "list", data: [Embedding], model: String, usage: Usage? = nil, extra: [String: JSONValue] = [:], servedBy: String? = nil) {
        self.object = object
        self.data = data
        self.model = model
        self.usage = usage
        self.extra = extra
        self.servedBy = servedBy
    }

    /// Decodes a response (``servedBy`` is `nil`).
    ///
    /// - Parameter json: an embeddings response object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "embeddings")
        guard r.rest["data"] != nil else { throw MultiplexerError(.invalidResponse, "The response has no 'data'.") }
        self.object = try r.requiredString("object", default: "list")
        self.data = try r.array("data", of: Embedding.self) ?? []
        self.model = try r.requiredString("model", default: "")
        self.usage = try r.object("usage", as: Usage.self)
        self.extra = r.rest
        self.servedBy = nil
    }

    /// The response as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("object", self.object)
        w.set("data", self.data)
        w.set("model", self.model)
        w.set("usage", self.usage)
        return w.json
    }
}

/// One embedding vector.
public struct Embedding: JSONObjectRepresentable, Hashable {
    /// A vector as the provider sent it.
    public enum Vector: Hashable, Sendable {
        /// Numbers (`encoding_format: float`, the default).
        case floats([Double])
        /// Little-endian float32 values in base64 (`encoding_format: base64`).
        case base64(String)
    }

    /// The input's position.
    public var index: Int
    /// The vector.
    public var embedding: Vector
    /// `embedding`.
    public var object: String
    /// Members not modelled above.
    public var extra: [String: JSONValue]

    /// The vector's numbers, if it was sent as numbers.
    public var floats: [Double]? {
        if case .floats(let f) = self.embedding { return f }
        return nil
    }

    /// - Parameters:
    ///   - index: the input's position.
    ///   - embedding: the vector.
    ///   - object: the object type.
    ///   - extra: further members.
    public init(index: Int, embedding: Vector, object: String = "embedding", extra: [String: JSONValue] = [:]) {
        self.index = index
        self.embedding = embedding
        self.object = object
        self.extra = extra
    }

    /// Decodes an embedding.
    ///
    /// - Parameter json: an embedding object.
    public init(json: JSONValue) throws(MultiplexerError) {
        var r = try JSONObjectReader(json, context: "embedding")
        self.index = try r.int("index") ?? 0
        self.object = try r.requiredString("object", default: "embedding")
        if let s = r.rest["embedding"]?.stringValue {
            _ = r.value("embedding")
            self.embedding = .base64(s)
        } else {
            self.embedding = .floats(try r.numbers("embedding") ?? [])
        }
        self.extra = r.rest
    }

    /// The embedding as a JSON object.
    public var json: JSONValue {
        var w = JSONObjectWriter(extra: self.extra)
        w.set("index", self.index)
        w.set("object", self.object)
        switch self.embedding {
        case .floats(let f): w.set("embedding", JSONValue.array(f.map(JSONValue.number)))
        case .base64(let s): w.set("embedding", s)
        }
        return w.json
    }
}
