/// The path checks made before any routing (ARCHITECTURE §6): a path the gateway would forward must not be
/// able to name anything but the operation it says, on the provider's host, with the provider's key.
enum PathRules {
    /// Why `rawPath` (as the client sent it, percent-encoding intact, without the query) is refused, or
    /// `nil`: a `.` or `..` segment, an empty segment, a backslash, or a percent-encoded `/`, `\` or `.`.
    static func refusal(rawPath: Substring) -> String? {
        let bytes = Array(rawPath.utf8)
        if bytes.contains(UInt8(ascii: "\\")) { return "a backslash" }
        var i = 0
        while i + 2 < bytes.count {
            if bytes[i] == UInt8(ascii: "%") {
                let code = (Self.hex(bytes[i + 1]) ?? 255, Self.hex(bytes[i + 2]) ?? 255)
                // %2F '/', %5C '\', %2E '.'
                if code == (2, 15) || code == (5, 12) || code == (2, 14) { return "a percent-encoded '/', '\\' or '.'" }
            }
            i += 1
        }
        guard bytes.first == UInt8(ascii: "/") else { return "a path that does not start with '/'" }
        for segment in rawPath.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty { return "an empty path segment" }
            if segment == "." || segment == ".." { return "a '\(segment)' path segment" }
        }
        return nil
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The operations always routed; `server.passthrough` adds more.
    static let routed: Set<String> = ["chat/completions", "completions", "embeddings"]

    /// Whether `op` is a valid `server.passthrough` entry: segments of `[a-z0-9_-]+` joined by `/`.
    static func isValidOperation(_ op: String) -> Bool {
        !op.isEmpty
            && op.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { seg in
                !seg.isEmpty
                    && seg.utf8.allSatisfy { c in
                        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                            || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
                    }
            }
    }
}
