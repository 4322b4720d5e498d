/// A strict JSON parser (RFC 8259) over bytes, in one pass: it builds the ``JSONValue`` and records
/// the byte range of every top-level object member, so a gateway can rewrite one member (the `model`)
/// and relay every other byte untouched.
public struct JSONParser {
    /// A syntax error and the byte offset where it was found.
    public struct SyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
        public var offset: Int
        public var message: String
        public var description: String { "\(self.message) at byte \(self.offset)" }
    }

    /// A top-level member of an object document.
    public struct Member: Sendable, Hashable {
        public var key: String
        /// From the key's opening quote to the end of the value.
        public var range: Range<Int>
        /// The value's bytes.
        public var valueRange: Range<Int>
    }

    /// The parsed document.
    public struct Document: Sendable {
        public var value: JSONValue
        /// Top-level members in order (empty unless the document is an object).
        public var members: [Member]

        /// The member named `key`.
        public func member(_ key: String) -> Member? { self.members.first { $0.key == key } }
    }

    /// Most nested arrays and objects accepted.
    public static let maxDepth = 128

    private let b: [UInt8]
    private var i = 0
    private var depth = 0
    private var members: [Member] = []
    private var rejectDuplicates = false

    private init(_ bytes: [UInt8]) {
        self.b = bytes
    }

    /// Parses a whole document.
    ///
    /// - Parameter rejectingDuplicateKeys: throw at an object that names a member twice, at any depth (a
    ///   client body whose `{"model": "a", "model": "b"}` a provider might read differently than the gateway).
    public static func parse(_ bytes: [UInt8], rejectingDuplicateKeys: Bool = false) throws(SyntaxError) -> Document {
        var p = JSONParser(bytes)
        p.rejectDuplicates = rejectingDuplicateKeys
        p.skipWhitespace()
        let v = try p.value()
        p.skipWhitespace()
        if p.i != p.b.count { throw p.error("unexpected data after the JSON value") }
        return Document(value: v, members: p.members)
    }

    /// The members named in `names` of the top-level object (of the first element when the top level is an
    /// array), decoded; every other value is validated and skipped without building it. `nil` when the
    /// bytes are not such JSON. For reading `usage` or `error` out of a large response body cheaply.
    public static func members(_ names: Set<String>, in bytes: [UInt8]) -> [String: JSONValue]? {
        var p = JSONParser(bytes)
        p.skipWhitespace()
        if p.i < p.b.count, p.b[p.i] == UInt8(ascii: "[") {
            p.i += 1
            p.skipWhitespace()
        }
        return p.walkObject(decoding: names, stopWhenAllFound: true, kind: nil)
    }

    /// Walks the members of the object whose `{` is at the cursor: the members named in `names` are decoded
    /// (the result), every other value is validated and skipped; `kind` sees each member's name and kind.
    /// Returns early once every named member was found when `stopWhenAllFound`; otherwise leaves the cursor
    /// after the closing `}`. `nil` when the bytes are not such an object.
    private mutating func walkObject(
        decoding names: Set<String>, stopWhenAllFound: Bool, kind: ((String, Kind) -> Void)?
    ) -> [String: JSONValue]? {
        guard self.i < self.b.count, self.b[self.i] == UInt8(ascii: "{") else { return nil }
        self.i += 1
        self.depth = 1
        var found: [String: JSONValue] = [:]
        self.skipWhitespace()
        if self.i < self.b.count, self.b[self.i] == UInt8(ascii: "}") {
            self.i += 1
            return found
        }
        while true {
            self.skipWhitespace()
            guard self.i < self.b.count, self.b[self.i] == UInt8(ascii: "\""), let key = try? self.string() else { return nil }
            self.skipWhitespace()
            guard self.i < self.b.count, self.b[self.i] == UInt8(ascii: ":") else { return nil }
            self.i += 1
            self.skipWhitespace()
            guard self.i < self.b.count else { return nil }
            if let kind {
                switch self.b[self.i] {
                case UInt8(ascii: "{"): kind(key, .object)
                case UInt8(ascii: "["): kind(key, .array)
                case UInt8(ascii: "\""): kind(key, .string)
                case UInt8(ascii: "t"), UInt8(ascii: "f"): kind(key, .bool)
                case UInt8(ascii: "n"): kind(key, .null)
                default: kind(key, .number)
                }
            }
            if names.contains(key) {
                guard let v = try? self.value() else { return nil }
                found[key] = v
                if stopWhenAllFound && found.count == names.count { return found }
            } else {
                guard (try? self.skipValue()) != nil else { return nil }
            }
            self.skipWhitespace()
            guard self.i < self.b.count else { return nil }
            if self.b[self.i] == UInt8(ascii: ",") {
                self.i += 1
            } else if self.b[self.i] == UInt8(ascii: "}") {
                self.i += 1
                return found
            } else {
                return nil
            }
        }
    }

    /// The kind of a JSON value, as its first byte tells.
    public enum Kind: Sendable, Hashable {
        case object, array, string, number, bool, null
    }

    /// The top level of an object document, as ``object(decoding:in:)`` reads it.
    public struct ObjectSummary: Sendable {
        /// The members that were asked for, decoded.
        public var decoded: [String: JSONValue]
        /// The kind of every top-level member (the last one of a repeated name).
        public var kinds: [String: Kind]
    }

    /// A whole document whose top level is an object, validated to its last byte: the members named in
    /// `names` are decoded, every other value is validated and skipped without building it, and the kind of
    /// each top-level member is recorded. `nil` when the bytes are not exactly one JSON object (empty,
    /// truncated, an array or a scalar at the top, data after it). For checking the shape of a response
    /// body and reading its `usage` in the same pass.
    public static func object(decoding names: Set<String>, in bytes: [UInt8]) -> ObjectSummary? {
        var p = JSONParser(bytes)
        var kinds: [String: Kind] = [:]
        p.skipWhitespace()
        guard let decoded = p.walkObject(decoding: names, stopWhenAllFound: false, kind: { kinds[$0] = $1 }) else { return nil }
        p.skipWhitespace()
        return p.i == p.b.count ? ObjectSummary(decoded: decoded, kinds: kinds) : nil
    }

    /// Validates one value and moves past it without building anything.
    private mutating func skipValue() throws(SyntaxError) {
        guard self.i < self.b.count else { throw self.error("unexpected end of input") }
        switch self.b[self.i] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let close = self.b[self.i] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            let isObject = close == UInt8(ascii: "}")
            self.depth += 1
            defer { self.depth -= 1 }
            guard self.depth <= Self.maxDepth else { throw self.error("nesting too deep") }
            self.i += 1
            self.skipWhitespace()
            if self.i < self.b.count, self.b[self.i] == close {
                self.i += 1
                return
            }
            while true {
                self.skipWhitespace()
                if isObject {
                    guard self.i < self.b.count, self.b[self.i] == UInt8(ascii: "\"") else { throw self.error("expected a member name") }
                    try self.skipString()
                    self.skipWhitespace()
                    guard self.i < self.b.count, self.b[self.i] == UInt8(ascii: ":") else { throw self.error("expected ':'") }
                    self.i += 1
                    self.skipWhitespace()
                }
                try self.skipValue()
                self.skipWhitespace()
                guard self.i < self.b.count else { throw self.error("unexpected end of input") }
                if self.b[self.i] == UInt8(ascii: ",") {
                    self.i += 1
                } else if self.b[self.i] == close {
                    self.i += 1
                    return
                } else {
                    throw self.error("expected ',' or a closing bracket")
                }
            }
        case UInt8(ascii: "\""): try self.skipString()
        case UInt8(ascii: "t"): try self.literal("true")
        case UInt8(ascii: "f"): try self.literal("false")
        case UInt8(ascii: "n"): try self.literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try self.number()
        default: throw self.error("unexpected character")
        }
    }

    /// Moves past a string (validating escapes and control characters, not decoding it).
    private mutating func skipString() throws(SyntaxError) {
        self.i += 1
        while self.i < self.b.count {
            let c = self.b[self.i]
            if c == UInt8(ascii: "\"") {
                self.i += 1
                return
            }
            if c < 0x20 { throw self.error("control character in string") }
            if c == UInt8(ascii: "\\") {
                self.i += 1
                guard self.i < self.b.count else { break }
                switch self.b[self.i] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                    UInt8(ascii: "r"), UInt8(ascii: "t"):
                    self.i += 1
                case UInt8(ascii: "u"):
                    self.i += 1
                    _ = try self.hex4()
                default:
                    throw self.error("invalid escape")
                }
                continue
            }
            self.i += 1
        }
        throw self.error("unterminated string")
    }

    private func error(_ m: String) -> SyntaxError { SyntaxError(offset: self.i, message: m) }

    private mutating func skipWhitespace() {
        while self.i < self.b.count {
            switch self.b[self.i] {
            case 0x20, 0x09, 0x0A, 0x0D: self.i += 1
            default: return
            }
        }
    }

    private mutating func value() throws(SyntaxError) -> JSONValue {
        guard self.i < self.b.count else { throw self.error("unexpected end of input") }
        switch self.b[self.i] {
        case UInt8(ascii: "{"): return try self.object()
        case UInt8(ascii: "["): return try self.array()
        case UInt8(ascii: "\""): return .string(try self.string())
        case UInt8(ascii: "t"): try self.literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try self.literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try self.literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try self.number())
        default: throw self.error("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(SyntaxError) {
        let n = word.utf8CodeUnitCount
        guard self.i + n <= self.b.count else { throw self.error("unexpected end of input") }
        let ok = word.withUTF8Buffer { w in (0..<n).allSatisfy { self.b[self.i + $0] == w[$0] } }
        guard ok else { throw self.error("invalid literal") }
        self.i += n
    }

    private mutating func object() throws(SyntaxError) -> JSONValue {
        self.depth += 1
        defer { self.depth -= 1 }
        guard self.depth <= Self.maxDepth else { throw self.error("nesting too deep") }
        let topLevel = self.depth == 1
        self.i += 1
        var out: [String: JSONValue] = [:]
        self.skipWhitespace()
        if self.i < self.b.count, self.b[self.i] == UInt8(ascii: "}") {
            self.i += 1
            return .object(out)
        }
        while true {
            self.skipWhitespace()
            guard self.i < self.b.count, self.b[self.i] == UInt8(ascii: "\"") else { throw self.error("expected a member name") }
            let keyStart = self.i
            let key = try self.string()
            self.skipWhitespace()
            guard self.i < self.b.count, self.b[self.i] == UInt8(ascii: ":") else { throw self.error("expected ':'") }
            self.i += 1
            self.skipWhitespace()
            let valueStart = self.i
            let v = try self.value()
            if topLevel { self.members.append(Member(key: key, range: keyStart..<self.i, valueRange: valueStart..<self.i)) }
            if out.updateValue(v, forKey: key) != nil, self.rejectDuplicates {
                self.i = keyStart
                throw self.error("duplicate member name")
            }
            self.skipWhitespace()
            guard self.i < self.b.count else { throw self.error("unexpected end of input") }
            if self.b[self.i] == UInt8(ascii: ",") {
                self.i += 1
            } else if self.b[self.i] == UInt8(ascii: "}") {
                self.i += 1
                return .object(out)
            } else {
                throw self.error("expected ',' or '}'")
            }
        }
    }

    private mutating func array() throws(SyntaxError) -> JSONValue {
        self.depth += 1
        defer { self.depth -= 1 }
        guard self.depth <= Self.maxDepth else { throw self.error("nesting too deep") }
        self.i += 1
        var out: [JSONValue] = []
        self.skipWhitespace()
        if self.i < self.b.count, self.b[self.i] == UInt8(ascii: "]") {
            self.i += 1
            return .array(out)
        }
        while true {
            self.skipWhitespace()
            out.append(try self.value())
            self.skipWhitespace()
            guard self.i < self.b.count else { throw self.error("unexpected end of input") }
            if self.b[self.i] == UInt8(ascii: ",") {
                self.i += 1
            } else if self.b[self.i] == UInt8(ascii: "]") {
                self.i += 1
                return .array(out)
            } else {
                throw self.error("expected ',' or ']'")
            }
        }
    }

    private mutating func number() throws(SyntaxError) -> Double {
        let start = self.i
        if self.b[self.i] == UInt8(ascii: "-") { self.i += 1 }
        func digits() -> Int {
            let s = self.i
            while self.i < self.b.count, self.b[self.i] >= 0x30, self.b[self.i] <= 0x39 { self.i += 1 }
            return self.i - s
        }
        guard self.i < self.b.count else { throw self.error("invalid number") }
        if self.b[self.i] == UInt8(ascii: "0") {
            self.i += 1
        } else if digits() == 0 {
            throw self.error("invalid number")
        }
        if self.i < self.b.count, self.b[self.i] == UInt8(ascii: ".") {
            self.i += 1
            guard digits() > 0 else { throw self.error("invalid number") }
        }
        if self.i < self.b.count, self.b[self.i] == UInt8(ascii: "e") || self.b[self.i] == UInt8(ascii: "E") {
            self.i += 1
            if self.i < self.b.count, self.b[self.i] == UInt8(ascii: "+") || self.b[self.i] == UInt8(ascii: "-") { self.i += 1 }
            guard digits() > 0 else { throw self.error("invalid number") }
        }
        guard let d = Double(String(decoding: self.b[start..<self.i], as: UTF8.self)) else { throw self.error("invalid number") }
        return d
    }

    private mutating func string() throws(SyntaxError) -> String {
        self.i += 1
        let start = self.i
        // Fast path: no escapes.
        while self.i < self.b.count {
            let c = self.b[self.i]
            if c == UInt8(ascii: "\"") {
                let s = String(validating: self.b[start..<self.i], as: UTF8.self)
                self.i += 1
                guard let s else { throw self.error("invalid UTF-8 in string") }
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw self.error("control character in string") }
            self.i += 1
        }
        var out = Array(self.b[start..<self.i])
        while self.i < self.b.count {
            let c = self.b[self.i]
            if c == UInt8(ascii: "\"") {
                self.i += 1
                guard let s = String(validating: out, as: UTF8.self) else { throw self.error("invalid UTF-8 in string") }
                return s
            }
            if c < 0x20 { throw self.error("control character in string") }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                self.i += 1
                continue
            }
            self.i += 1
            guard self.i < self.b.count else { break }
            let e = self.b[self.i]
            self.i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try self.hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard self.i + 1 < self.b.count, self.b[self.i] == UInt8(ascii: "\\"), self.b[self.i + 1] == UInt8(ascii: "u") else {
                        throw self.error("unpaired surrogate")
                    }
                    self.i += 2
                    let low = try self.hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw self.error("unpaired surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw self.error("unpaired surrogate")
                }
                guard let u = Unicode.Scalar(scalar) else { throw self.error("invalid escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw self.error("invalid escape")
            }
        }
        throw self.error("unterminated string")
    }

    private mutating func hex4() throws(SyntaxError) -> UInt32 {
        guard self.i + 4 <= self.b.count else { throw self.error("invalid \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = self.b[self.i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw self.error("invalid \\u escape")
            }
            v = v << 4 | d
            self.i += 1
        }
        return v
    }
}

extension JSONValue {
    /// The value as compact JSON text.
    public var jsonText: String {
        var out = ""
        self.write(into: &out)
        return out
    }

    /// Appends the value as compact JSON.
    public func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n):
            if n.rounded() == n, abs(n) < 9.007e15 { out += String(Int64(n)) } else if n.isFinite { out += "\(n)" } else { out += "null" }
        case .string(let s): Self.writeString(s, into: &out)
        case .array(let a):
            out += "["
            for (k, v) in a.enumerated() {
                if k > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (k, (key, v)) in o.sorted(by: { $0.key < $1.key }).enumerated() {
                if k > 0 { out += "," }
                Self.writeString(key, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    /// Appends `s` as a JSON string literal.
    public static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
