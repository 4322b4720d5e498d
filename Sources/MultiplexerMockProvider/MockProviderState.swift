import Foundation
import HTTPTypes
import MultiplexerCore
import Synchronization

/// The mock's counters, strict windows, current mode and the headers of its last requests.
public final class MockProviderState: Sendable {
    /// What the mock has seen.
    public struct Counters: Sendable, Hashable {
        /// Requests to `/v1/…` that arrived (every mode).
        public var requests = 0
        public var served = 0
        /// 429s because a request would have exceeded the mock's own strict limits.
        public var overshoot = 0
        /// 429s of `429` mode.
        public var forced429 = 0
        /// Error answers, closed connections, hangs and broken 200s.
        public var failed = 0
        public var promptTokens = 0
        public var completionTokens = 0
        /// Requests at the mock now: from the moment one arrives until its answer has ended (or its connection
        /// is gone), whatever the mode.
        public var inFlight = 0
        /// The most requests that were at the mock at once (``inFlight``'s high-water mark since the last reset).
        public var maxInFlight = 0
        /// Chat requests that ended with an `assistant` message (a prefill to continue) and were answered.
        public var prefilled = 0
        /// Prefilled requests refused with 400 `invalid_prefill` (``MockProvider/Configuration/acceptsPrefill`` off).
        public var refusedPrefill = 0
    }

    /// One request as it reached the mock.
    public struct RecordedRequest: Sendable, Hashable {
        public struct Header: Sendable, Hashable {
            /// Lowercased.
            public var name: String
            public var value: String
        }
        public var method: String
        /// The path and query.
        public var path: String
        /// In the order received, names lowercased; HTTP/1's `Host` (HTTP/2's `:authority`) appears as `host`.
        public var headers: [Header]

        /// The values of header `name` (case-insensitive).
        public func values(_ name: String) -> [String] {
            let n = name.lowercased()
            return self.headers.filter { $0.name == n }.map(\.value)
        }

        /// The first value of header `name` (case-insensitive).
        public subscript(_ name: String) -> String? { self.values(name).first }
    }

    /// How many requests ``recentRequests()`` keeps.
    public static let recentRequestLimit = 64

    struct State {
        var counters = Counters()
        /// Requests being served (admitted within the strict limits, answer not ended): the strict concurrency.
        var serving = 0
        var requestLog: [ContinuousClock.Instant] = []
        var tokenLog: [(ContinuousClock.Instant, Int)] = []
        var mode: MockProvider.Mode
        var retryAfter: Int
        var dialect: MockProvider.Dialect
        var recent: [RecordedRequest] = []
        /// The prefill texts of the last ``recentRequestLimit`` prefilled requests, oldest first.
        var prefills: [String] = []
        /// The bodies of the last ``recentRequestLimit`` requests (each up to 64 KiB), oldest first.
        var bodies: [String] = []
        var acceptsPrefill: Bool
        var breakAfter: Int?

        mutating func prune(_ now: ContinuousClock.Instant) {
            let cutoff = now - .seconds(60)
            self.requestLog.removeAll { $0 <= cutoff }
            self.tokenLog.removeAll { $0.0 <= cutoff }
        }
    }

    let configuration: MockProvider.Configuration
    private let state: Mutex<State>

    init(configuration: MockProvider.Configuration) {
        self.configuration = configuration
        self.state = Mutex(
            State(
                mode: configuration.mode, retryAfter: configuration.retryAfter, dialect: configuration.dialect, acceptsPrefill: configuration.acceptsPrefill,
                breakAfter: configuration.breakAfter))
    }

    public var counters: Counters { self.state.withLock { $0.counters } }
    public var mode: MockProvider.Mode { self.state.withLock { $0.mode } }
    public var dialect: MockProvider.Dialect { self.state.withLock { $0.dialect } }
    var retryAfter: Int { self.state.withLock { $0.retryAfter } }

    /// Switches the mode (and optionally the `Retry-After` seconds and the dialect).
    public func setMode(
        _ m: MockProvider.Mode, retryAfter: Int?, dialect: MockProvider.Dialect? = nil, acceptsPrefill: Bool? = nil, breakAfter: Int? = nil
    ) {
        self.state.withLock {
            $0.mode = m
            if let r = retryAfter { $0.retryAfter = r }
            if let d = dialect { $0.dialect = d }
            if let a = acceptsPrefill { $0.acceptsPrefill = a }
            if let b = breakAfter { $0.breakAfter = b < 0 ? nil : b }
        }
    }

    /// Whether prefilled requests are continued (else refused with 400 `invalid_prefill`).
    var acceptsPrefill: Bool { self.state.withLock { $0.acceptsPrefill } }
    /// Content events a `stream-cut` or `stream-stall` answer sends before it breaks (`nil`: half of them, plus one).
    var breakAfter: Int? { self.state.withLock { $0.breakAfter } }

    /// The prefill texts of the last prefilled requests, oldest first.
    public func prefills() -> [String] { self.state.withLock { $0.prefills } }

    /// The bodies of the last requests to `/v1/…` (each up to 64 KiB), oldest first.
    public func recentBodies() -> [String] { self.state.withLock { $0.bodies } }

    func recordBody(_ bytes: [UInt8]) {
        let text = String(decoding: bytes.prefix(64 << 10), as: UTF8.self)
        self.state.withLock { s in
            s.bodies.append(text)
            if s.bodies.count > Self.recentRequestLimit { s.bodies.removeFirst(s.bodies.count - Self.recentRequestLimit) }
        }
    }

    /// Counts a prefilled request (answered or refused) and records its prefill.
    func recordPrefill(_ text: String, refused: Bool) {
        self.state.withLock { s in
            if refused { s.counters.refusedPrefill += 1 } else { s.counters.prefilled += 1 }
            s.prefills.append(text)
            if s.prefills.count > Self.recentRequestLimit { s.prefills.removeFirst(s.prefills.count - Self.recentRequestLimit) }
        }
    }

    /// Zeroes the counters (requests still at the mock stay counted in flight), empties the windows and the
    /// recorded requests.
    public func reset() {
        self.state.withLock {
            let inFlight = $0.counters.inFlight
            $0.counters = Counters()
            $0.counters.inFlight = inFlight
            $0.counters.maxInFlight = inFlight
            $0.requestLog = []
            $0.tokenLog = []
            $0.recent = []
            $0.prefills = []
            $0.bodies = []
        }
    }

    /// The last ``recentRequestLimit`` requests to `/v1/…`, oldest first.
    public func recentRequests() -> [RecordedRequest] { self.state.withLock { $0.recent } }

    // MARK: The handler's bookkeeping

    /// Counts an arriving request and records its headers; the ticket keeps it in flight until it ends.
    func arrive(method: String, path: String, authority: String?, headers: HTTPFields) -> InFlightTicket {
        var recorded = RecordedRequest(method: method, path: path, headers: [])
        if let authority { recorded.headers.append(.init(name: "host", value: authority)) }
        for field in headers { recorded.headers.append(.init(name: field.name.canonicalName, value: field.value)) }
        self.state.withLock { s in
            s.counters.requests += 1
            s.counters.inFlight += 1
            s.counters.maxInFlight = max(s.counters.maxInFlight, s.counters.inFlight)
            s.recent.append(recorded)
            if s.recent.count > Self.recentRequestLimit { s.recent.removeFirst(s.recent.count - Self.recentRequestLimit) }
        }
        return InFlightTicket(state: self)
    }

    fileprivate func depart() {
        self.state.withLock { $0.counters.inFlight -= 1 }
    }

    enum Admission {
        case serve
        case limited(retryAfter: Duration)
    }

    /// Checks the strict limits for `tokens`; an admitted request holds a serving slot until ``finished(served:usage:)``.
    func admit(tokens: Int) -> Admission {
        let now = ContinuousClock.now
        return self.state.withLock { s in
            s.prune(now)
            if let rpm = self.configuration.rpm, s.requestLog.count + 1 > rpm {
                s.counters.overshoot += 1
                return .limited(retryAfter: Self.until(s.requestLog.first.map { $0 + .seconds(60) }, now))
            }
            if let tpm = self.configuration.tpm, s.tokenLog.reduce(0, { $0 + $1.1 }) + tokens > tpm {
                s.counters.overshoot += 1
                return .limited(retryAfter: Self.until(s.tokenLog.first.map { $0.0 + .seconds(60) }, now))
            }
            if let mc = self.configuration.maxConcurrent, s.serving + 1 > mc {
                s.counters.overshoot += 1
                return .limited(retryAfter: .seconds(1))
            }
            s.requestLog.append(now)
            s.tokenLog.append((now, tokens))
            s.serving += 1
            return .serve
        }
    }

    /// Releases an admitted request's serving slot.
    func finished(served: Bool, usage: TokenUsage?) {
        self.state.withLock { s in
            s.serving -= 1
            if served { s.counters.served += 1 } else { s.counters.failed += 1 }
            if let u = usage {
                s.counters.promptTokens += u.promptTokens
                s.counters.completionTokens += u.completionTokens
            }
        }
    }

    func countForced429() -> Int {
        self.state.withLock { s in
            s.counters.forced429 += 1
            return s.retryAfter
        }
    }

    func countFailure() {
        self.state.withLock { $0.counters.failed += 1 }
    }

    /// What the rate-limit headers say now: each strict limit with what is left of it in the window and the time
    /// until its oldest entry leaves the window. With `exhausted`, both limits report nothing left and a reset in
    /// `retry_after` seconds (a limit the mock does not have is then announced as what the window holds, at least 1).
    func rateLimits(exhausted: Bool = false) -> RateLimitSnapshot {
        let now = ContinuousClock.now
        return self.state.withLock { s in
            s.prune(now)
            let used = s.requestLog.count
            let tokens = s.tokenLog.reduce(0) { $0 + $1.1 }
            if exhausted {
                let reset = Duration.seconds(s.retryAfter)
                return RateLimitSnapshot(
                    requests: .init(limit: self.configuration.rpm ?? max(1, used), remaining: 0, reset: reset),
                    tokens: .init(limit: self.configuration.tpm ?? max(1, tokens), remaining: 0, reset: reset))
            }
            return RateLimitSnapshot(
                requests: self.configuration.rpm.map {
                    RateLimitSnapshot.Limit(limit: $0, remaining: max(0, $0 - used), reset: s.requestLog.first.map { max(.zero, now.duration(to: $0 + .seconds(60))) } ?? .zero)
                },
                tokens: self.configuration.tpm.map {
                    RateLimitSnapshot.Limit(limit: $0, remaining: max(0, $0 - tokens), reset: s.tokenLog.first.map { max(.zero, now.duration(to: $0.0 + .seconds(60))) } ?? .zero)
                })
        }
    }

    static func until(_ t: ContinuousClock.Instant?, _ now: ContinuousClock.Instant) -> Duration {
        guard let t else { return .seconds(1) }
        return max(.milliseconds(1), now.duration(to: t))
    }

    // MARK: Rendering

    public func statsJSON() -> String {
        let (c, mode, dialect) = self.state.withLock { ($0.counters, $0.mode, $0.dialect) }
        return """
            {"requests":\(c.requests),"served":\(c.served),"overshoot":\(c.overshoot),"forced_429":\(c.forced429),"failed":\(c.failed),\
            "prompt_tokens":\(c.promptTokens),"completion_tokens":\(c.completionTokens),"in_flight":\(c.inFlight),"max_in_flight":\(c.maxInFlight),\
            "prefilled":\(c.prefilled),"refused_prefill":\(c.refusedPrefill),"mode":"\(mode.rawValue)","dialect":"\(dialect.rawValue)"}
            """
    }

    /// `{"requests":[{"method":…,"path":…,"headers":[["name","value"],…]},…]}`, oldest first.
    public func recentRequestsJSON() -> String {
        var out = "{\"requests\":["
        for (i, r) in self.recentRequests().enumerated() {
            if i > 0 { out += "," }
            out += "{\"method\":"
            JSONValue.writeString(r.method, into: &out)
            out += ",\"path\":"
            JSONValue.writeString(r.path, into: &out)
            out += ",\"headers\":["
            for (j, h) in r.headers.enumerated() {
                out += j > 0 ? ",[" : "["
                JSONValue.writeString(h.name, into: &out)
                out += ","
                JSONValue.writeString(h.value, into: &out)
                out += "]"
            }
            out += "]}"
        }
        return out + "]}"
    }
}

/// Keeps one request counted in flight until ``end()``, or until the last reference to it goes (a response body
/// that was never written because the client left, a handler that threw).
final class InFlightTicket: Sendable {
    private let state: MockProviderState
    private let ended = Atomic<Bool>(false)

    init(state: MockProviderState) { self.state = state }

    /// Ends the request's time in flight (once; later calls do nothing).
    func end() {
        if !self.ended.exchange(true, ordering: .relaxed) { self.state.depart() }
    }

    deinit { self.end() }
}

/// What the mock's rate-limit headers announce.
struct RateLimitSnapshot: Sendable, Hashable {
    struct Limit: Sendable, Hashable {
        var limit: Int
        var remaining: Int
        /// Until the oldest entry leaves the window (the next unit comes back).
        var reset: Duration
    }
    var requests: Limit?
    var tokens: Limit?
}
