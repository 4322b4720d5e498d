import Foundation

/// An HTTP/1.1 response as raw text (a raw socket's bytes, `curl -i` output), split into its status, its
/// headers (names lowercased) and its body — for tests that must see exactly what went over the wire.
public struct RawHTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: String

    /// Splits `text` at its first blank line; a text without one is all body, status 0.
    public init(parsing text: String) {
        guard let split = text.range(of: "\r\n\r\n") else {
            self.status = 0
            self.headers = [:]
            self.body = text
            return
        }
        let lines = text[..<split.lowerBound].split(separator: "\r\n")
        self.status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" })
        }
        self.headers = headers
        self.body = String(text[split.upperBound...])
    }
}
