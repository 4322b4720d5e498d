import Foundation
import HTTPTypes
public import Hummingbird
import MultiplexerCore
import NIOCore
import Synchronization

/// A fake OpenAI-compatible provider for tests, the demo and benchmarks.
///
/// It enforces **strict** rolling limits (rpm, tpm over the last 60 s, and max concurrency) and answers
/// 429 + `Retry-After` when a request would exceed them — and counts every such 429 as an *overshoot*,
/// since a correct gateway never lets one happen. Failure modes (switchable at runtime with
/// `POST /mock/mode`) simulate misbehaving providers.
///
/// Control routes: `GET /mock/stats`, `POST /mock/mode {"mode": …, "retry_after": s}`, `POST /mock/reset`.
public struct MockProvider: Sendable {
    /// What the mock does with each request.
    public enum Mode: String, Sendable, CaseIterable {
        /// Serve normally (within the strict limits).
        case ok
        /// 500 Internal Server Error.
        case error500 = "500"
        /// 503 Service Unavailable.
        case error503 = "503"
        /// 401 with an error body that echoes the bearer token (a careless provider).
        case unauthorized = "401"
        /// 400 Bad Request (the client's fault: relayed, never failed over).
        case badRequest = "400"
        /// 404 Not Found (the model id does not exist there).
        case notFound = "404"
        /// 429 with `Retry-After` (a provider's own limit the gateway could not know).
        case rateLimited = "429"
        /// Accept the request and never answer.
        case hang
        /// Close the connection before any response.
        case reset
        /// Streams: send part of the events, then break the connection.
        case streamCut = "stream-cut"
        /// Streams: send part of the events, then go silent.
        case streamStall = "stream-stall"
    }

    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        public var rpm: Int?
        public var tpm: Int?
        public var maxConcurrent: Int?
        public var latency: Duration = .zero
        /// Fraction of requests answered 500 (0…1).
        public var failRate = 0.0
        public var streamChunks = 5
        public var chunkDelay: Duration = .milliseconds(2)
        /// Completion tokens generated when the request sets no max_tokens.
        public var completionTokens = 8
        public var mode = Mode.ok
        /// `Retry-After` seconds in `429` mode.
        public var retryAfter = 2
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
        router.post("/mock/reset") { _, _ in
            state.reset()
            return Self.json(.ok, "{}")
        }
        router.post("/mock/mode") { request, _ in
            var req = request
            let body = try await req.collectBody(upTo: 4096)
            guard let doc = try? JSONParser.parse(Array(body.readableBytesView)), let m = doc.value["mode"]?.stringValue, let mode = Mode(rawValue: m) else {
                return Self.json(.badRequest, #"{"error":{"message":"send {\"mode\": …}"}}"#)
            }
            state.setMode(mode, retryAfter: doc.value["retry_after"]?.intValue)
            return Self.json(.ok, "{\"mode\":\"\(mode.rawValue)\"}")
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

/// A request context that keeps the channel, so `reset` mode can close it.
public struct MockContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel
    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

/// The mock's counters and strict windows.
public final class MockProviderState: Sendable {
    /// What the mock has seen.
    public struct Counters: Sendable, Hashable {
        public var requests = 0
        public var served = 0
        /// 429s because a request would have exceeded the mock's own strict limits.
        public var overshoot = 0
        /// 429s of `429` mode.
        public var forced429 = 0
        public var failed = 0
        public var promptTokens = 0
        public var completionTokens = 0
        public var inFlight = 0
        public var maxInFlight = 0
    }

    struct State {
        var counters = Counters()
        var requestLog: [ContinuousClock.Instant] = []
        var tokenLog: [(ContinuousClock.Instant, Int)] = []
        var mode: MockProvider.Mode
        var retryAfter: Int
    }

    let configuration: MockProvider.Configuration
    private let state: Mutex<State>

    init(configuration: MockProvider.Configuration) {
        self.configuration = configuration
        self.state = Mutex(State(mode: configuration.mode, retryAfter: configuration.retryAfter))
    }

    public var counters: Counters { self.state.withLock { $0.counters } }
    public var mode: MockProvider.Mode { self.state.withLock { $0.mode } }

    public func setMode(_ m: MockProvider.Mode, retryAfter: Int?) {
        self.state.withLock {
            $0.mode = m
            if let r = retryAfter { $0.retryAfter = r }
        }
    }

    public func reset() {
        self.state.withLock {
            $0.counters = Counters()
            $0.requestLog = []
            $0.tokenLog = []
        }
    }

    enum Admission {
        case serve
        case limited(retryAfter: Int)
    }

    /// Counts the request and checks the strict limits for `tokens`.
    func admit(tokens: Int) -> Admission {
        let now = ContinuousClock.now
        return self.state.withLock { s in
            s.counters.requests += 1
            let cutoff = now - .seconds(60)
            s.requestLog.removeAll { $0 <= cutoff }
            s.tokenLog.removeAll { $0.0 <= cutoff }
            if let rpm = self.configuration.rpm, s.requestLog.count + 1 > rpm {
                s.counters.overshoot += 1
                return .limited(retryAfter: Self.secondsUntil(s.requestLog.first.map { $0 + .seconds(60) }, now))
            }
            if let tpm = self.configuration.tpm, s.tokenLog.reduce(0, { $0 + $1.1 }) + tokens > tpm {
                s.counters.overshoot += 1
                return .limited(retryAfter: Self.secondsUntil(s.tokenLog.first.map { $0.0 + .seconds(60) }, now))
            }
            if let mc = self.configuration.maxConcurrent, s.counters.inFlight + 1 > mc {
                s.counters.overshoot += 1
                return .limited(retryAfter: 1)
            }
            s.requestLog.append(now)
            s.tokenLog.append((now, tokens))
            s.counters.inFlight += 1
            s.counters.maxInFlight = max(s.counters.maxInFlight, s.counters.inFlight)
            return .serve
        }
    }

    func finished(served: Bool, usage: TokenUsage?) {
        self.state.withLock { s in
            s.counters.inFlight -= 1
            if served { s.counters.served += 1 } else { s.counters.failed += 1 }
            if let u = usage {
                s.counters.promptTokens += u.promptTokens
                s.counters.completionTokens += u.completionTokens
            }
        }
    }

    func countForced429() -> Int {
        self.state.withLock { s in
            s.counters.requests += 1
            s.counters.forced429 += 1
            return s.retryAfter
        }
    }

    func countFailure() {
        self.state.withLock { s in
            s.counters.requests += 1
            s.counters.failed += 1
        }
    }

    static func secondsUntil(_ t: ContinuousClock.Instant?, _ now: ContinuousClock.Instant) -> Int {
        guard let t else { return 1 }
        return max(1, Int((now.duration(to: t).seconds).rounded(.up)))
    }

    public func statsJSON() -> String {
        let c = self.counters
        return """
            {"requests":\(c.requests),"served":\(c.served),"overshoot":\(c.overshoot),"forced_429":\(c.forced429),"failed":\(c.failed),\
            "prompt_tokens":\(c.promptTokens),"completion_tokens":\(c.completionTokens),"in_flight":\(c.inFlight),"max_in_flight":\(c.maxInFlight),\
            "mode":"\(self.mode.rawValue)"}
            """
    }
}
