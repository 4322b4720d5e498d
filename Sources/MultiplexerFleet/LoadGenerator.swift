public import MultiplexerCore
public import MultiplexerUpstream
import Synchronization

/// Fires bounded traffic at gateway endpoints over real HTTP (libcurl) and records every answer.
public struct LoadGenerator: Sendable {
    /// One client request.
    public struct Result: Sendable, Hashable {
        /// Its number, 0-based, in the order it was sent.
        public var index: Int
        /// Which of the targets it went to.
        public var target: Int
        /// The HTTP status, or 0 when no response came (connection refused/reset, timeout).
        public var status: Int
        /// `x-multiplexer-provider`: who served it.
        public var provider: String?
        /// When it was sent and answered, since the start of the run.
        public var sent: Duration
        public var answered: Duration
        /// The transport error, when no response came.
        public var error: String?
    }

    public let client: CurlClient
    /// Base URLs (`http://127.0.0.1:port`); requests go round-robin over them.
    public let targets: [String]
    /// The model group to ask for.
    public let model: String
    /// Client-side timeout of one request.
    public var timeout: Duration = .seconds(30)

    public init(client: CurlClient, targets: [String], model: String) {
        self.client = client
        self.targets = targets
        self.model = model
    }

    /// The chat request body of request `index`, as text.
    public static func bodyText(model: String, index: Int, maxTokens: Int = 8) -> String {
        String(decoding: Self.body(model: model, index: index, maxTokens: maxTokens), as: UTF8.self)
    }

    /// The chat request body of request `index`.
    public static func body(model: String, index: Int, maxTokens: Int = 8) -> [UInt8] {
        Array(#"{"model":"\#(model)","messages":[{"role":"user","content":"Say hello to request \#(index)."}],"max_tokens":\#(maxTokens)}"#.utf8)
    }

    /// Sends `total` chat requests, at most `concurrency` at a time, and returns their results by index.
    ///
    /// - Parameters:
    ///   - total: requests to send.
    ///   - concurrency: requests in flight at once.
    ///   - spacing: pause each worker takes between its requests (0: as fast as answers come).
    ///   - origin: the instant `sent`/`answered` are measured from (default: now).
    ///   - onResult: called after each answer (e.g. to trigger something mid-run).
    public func run(
        total: Int, concurrency: Int, spacing: Duration = .zero, origin: ContinuousClock.Instant? = nil,
        onResult: (@Sendable (Result) async -> Void)? = nil
    ) async -> [Result] {
        let next = Tickets()
        let clock = ContinuousClock()
        let start = origin ?? clock.now
        return await withTaskGroup(of: [Result].self) { group in
            for _ in 0..<max(1, min(concurrency, total)) {
                group.addTask {
                    var mine: [Result] = []
                    while !Task.isCancelled {
                        let i = next.take()
                        guard i < total else { break }
                        let t = i % self.targets.count
                        let sent = start.duration(to: clock.now)
                        let r = await self.send(index: i, target: t)
                        let result = Result(index: i, target: t, status: r.status, provider: r.provider, sent: sent, answered: start.duration(to: clock.now), error: r.error)
                        mine.append(result)
                        await onResult?(result)
                        if spacing > .zero { try? await Task.sleep(for: spacing) }
                    }
                    return mine
                }
            }
            var all: [Result] = []
            for await part in group { all += part }
            return all.sorted { $0.index < $1.index }
        }
    }

    private func send(index: Int, target: Int) async -> (status: Int, provider: String?, error: String?) {
        let request = UpstreamHTTPRequest(
            method: "POST", url: self.targets[target] + "/v1/chat/completions",
            headers: ["Content-Type": "application/json", "Authorization": "Bearer demo-client"],
            body: Self.body(model: self.model, index: index), timeouts: UpstreamTimeouts(connect: .seconds(5), response: self.timeout))
        do {
            let r = try await self.client.execute(request)
            return (r.status, r.headers["x-multiplexer-provider"], nil)
        } catch {
            return (0, nil, "\(error.kind)")
        }
    }
}

/// Hands out request numbers to the workers.
private final class Tickets: Sendable {
    private let next = Atomic<Int>(0)
    func take() -> Int { self.next.add(1, ordering: .relaxed).oldValue }
}

/// Small HTTP helpers for control routes (`/readyz`, `/mock/stats`, `/admin/*`).
public struct FleetHTTP: Sendable {
    public let client: CurlClient

    public init(client: CurlClient) {
        self.client = client
    }

    /// `GET url`: status and body text, or `nil` when nothing answered.
    public func get(_ url: String, headers: UpstreamHeaders = [:], timeout: Duration = .seconds(5)) async -> (status: Int, body: String)? {
        let request = UpstreamHTTPRequest(method: "GET", url: url, headers: headers, timeouts: UpstreamTimeouts(connect: .seconds(2), response: timeout))
        guard let r = try? await self.client.execute(request) else { return nil }
        return (r.status, String(decoding: r.body, as: UTF8.self))
    }

    /// `POST url` with a JSON body: status and body text, or `nil` when nothing answered.
    public func post(_ url: String, json: String, headers: UpstreamHeaders = [:], timeout: Duration = .seconds(30)) async -> (status: Int, body: String, headers: UpstreamHeaders)? {
        var h = headers
        h.add(name: "Content-Type", value: "application/json")
        let request = UpstreamHTTPRequest(method: "POST", url: url, headers: h, body: Array(json.utf8), timeouts: UpstreamTimeouts(connect: .seconds(2), response: timeout))
        guard let r = try? await self.client.execute(request) else { return nil }
        return (r.status, String(decoding: r.body, as: UTF8.self), r.headers)
    }
}
