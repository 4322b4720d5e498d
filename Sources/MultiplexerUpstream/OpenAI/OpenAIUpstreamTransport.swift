public import MultiplexerCore

/// One call for ``OpenAIUpstreamTransport``: an operation path and a JSON body, which may depend on the
/// provider (each provider gets its own upstream `model` id).
public struct OpenAIUpstreamRequest: Sendable {
    /// The operation path below the provider's base URL, e.g. `chat/completions`.
    public var path: String
    /// Whether the body asks for `"stream": true` (the response is then read as server-sent events).
    public var stream: Bool
    /// The JSON body sent to a provider.
    public var body: @Sendable (Provider) -> [UInt8]
    /// Headers of the client's request that describe it (`traceparent`, `tracestate`, `x-request-id`,
    /// `anthropic-version`, `anthropic-beta`), sent to every provider. Credentials (`Authorization`,
    /// `api-key`, `x-api-key`, `Cookie`), framing headers and values holding CR, LF or NUL are never sent,
    /// whatever is put here; a provider's own `headers` win over these.
    public var forwardedHeaders: UpstreamHeaders = [:]
    /// Headers that name the client's account (`OpenAI-Organization`, `OpenAI-Project`): sent only to
    /// providers with ``MultiplexerCore/Provider/forwardClientHeaders``, under the same rules as
    /// ``forwardedHeaders``.
    public var accountHeaders: UpstreamHeaders = [:]

    /// A request whose body depends on the provider.
    ///
    /// - Parameters:
    ///   - path: the operation path, e.g. `chat/completions`.
    ///   - stream: whether the response is a stream.
    ///   - body: makes the JSON body for a provider.
    public init(path: String, stream: Bool = false, body: @escaping @Sendable (Provider) -> [UInt8]) {
        self.path = path
        self.stream = stream
        self.body = body
    }

    /// A request with the same JSON body for every provider.
    ///
    /// - Parameters:
    ///   - path: the operation path, e.g. `chat/completions`.
    ///   - body: the JSON body.
    ///   - stream: whether the response is a stream.
    public init(path: String, body: [UInt8], stream: Bool = false) {
        self.init(path: path, stream: stream) { _ in body }
    }
}

/// What an upstream answered.
public enum OpenAIUpstreamBody: Sendable {
    /// A whole body: any non-stream response, and the error body of a stream request.
    case complete([UInt8])
    /// A stream's events, starting with the first one (which has already arrived).
    case events(SSEEventStream)
}

/// The gateway's ``UpstreamTransport`` over ``CurlClient``: sends an OpenAI-compatible request to a provider.
///
/// The request goes to `provider.baseURL + "/" + path` as a `POST` with `Authorization: Bearer <apiKey>`,
/// `Content-Type: application/json`, the client headers the request forwards
/// (``OpenAIUpstreamRequest/forwardedHeaders``, and ``OpenAIUpstreamRequest/accountHeaders`` where the
/// provider allows them), and the provider's extra headers (which win over forwarded ones and may replace
/// the defaults, e.g. an `api-key` header instead of the bearer token), within the provider's timeouts.
///
/// - A non-stream call returns the whole body, with `usage` read from a 2xx JSON body and `errorCode` from
///   an error body (`{"error": {"code" | "type"}}`). A 2xx body that is not what the operation returns is
///   marked ``MultiplexerCore/UpstreamResponse/invalidBody`` (the router fails over from it).
/// - A stream call with a 2xx answer returns once the first event has arrived (or fails with the first-token
///   timeout), with ``UpstreamResponse/settlesLater`` set and the events as ``OpenAIUpstreamBody/events``.
///   Its error answers come back whole, like non-stream ones.
///
/// The API key is never logged and never part of an error message.
public struct OpenAIUpstreamTransport: UpstreamTransport {
    public typealias Request = OpenAIUpstreamRequest
    public typealias Body = OpenAIUpstreamBody

    /// The client that carries the calls.
    public let client: CurlClient
    /// The most bytes read of an error body of a stream request.
    public var maxErrorBodyBytes: Int

    /// - Parameters:
    ///   - client: the libcurl client (running).
    ///   - maxErrorBodyBytes: the most bytes read of a stream request's error body.
    public init(client: CurlClient, maxErrorBodyBytes: Int = 1024 * 1024) {
        self.client = client
        self.maxErrorBodyBytes = maxErrorBodyBytes
    }

    public func send(_ request: OpenAIUpstreamRequest, attempt: UpstreamAttempt) async throws(UpstreamError) -> UpstreamResponse<OpenAIUpstreamBody> {
        try await self.send(request, to: attempt.provider, trace: attempt.trace)
    }

    /// The GenAI operation name of a path: `chat` (`chat/completions`, `responses`, `messages`),
    /// `text_completion`, `embeddings`; any other path as it is.
    public func operationName(of request: OpenAIUpstreamRequest) -> String {
        Self.operationName(path: request.path)
    }

    /// The GenAI operation name of an operation path (see ``operationName(of:)``).
    public static func operationName(path: String) -> String {
        var p = Substring(path)
        while p.first == "/" { p.removeFirst() }
        switch p {
        case "chat/completions", "responses", "messages": return "chat"
        case "completions": return "text_completion"
        case "embeddings": return "embeddings"
        default: return String(p)
        }
    }

    /// Sends `request` to `provider` (what ``send(_:attempt:)`` does for the attempt's provider).
    ///
    /// - Parameters:
    ///   - request: the operation and body.
    ///   - provider: where to send it, with which credential and timeouts.
    ///   - trace: the attempt's span: its `traceparent` replaces the client's, and a stream's first event is
    ///     marked on it.
    public func send(
        _ request: OpenAIUpstreamRequest, to provider: Provider, trace: AttemptTrace? = nil
    ) async throws(UpstreamError) -> UpstreamResponse<OpenAIUpstreamBody> {
        let http = Self.makeHTTPRequest(request, provider: provider, propagation: trace?.propagation ?? [])
        do {
            return request.stream
                ? try await self.sendStreaming(http, operation: request.path, trace: trace)
                : try await self.sendBuffered(http, operation: request.path)
        } catch {
            throw Self.redacting(provider.apiKey, in: error)
        }
    }

    private func sendBuffered(_ http: UpstreamHTTPRequest, operation: String) async throws(UpstreamError) -> UpstreamResponse<OpenAIUpstreamBody> {
        let response = try await self.client.execute(http)
        return Self.complete(status: response.status, headers: response.headers, body: response.body, operation: operation)
    }

    private func sendStreaming(
        _ http: UpstreamHTTPRequest, operation: String, trace: AttemptTrace?
    ) async throws(UpstreamError) -> UpstreamResponse<OpenAIUpstreamBody> {
        let response = try await self.client.stream(http)
        let isEventStream = response.headers["content-type"]?.lowercased().hasPrefix("text/event-stream") ?? true
        guard (200..<300).contains(response.status), isEventStream else {
            // An error, or a provider that answered a stream request with plain JSON: read it whole.
            let body = try await response.body.collect(upTo: self.maxErrorBodyBytes)
            return Self.complete(status: response.status, headers: response.headers, body: body, operation: operation)
        }
        var events = SSEEventStream(bytes: response.body).makeAsyncIterator()
        guard let first = try await events.next() else {
            throw UpstreamError(.invalidResponse, message: "the stream closed before its first event")
        }
        trace?.markFirstEvent()
        // Nothing has reached the client yet: a first event that is not JSON (nor the end marker) is a broken
        // answer the router can still fail over from. Later events are relayed as they come.
        var model: String?
        if first.data != "[DONE]" {
            guard let object = JSONParser.object(decoding: ["model"], in: Array(first.data.utf8)) else {
                throw UpstreamError(.invalidResponse, message: "the stream's first event is not JSON")
            }
            model = object.decoded["model"]?.stringValue
        }
        return UpstreamResponse(
            status: response.status, headers: response.headers, body: .events(SSEEventStream(resuming: events, prepending: first)),
            settlesLater: true, model: model)
    }

    /// A whole response. A 2xx body is checked against what the operation returns
    /// (``OpenAIResponseInspector/inspectSuccess(_:operation:contentType:)``): one that is not is marked
    /// ``UpstreamResponse/invalidBody``, and the router treats it as a failure of the provider.
    static func complete(status: Int, headers: UpstreamHeaders, body: [UInt8], operation: String) -> UpstreamResponse<OpenAIUpstreamBody> {
        guard (200..<300).contains(status) else {
            return UpstreamResponse(status: status, headers: headers, body: .complete(body), errorCode: OpenAIResponseInspector.errorCode(in: body))
        }
        let inspected = OpenAIResponseInspector.inspectSuccess(body, operation: operation, contentType: headers["content-type"])
        return UpstreamResponse(
            status: status, headers: headers, body: .complete(body), usage: inspected.usage, invalidBody: inspected.invalid, model: inspected.model)
    }

    /// The HTTP request for `request` on `provider`.
    ///
    /// - Parameters:
    ///   - request: the operation and body.
    ///   - provider: the target provider.
    ///   - propagation: the attempt span's `traceparent` (and `tracestate`): sent instead of the client's.
    public static func makeHTTPRequest(
        _ request: OpenAIUpstreamRequest, provider: Provider, propagation: [(name: String, value: String)] = []
    ) -> UpstreamHTTPRequest {
        var base = Substring(provider.baseURL)
        while base.last == "/" { base.removeLast() }
        var path = Substring(request.path)
        while path.first == "/" { path.removeFirst() }

        let custom = provider.headers.sorted { $0.key < $1.key }
        let customNames = Set(custom.map { $0.key.lowercased() })
        var headers = UpstreamHeaders()
        if !provider.apiKey.isEmpty && !customNames.contains("authorization") {
            headers.add(name: "Authorization", value: "Bearer \(provider.apiKey)")
        }
        if !customNames.contains("content-type") {
            headers.add(name: "Content-Type", value: "application/json")
        }
        if !customNames.contains("accept") {
            headers.add(name: "Accept", value: request.stream ? "text/event-stream" : "application/json")
        }
        var forwarded = request.forwardedHeaders.fields
        if provider.forwardClientHeaders { forwarded += request.accountHeaders.fields }
        let propagated = Set(propagation.map { $0.name.lowercased() })
        for field in forwarded where Self.mayForward(field) && !customNames.contains(field.name.lowercased()) {
            // With tracing on, the attempt's own span context replaces the client's (same trace id).
            if !propagated.isEmpty && (field.name.lowercased() == "traceparent" || field.name.lowercased() == "tracestate") { continue }
            headers.add(name: field.name, value: field.value)
        }
        for (name, value) in propagation where !customNames.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        for (name, value) in custom {
            headers.add(name: name, value: value)
        }
        return UpstreamHTTPRequest(
            method: "POST", url: "\(base)/\(path)", headers: headers, body: request.body(provider), timeouts: UpstreamTimeouts(provider: provider),
            tls: provider.tls, maxEventBytes: provider.maxEventBytes)
    }

    /// Header names a client's request never passes on to a provider: credentials (only the provider's own
    /// reaches it) and the headers this transport or libcurl writes itself.
    static let neverForwarded: Set<String> = [
        "authorization", "api-key", "x-api-key", "cookie", "proxy-authorization", "content-type", "content-length", "accept", "host",
        "transfer-encoding", "connection", "expect", "te", "upgrade",
    ]

    /// Whether a client header may be forwarded: not a name of ``neverForwarded``, a valid token for a name,
    /// and a value without CR, LF or NUL (which would split or end the header).
    static func mayForward(_ field: UpstreamHeaders.Field) -> Bool {
        !field.name.isEmpty && !Self.neverForwarded.contains(field.name.lowercased())
            && field.name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
            && !field.value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }
    }

    /// `error` with every occurrence of the credential replaced (defence in depth: libcurl's messages never
    /// contain request headers, but a base URL could embed a secret in the same text).
    static func redacting(_ secret: String, in error: UpstreamError) -> UpstreamError {
        guard secret.utf8.count >= 4, error.message.contains(secret) else { return error }
        return UpstreamError(error.kind, message: error.message.replacing(secret, with: "<redacted>"))
    }
}
