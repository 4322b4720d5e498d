import HTTPTypes
import MultiplexerCore

/// The headers of a client's request that describe the request and reach the provider (ARCHITECTURE §3
/// step 5), and the request's id.
///
/// - Always forwarded: `traceparent`, `tracestate`, `anthropic-version`, `anthropic-beta`, and the
///   client's `x-request-id` when it is sane (``isSaneRequestID(_:)``).
/// - Forwarded only to providers with `forward_client_headers: true`: `OpenAI-Organization`,
///   `OpenAI-Project`.
/// - Never: `Authorization`, `api-key`, `x-api-key`, `Cookie` (only the provider's own credential reaches
///   it), nor any header not listed here. A value holding CR, LF or NUL is dropped.
///
/// The upstream transport applies the same exclusions again, and lets a provider's configured `headers`
/// win over forwarded ones.
struct ClientHeaders: Sendable {
    /// The request's id: the client's `x-request-id` when sane, else `nil` (the gateway generates one).
    var requestID: String?
    /// Headers for every provider.
    var forwarded: UpstreamHeaders
    /// Headers only for providers with `forward_client_headers`.
    var account: UpstreamHeaders

    static let describing = ["traceparent", "tracestate", "anthropic-version", "anthropic-beta"].map { HTTPField.Name($0)! }
    static let accountNames = ["OpenAI-Organization", "OpenAI-Project"].map { HTTPField.Name($0)! }
    static let requestIDName = HTTPField.Name("x-request-id")!

    /// Reads them from a client's request headers.
    init(_ headers: HTTPFields) {
        func collect(_ names: [HTTPField.Name]) -> UpstreamHeaders {
            var out = UpstreamHeaders()
            for name in names {
                // Repeated fields are combined (RFC 9110 §5.3), as a provider would read them.
                guard let value = headers[name], Self.isForwardable(value) else { continue }
                out.add(name: name.canonicalName, value: value)
            }
            return out
        }
        self.forwarded = collect(Self.describing)
        self.account = collect(Self.accountNames)
        if let id = headers[Self.requestIDName], Self.isSaneRequestID(id) {
            self.requestID = id
            self.forwarded.add(name: Self.requestIDName.canonicalName, value: id)
        } else {
            self.requestID = nil
        }
    }

    /// Whether a client's request id is kept: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`.
    static func isSaneRequestID(_ id: String) -> Bool {
        let u = id.utf8
        return (1...128).contains(u.count)
            && u.allSatisfy { c in
                (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z"))
                    || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: ".") || c == UInt8(ascii: "_")
                    || c == UInt8(ascii: ":") || c == UInt8(ascii: "-")
            }
    }

    /// A value without CR, LF or NUL (which would split or cut the upstream header).
    static func isForwardable(_ value: String) -> Bool {
        !value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }
    }
}
