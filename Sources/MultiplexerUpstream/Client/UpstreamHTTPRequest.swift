public import MultiplexerCore

/// Time limits of one upstream call; each one that fires is reported as its own ``UpstreamError/Kind``.
public struct UpstreamTimeouts: Sendable, Hashable {
    /// DNS + TCP + TLS until the connection is up (`CURLOPT_CONNECTTIMEOUT_MS`) → ``UpstreamError/Kind/connectTimeout``.
    public var connect: Duration
    /// A buffered call: the whole call. A stream: until the response headers. → ``UpstreamError/Kind/timeout``.
    public var response: Duration
    /// Streams only: from submission to the first complete server-sent event (a `data:` event ended by a
    /// blank line; comments and keep-alive blank lines do not count) → ``UpstreamError/Kind/firstTokenTimeout``.
    /// A stream answer that is not `text/event-stream` (an error body) counts its first body byte instead.
    public var firstByte: Duration?
    /// Streams only: the longest time without a complete event once the first one arrived (time the
    /// consumer spends not reading, while the transfer is paused, does not count) →
    /// ``UpstreamError/Kind/streamIdleTimeout``.
    public var idle: Duration?

    /// - Parameters:
    ///   - connect: the connect timeout.
    ///   - response: the whole-call (buffered) or until-headers (stream) timeout.
    ///   - firstByte: the stream's time to first body byte, or `nil` for none.
    ///   - idle: the stream's idle timeout, or `nil` for none.
    public init(connect: Duration = .seconds(5), response: Duration = .seconds(120), firstByte: Duration? = nil, idle: Duration? = nil) {
        self.connect = connect
        self.response = response
        self.firstByte = firstByte
        self.idle = idle
    }

    /// A provider's configured timeouts (`connect_timeout_seconds`, `timeout_seconds`,
    /// `ttft_timeout_seconds`, `stream_idle_timeout_seconds`).
    public init(provider: Provider) {
        self.init(
            connect: provider.connectTimeout, response: provider.timeout, firstByte: provider.timeToFirstTokenTimeout,
            idle: provider.streamIdleTimeout)
    }
}

/// One HTTP request for ``CurlClient``.
///
/// Header values may carry credentials: ``description`` shows header names only.
public struct UpstreamHTTPRequest: Sendable, CustomStringConvertible {
    /// `GET`, `POST` (the default), or any other method.
    public var method: String
    /// An absolute `http://` or `https://` URL.
    public var url: String
    /// Request headers, sent in order. An empty value is sent as an empty header.
    public var headers: UpstreamHeaders
    /// The request body (sent for every method but `GET` and `HEAD`).
    public var body: [UInt8]
    /// The call's time limits.
    public var timeouts: UpstreamTimeouts
    /// How an `https://` server is verified, and the client certificate.
    public var tls: TLSOptions
    /// Streams only: one server-sent event (or one line of it) larger than this fails the stream with
    /// ``UpstreamError/Kind/eventTooLarge`` as soon as that many bytes arrived, without reading on.
    public var maxEventBytes: Int

    /// - Parameters:
    ///   - method: the HTTP method.
    ///   - url: the absolute URL.
    ///   - headers: request headers.
    ///   - body: the request body.
    ///   - timeouts: the call's time limits.
    ///   - tls: the TLS settings (system CAs, verified, by default).
    ///   - maxEventBytes: the largest server-sent event of a stream.
    public init(
        method: String = "POST", url: String, headers: UpstreamHeaders = [:], body: [UInt8] = [], timeouts: UpstreamTimeouts = UpstreamTimeouts(),
        tls: TLSOptions = TLSOptions(), maxEventBytes: Int = 1 << 20
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeouts = timeouts
        self.tls = tls
        self.maxEventBytes = maxEventBytes
    }

    /// Whether the URL is `https://` (HTTP/2 is offered only there, through ALPN).
    var isHTTPS: Bool {
        self.url.utf8.count > 8 && self.url.utf8.prefix(8).map { $0 | 0x20 }.elementsEqual("https://".utf8)
    }

    public var description: String {
        "\(self.method) \(self.url) headers: [\(self.headers.fields.map(\.name).joined(separator: ", "))] body: \(self.body.count) bytes"
    }

    /// The headers as libcurl header lines. Always adds an empty `Expect:` for requests with a body, so that
    /// libcurl never waits for `100 Continue`.
    func headerLines() throws(UpstreamError) -> [String] {
        var lines: [String] = []
        lines.reserveCapacity(self.headers.fields.count + 1)
        var hasExpect = false
        for field in self.headers.fields {
            guard Self.isToken(field.name), Self.isFieldValue(field.value) else {
                throw UpstreamError(.other, message: "invalid request header \(Self.printableName(field.name))")
            }
            if field.name.utf8.count == 6, field.name.lowercased() == "expect" { hasExpect = true }
            // libcurl: "Name:" removes a header, "Name;" sends it with an empty value.
            lines.append(field.value.isEmpty ? "\(field.name);" : "\(field.name): \(field.value)")
        }
        if !hasExpect && self.method != "GET" && self.method != "HEAD" {
            lines.append("Expect:")
        }
        return lines
    }

    private static func isToken(_ name: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { c in
                c > 32 && c < 127 && c != UInt8(ascii: ":") && c != UInt8(ascii: "(") && c != UInt8(ascii: ")") && c != UInt8(ascii: ",")
                    && c != UInt8(ascii: ";") && c != UInt8(ascii: "\"")
            }
    }

    private static func isFieldValue(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 != 0 && $0 != 10 && $0 != 13 }
    }

    private static func printableName(_ name: String) -> String {
        String(String.UnicodeScalarView(name.unicodeScalars.filter { $0.value > 32 && $0.value < 127 }.prefix(64)))
    }
}

/// A complete (buffered) HTTP response.
public struct UpstreamHTTPResponse: Sendable {
    /// The HTTP status code.
    public var status: Int
    /// The response headers of the final response (interim `1xx` responses are dropped).
    public var headers: UpstreamHeaders
    /// The whole body.
    public var body: [UInt8]

    public init(status: Int, headers: UpstreamHeaders, body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// The head of a streamed HTTP response; the body follows as ``body``.
public struct UpstreamStreamingResponse: Sendable {
    /// The HTTP status code.
    public var status: Int
    /// The response headers.
    public var headers: UpstreamHeaders
    /// The body, with back-pressure. Iterate it once; dropping it before its end aborts the transfer.
    public var body: UpstreamByteStream
}
