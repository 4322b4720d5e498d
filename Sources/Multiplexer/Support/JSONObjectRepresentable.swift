public import MultiplexerCore

/// A value that converts to and from one JSON object, keeping the members it does not model.
///
/// Every request and response type of the library conforms. Members the type has no property for are
/// kept in its `extra` dictionary when decoding and written back when encoding, so fields a provider (or a
/// newer API version) adds survive a round trip, and request fields the library does not know yet can be
/// sent through `extra`. A modelled property wins over an `extra` entry of the same name.
///
/// The conformance to `Codable` goes through ``MultiplexerCore/JSONValue``, so the types also work with
/// `JSONEncoder` and `JSONDecoder`.
public protocol JSONObjectRepresentable: Sendable, Codable {
    /// Decodes the value from a JSON object.
    ///
    /// - Parameter json: a JSON object.
    /// - Throws: ``MultiplexerError`` with code ``MultiplexerError/Code/invalidResponse`` when `json` is not
    ///   an object or a modelled member has the wrong type.
    init(json: JSONValue) throws(MultiplexerError)

    /// The value as a JSON object: the modelled properties (`nil` ones omitted) over the extra members.
    var json: JSONValue { get }
}

extension JSONObjectRepresentable {
    /// Decodes the value through ``MultiplexerCore/JSONValue`` and ``init(json:)``.
    ///
    /// - Parameter decoder: the decoder to read from.
    public init(from decoder: any Decoder) throws {
        try self.init(json: JSONValue(from: decoder))
    }

    /// Encodes ``json``.
    ///
    /// - Parameter encoder: the encoder to write to.
    public func encode(to encoder: any Encoder) throws {
        try self.json.encode(to: encoder)
    }

    /// Decodes the value from the bytes of a JSON document.
    ///
    /// - Parameter jsonBytes: UTF-8 JSON text.
    /// - Throws: ``MultiplexerError`` (``MultiplexerError/Code/invalidResponse``) for invalid JSON or a
    ///   mismatching shape.
    public init(jsonBytes: [UInt8]) throws(MultiplexerError) {
        let document: JSONParser.Document
        do {
            document = try JSONParser.parse(jsonBytes)
        } catch {
            throw MultiplexerError(.invalidResponse, "The body is not valid JSON (\(error)).")
        }
        try self.init(json: document.value)
    }

    /// The value as compact JSON text.
    public var jsonText: String { self.json.jsonText }
}

/// Takes the modelled members out of a JSON object one by one; what is left are the extras.
struct JSONObjectReader {
    /// Members not read yet.
    private(set) var rest: [String: JSONValue]
    /// Names the object in error messages, e.g. `choices[0].message`.
    let context: String

    init(_ value: JSONValue, context: String) throws(MultiplexerError) {
        guard case .object(let members) = value else {
            throw MultiplexerError(.invalidResponse, "'\(context)' must be a JSON object.")
        }
        self.rest = members
        self.context = context
    }

    private func mismatch(_ key: String, _ expected: String) -> MultiplexerError {
        MultiplexerError(.invalidResponse, "'\(self.context).\(key)' must be \(expected).")
    }

    /// The member `key` (removed from the extras); `null` reads as absent.
    mutating func value(_ key: String) -> JSONValue? {
        switch self.rest.removeValue(forKey: key) {
        case nil, .null?: nil
        case let v?: v
        }
    }

    mutating func string(_ key: String) throws(MultiplexerError) -> String? {
        guard let v = self.value(key) else { return nil }
        guard case .string(let s) = v else { throw self.mismatch(key, "a string") }
        return s
    }

    mutating func requiredString(_ key: String, default fallback: String) throws(MultiplexerError) -> String {
        try self.string(key) ?? fallback
    }

    mutating func int(_ key: String) throws(MultiplexerError) -> Int? {
        guard let v = self.value(key) else { return nil }
        guard let i = v.intValue else { throw self.mismatch(key, "an integer") }
        return i
    }

    mutating func double(_ key: String) throws(MultiplexerError) -> Double? {
        guard let v = self.value(key) else { return nil }
        guard case .number(let d) = v else { throw self.mismatch(key, "a number") }
        return d
    }

    mutating func bool(_ key: String) throws(MultiplexerError) -> Bool? {
        guard let v = self.value(key) else { return nil }
        guard case .bool(let b) = v else { throw self.mismatch(key, "a boolean") }
        return b
    }

    mutating func array<T: JSONObjectRepresentable>(_ key: String, of type: T.Type = T.self) throws(MultiplexerError) -> [T]? {
        guard let v = self.value(key) else { return nil }
        guard case .array(let items) = v else { throw self.mismatch(key, "an array") }
        var out: [T] = []
        out.reserveCapacity(items.count)
        for item in items { out.append(try T(json: item)) }
        return out
    }

    mutating func numbers(_ key: String) throws(MultiplexerError) -> [Double]? {
        guard let v = self.value(key) else { return nil }
        guard case .array(let items) = v else { throw self.mismatch(key, "an array of numbers") }
        var out: [Double] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case .number(let d) = item else { throw self.mismatch(key, "an array of numbers") }
            out.append(d)
        }
        return out
    }

    mutating func object<T: JSONObjectRepresentable>(_ key: String, as type: T.Type = T.self) throws(MultiplexerError) -> T? {
        guard let v = self.value(key) else { return nil }
        return try T(json: v)
    }
}

/// Builds a JSON object: the extras first, then the modelled properties over them.
struct JSONObjectWriter {
    private(set) var members: [String: JSONValue]

    init(extra: [String: JSONValue]) {
        self.members = extra
    }

    mutating func set(_ key: String, _ value: JSONValue?) {
        if let value { self.members[key] = value }
    }

    mutating func set(_ key: String, _ value: String?) {
        if let value { self.members[key] = .string(value) }
    }

    mutating func set(_ key: String, _ value: Int?) {
        if let value { self.members[key] = .number(Double(value)) }
    }

    mutating func set(_ key: String, _ value: Double?) {
        if let value { self.members[key] = .number(value) }
    }

    mutating func set(_ key: String, _ value: Bool?) {
        if let value { self.members[key] = .bool(value) }
    }

    mutating func set(_ key: String, _ value: (some JSONObjectRepresentable)?) {
        if let value { self.members[key] = value.json }
    }

    mutating func set(_ key: String, _ values: [some JSONObjectRepresentable]?) {
        if let values { self.members[key] = .array(values.map(\.json)) }
    }

    var json: JSONValue { .object(self.members) }
}
