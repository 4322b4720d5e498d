import HTTPTypes
public import Hummingbird
import MultiplexerCore
import NIOCore

/// A fake provider for tests, the demo and benchmarks that behaves like a real one.
///
/// - **Strict limits.** Rolling rpm and tpm over the last 60 s and a maximum concurrency; a request that would
///   exceed one is answered 429 and counted as an *overshoot* (a correct gateway never causes one).
/// - **Timing.** A non-streaming answer's headers come only once the whole answer is ready, after
///   ``Configuration/latency``. A stream's headers come at once; its first event comes after
///   ``Configuration/latency`` (the time to first token), then one event every ``Configuration/tokenInterval``.
/// - **Rate-limit headers** on every answer, computed from the strict limits, in the style of
///   ``Configuration/dialect`` (OpenAI, Anthropic or Azure), and 429s in that style too.
/// - **Failure modes** (``Mode``), chosen at start or switched at run time with `POST /mock/mode`.
/// - **Counters** (``MockProviderState/Counters``) and the headers of the last 64 requests
///   (``MockProviderState/recentRequests()``).
///
/// - **Prefill** (mid-stream continuation): a chat request ending with an `assistant` message is answered from
///   the word after the prefilled ones (the answer is `tok1 tok2 … tokN` whoever serves it), or refused with
///   400 `invalid_prefill` when ``Configuration/acceptsPrefill`` is off. Every stream starts with a `role` delta.
///
/// Control routes: `GET /mock/stats`, `GET /mock/requests`, `POST /mock/mode {"mode": …, "retry_after": s, "dialect": …,
/// "prefill": bool, "break_after": k}`, `POST /mock/reset`.
public struct MockProvider: Sendable {
    /// What the mock does with each request.
    ///
    /// The stream modes (`comments-only`, `blank-keepalive`, `trickle-bytes`, `endless-line`) are meant for stream
    /// requests; a non-stream request gets the equivalent described on each case. The broken-body modes
    /// (`invalid-json-200`, `empty-200`, `no-choices-200`) are meant for non-stream requests; a stream request gets a
    /// 200 event stream broken the same way.
    public enum Mode: String, Sendable, CaseIterable {
        /// Serve normally (within the strict limits).
        case ok
        /// Serve normally, but the rate-limit headers announce exhaustion: remaining 0, reset in `retry_after` seconds.
        case exhausted
        /// 500 Internal Server Error.
        case error500 = "500"
        /// 503 Service Unavailable.
        case error503 = "503"
        /// 529 `overloaded_error` (Anthropic's "overloaded", in Anthropic's error shape whatever the dialect).
        case overloaded = "529"
        /// 401 with an error body that echoes the bearer token (a careless provider).
        case unauthorized = "401"
        /// 400 Bad Request (the client's fault: relayed, never failed over).
        case badRequest = "400"
        /// 404 Not Found (the model id does not exist there).
        case notFound = "404"
        /// 429 in the dialect's style, waiting `retry_after` seconds (a provider's own limit the gateway could not know).
        case rateLimited = "429"
        /// Accept the request and never answer.
        case hang
        /// Close the connection before any response.
        case reset
        /// Streams: send part of the events, then break the connection.
        case streamCut = "stream-cut"
        /// Streams: send part of the events, then go silent.
        case streamStall = "stream-stall"
        /// Streams: a 200 event stream of `: keep-alive` comment lines only, one every
        /// ``Configuration/keepAliveInterval``, forever. Non-stream: a 200 JSON answer whose body is only blanks, one
        /// every interval, forever (a provider's whitespace keep-alive).
        case commentsOnly = "comments-only"
        /// Streams: a 200 event stream of blank lines only, one every ``Configuration/keepAliveInterval``, forever.
        /// Non-stream: a 200 JSON answer whose body is only newlines, one every interval, forever.
        case blankKeepalive = "blank-keepalive"
        /// The answer (stream or not) one byte every ``Configuration/trickleInterval``, after the latency.
        case trickleBytes = "trickle-bytes"
        /// Streams: `data: ` then bytes without any newline, as fast as the client reads, until it goes away (or
        /// 256 MiB have been sent).
        /// Non-stream: a 200 JSON answer `{"id":"` followed by the same endless bytes.
        case endlessLine = "endless-line"
        /// Non-stream: 200, `content-type: application/json`, a body that is not JSON. Streams: events whose data is
        /// not JSON, then `[DONE]`.
        case invalidJSON200 = "invalid-json-200"
        /// 200 with an empty body (a JSON or an event-stream content type, as asked).
        case empty200 = "empty-200"
        /// Non-stream: a 200 JSON object without `choices` (for embeddings: without `data`). Streams: chunks without
        /// `choices`, then `[DONE]`.
        case noChoices200 = "no-choices-200"

        /// Whether the answer is a 200 whose body is broken (the request is counted as failed, not served).
        var breaksBody: Bool {
            switch self {
            case .commentsOnly, .blankKeepalive, .trickleBytes, .endlessLine, .invalidJSON200, .empty200, .noChoices200: true
            default: false
            }
        }
    }

    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        public var rpm: Int?
        public var tpm: Int?
        public var maxConcurrent: Int?
        /// Non-stream: the time until the headers (the whole answer is ready then). Streams: the time to the first
        /// event (the headers come at once).
        public var latency: Duration = .zero
        /// Fraction of requests answered 500 (0…1).
        public var failRate = 0.0
        /// Content events per streamed answer (one token each).
        public var streamChunks = 5
        /// The time between streamed events after the first.
        public var tokenInterval: Duration = .milliseconds(2)
        /// The former name of ``tokenInterval``.
        public var chunkDelay: Duration {
            get { self.tokenInterval }
            set { self.tokenInterval = newValue }
        }
        /// Completion tokens generated when the request sets no max_tokens.
        public var completionTokens = 8
        public var mode = Mode.ok
        /// Seconds to wait that a `429` mode answer asks for, and the reset that `exhausted` mode announces.
        public var retryAfter = 2
        /// The provider whose 429s and rate-limit headers the mock imitates.
        public var dialect = Dialect.openai
        /// Whether 2xx answers carry rate-limit headers (`x-ratelimit-*`). Off, the mock is a provider that
        /// does not announce its limits (many self-hosted servers): the gateway then has only its own quotas.
        public var announcesLimits = true
        /// The time between keep-alives in `comments-only` and `blank-keepalive` modes.
        public var keepAliveInterval: Duration = .milliseconds(100)
        /// The time between bytes in `trickle-bytes` mode.
        public var trickleInterval: Duration = .milliseconds(200)
        /// Whether a chat request whose last message is an `assistant` prefill is continued (its answer resumes
        /// after the prefilled words) — or refused with 400 `invalid_prefill`, like a provider without prefill.
        public var acceptsPrefill = true
        /// Content events a `stream-cut` or `stream-stall` stream sends before it breaks; `nil`: half of them,
        /// plus one.
        public var breakAfter: Int?
        public init() {}
    }

    public let state: MockProviderState
    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.state = MockProviderState(configuration: configuration)
    }

    /// The application (run it, or test it).
    public func buildApplication(onServerRunning: (@Sendable (Int) async -> Void)? = nil) -> some ApplicationProtocol {
        let router = Hummingbird.Router(context: MockContext.self)
        let state = self.state
        router.post("/v1/**") { request, context in
            try await MockHandler(state: state).handle(request, context: context)
        }
        router.get("/v1/models") { _, _ in
            Self.json(.ok, #"{"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"mock"}]}"#)
        }
        router.get("/mock/stats") { _, _ in Self.json(.ok, state.statsJSON()) }
        router.get("/mock/requests") { _, _ in Self.json(.ok, state.recentRequestsJSON()) }
        router.post("/mock/reset") { _, _ in
            state.reset()
            return Self.json(.ok, "{}")
        }
        router.post("/mock/mode") { request, _ in
            var req = request
            let body = try await req.collectBody(upTo: 4096)
            guard let doc = try? JSONParser.parse(Array(body.readableBytesView)), let m = doc.value["mode"]?.stringValue, let mode = Mode(rawValue: m)
            else {
                return Self.json(.badRequest, #"{"error":{"message":"send {\"mode\": …}"}}"#)
            }
            let dialect = doc.value["dialect"]?.stringValue.flatMap(Dialect.init(rawValue:))
            if doc.value["dialect"] != nil, dialect == nil {
                return Self.json(.badRequest, #"{"error":{"message":"unknown dialect"}}"#)
            }
            let prefill: Bool?
            switch doc.value["prefill"] {
            case .bool(let b)?: prefill = b
            default: prefill = nil
            }
            state.setMode(mode, retryAfter: doc.value["retry_after"]?.intValue, dialect: dialect, acceptsPrefill: prefill, breakAfter: doc.value["break_after"]?.intValue)
            return Self.json(.ok, "{\"mode\":\"\(mode.rawValue)\",\"dialect\":\"\(state.dialect.rawValue)\"}")
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(self.configuration.host, port: self.configuration.port), serverName: "mock-provider"),
            onServerRunning: { channel in await onServerRunning?(channel.localAddress?.port ?? 0) })
    }

    /// Runs the mock until SIGTERM or SIGINT.
    public func run(onServerRunning: (@Sendable (Int) async -> Void)? = nil) async throws {
        try await self.buildApplication(onServerRunning: onServerRunning).runService()
    }

    static func json(_ status: HTTPResponse.Status, _ text: String, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
