import MultiplexerCore

/// A small, strict JSON reader over bytes that decodes only what it is asked for: selected members of the
/// top-level object are decoded into ``JSONValue``s, everything else is skipped without allocating.
struct JSONScanner {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0
    private static let maxDepth = 64

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// The members named in `names` of the top-level object (of the first element when the top level is an
    /// array), or `nil` when the text is not such JSON.
    static func members(_ names: [String], in bytes: some Collection<UInt8>) -> [String: JSONValue]? {
        let read = { (buffer: UnsafeBufferPointer<UInt8>) -> [String: JSONValue]? in
            var scanner = JSONScanner(buffer)
            return scanner.topLevelMembers(names)
        }
        if let result = bytes.withContiguousStorageIfAvailable(read) { return result }
        return Array(bytes).withUnsafeBufferPointer(read)
    }

    private mutating func topLevelMembers(_ names: [String]) -> [String: JSONValue]? {
        self.skipWhitespace()
        if self.peek == UInt8(ascii: "[") {
            self.index += 1
            self.skipWhitespace()
        }
        guard self.consume(UInt8(ascii: "{")) else { return nil }
        var found: [String: JSONValue] = [:]
        self.skipWhitespace()
        if self.consume(UInt8(ascii: "}")) { return found }
        while true {
            self.skipWhitespace()
            guard let key = self.parseString() else { return nil }
            self.skipWhitespace()
            guard self.consume(UInt8(ascii: ":")) else { return nil }
            self.skipWhitespace()
            if names.contains(key) {
                guard let value = self.parseValue() else { return nil }
                found[key] = value
            } else {
                guard self.skipValue() else { return nil }
            }
            self.skipWhitespace()
            if self.consume(UInt8(ascii: ",")) { continue }
            guard self.consume(UInt8(ascii: "}")) else { return nil }
            return found
        }
    }

    // MARK: - Values

    private mutating func parseValue() -> JSONValue? {
        guard let byte = self.peek else { return nil }
        switch byte {
        case UInt8(ascii: "{"):
            guard self.enter() else { return nil }
            defer { self.depth -= 1 }
            self.index += 1
            var object: [String: JSONValue] = [:]
            self.skipWhitespace()
            if self.consume(UInt8(ascii: "}")) { return .object(object) }
            while true {
                self.skipWhitespace()
                guard let key = self.parseString() else { return nil }
                self.skipWhitespace()
                guard self.consume(UInt8(ascii: ":")) else { return nil }
                self.skipWhitespace()
                guard let value = self.parseValue() else { return nil }
                object[key] = value
                self.skipWhitespace()
                if self.consume(UInt8(ascii: ",")) { continue }
                guard self.consume(UInt8(ascii: "}")) else { return nil }
                return .object(object)
            }
        case UInt8(ascii: "["):
            guard self.enter() else { return nil }
            defer { self.depth -= 1 }
            self.index += 1
            var array: [JSONValue] = []
            self.skipWhitespace()
            if self.consume(UInt8(ascii: "]")) { return .array(array) }
            while true {
                self.skipWhitespace()
                guard let value = self.parseValue() else { return nil }
                array.append(value)
                self.skipWhitespace()
                if self.consume(UInt8(ascii: ",")) { continue }
                guard self.consume(UInt8(ascii: "]")) else { return nil }
                return .array(array)
            }
        case UInt8(ascii: "\""):
            return self.parseString().map(JSONValue.string)
        case UInt8(ascii: "t"):
            return self.consumeLiteral("true") ? .bool(true) : nil
        case UInt8(ascii: "f"):
            return self.consumeLiteral("false") ? .bool(false) : nil
        case UInt8(ascii: "n"):
            return self.consumeLiteral("null") ? .null : nil
        default:
            return self.parseNumber().map(JSONValue.number)
        }
    }

    private mutating func skipValue() -> Bool {
        guard let byte = self.peek else { return false }
        switch byte {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard self.enter() else { return false }
            defer { self.depth -= 1 }
            let close = byte == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            self.index += 1
            self.skipWhitespace()
            if self.consume(close) { return true }
            while true {
                self.skipWhitespace()
                if close == UInt8(ascii: "}") {
                    guard self.skipString() else { return false }
                    self.skipWhitespace()
                    guard self.consume(UInt8(ascii: ":")) else { return false }
                    self.skipWhitespace()
                }
                guard self.skipValue() else { return false }
                self.skipWhitespace()
                if self.consume(UInt8(ascii: ",")) { continue }
                return self.consume(close)
            }
        case UInt8(ascii: "\""):
            return self.skipString()
        case UInt8(ascii: "t"):
            return self.consumeLiteral("true")
        case UInt8(ascii: "f"):
            return self.consumeLiteral("false")
        case UInt8(ascii: "n"):
            return self.consumeLiteral("null")
        default:
            return self.scanNumber() != nil
        }
    }

    // MARK: - Strings

    private mutating func skipString() -> Bool {
        guard self.consume(UInt8(ascii: "\"")) else { return false }
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            self.index += 1
            if byte == UInt8(ascii: "\"") { return true }
            if byte == UInt8(ascii: "\\") { self.index += 1 } else if byte < 0x20 { return false }
        }
        return false
    }

    private mutating func parseString() -> String? {
        guard self.consume(UInt8(ascii: "\"")) else { return nil }
        let start = self.index
        // Fast path: no escapes.
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            if byte == UInt8(ascii: "\"") {
                let string = String(decoding: UnsafeBufferPointer(rebasing: self.bytes[start..<self.index]), as: UTF8.self)
                self.index += 1
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { return nil }
            self.index += 1
        }
        var scalars: [UInt8] = Array(self.bytes[start..<self.index])
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            self.index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: scalars, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let escape = self.peek else { return nil }
                self.index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escape)
                case UInt8(ascii: "b"): scalars.append(8)
                case UInt8(ascii: "f"): scalars.append(12)
                case UInt8(ascii: "n"): scalars.append(10)
                case UInt8(ascii: "r"): scalars.append(13)
                case UInt8(ascii: "t"): scalars.append(9)
                case UInt8(ascii: "u"):
                    guard var code = self.hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(code), self.consumeLiteral("\\u"), let low = self.hex4(), (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                    scalars.append(contentsOf: String(Character(scalar)).utf8)
                default:
                    return nil
                }
            default:
                if byte < 0x20 { return nil }
                scalars.append(byte)
            }
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard self.index + 4 <= self.bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
            self.index += 1
        }
        return value
    }

    // MARK: - Numbers and literals

    private mutating func scanNumber() -> Range<Int>? {
        let start = self.index
        if self.peek == UInt8(ascii: "-") { self.index += 1 }
        var digits = 0
        while let byte = self.peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
            self.index += 1
            digits += 1
        }
        guard digits > 0 else { return nil }
        if self.peek == UInt8(ascii: ".") {
            self.index += 1
            var fraction = 0
            while let byte = self.peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                self.index += 1
                fraction += 1
            }
            guard fraction > 0 else { return nil }
        }
        if let byte = self.peek, byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
            self.index += 1
            if let sign = self.peek, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { self.index += 1 }
            var exponent = 0
            while let byte = self.peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                self.index += 1
                exponent += 1
            }
            guard exponent > 0 else { return nil }
        }
        return start..<self.index
    }

    private mutating func parseNumber() -> Double? {
        guard let range = self.scanNumber() else { return nil }
        return Double(String(decoding: UnsafeBufferPointer(rebasing: self.bytes[range]), as: UTF8.self))
    }

    private mutating func consumeLiteral(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count else { return false }
        let matches = literal.withUTF8Buffer { expected in
            expected.elementsEqual(self.bytes[self.index..<(self.index + count)])
        }
        if matches { self.index += count }
        return matches
    }

    // MARK: - Helpers

    private var peek: UInt8? {
        self.index < self.bytes.count ? self.bytes[self.index] : nil
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard self.peek == byte else { return false }
        self.index += 1
        return true
    }

    private mutating func skipWhitespace() {
        while let byte = self.peek, byte == 32 || byte == 10 || byte == 13 || byte == 9 { self.index += 1 }
    }

    private mutating func enter() -> Bool {
        guard self.depth < Self.maxDepth else { return false }
        self.depth += 1
        return true
    }
}
