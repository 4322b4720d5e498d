public import Tracing
import Synchronization

/// How an upstream attempt ended, as its span says it (`multiplexer.outcome`, ARCHITECTURE §10).
public enum AttemptOutcome: String, Sendable, Hashable, CaseIterable {
    case success
    case rateLimited = "rate_limited"
    /// 5xx, a connection error, a 2xx that is not an answer, 401/403.
    case failure
    /// A connect, response, first-token or idle timeout.
    case timeout
    /// A 4xx the client caused (relayed), or `context_length_exceeded`.
    case clientError = "client_error"
    /// A stream that was served and then broke before its end (whatever followed: a continuation is its
    /// own attempt).
    case brokenStream = "broken_stream"
    /// The client went away (or the node shut down) before the attempt ended: nothing was learned.
    case cancelled

    /// The outcome of an attempt that ended with its response (a stream's is decided when it ends).
    public init(_ outcome: Outcome, error: UpstreamError.Kind?) {
        switch outcome {
        case .success: self = .success
        case .rateLimited: self = .rateLimited
        case .failure: self = error.map { UpstreamError($0).isTimeout } == true ? .timeout : .failure
        case .unauthorized: self = .failure
        case .contextLengthExceeded, .clientError: self = .clientError
        case .cancelled: self = .cancelled
        }
    }
}

/// Told of every upstream attempt when it ends — a served stream when the stream ends, so that one that
/// broke mid-way is reported as ``AttemptOutcome/brokenStream``, never as a success. The gateway's metrics
/// implement it.
public protocol AttemptObserver: Sendable {
    /// `record` is the attempt as the router saw it; `ended` adds how it really ended.
    func attemptEnded(_ record: AttemptRecord, _ ended: AttemptEnd)
}

/// How an attempt ended, beyond its ``AttemptRecord``.
public struct AttemptEnd: Sendable, Hashable {
    public var outcome: AttemptOutcome
    /// The client key the attempt was made for, if any.
    public var key: String?
    /// What the attempt is counted as having used: the provider's reported usage, or (a broken stream) what
    /// it was charged; `nil` when nothing was processed or nothing is known.
    public var usage: TokenUsage?
    /// A stream's time from the request to its first event.
    public var timeToFirstToken: Duration?
    /// The model id the provider said it answered with.
    public var responseModel: String?
}

/// One upstream attempt's span (a `client` span named `<operation> <upstream model>`, ARCHITECTURE §10) and
/// its report to the ``AttemptObserver``: ended exactly once, by the router for an attempt that ended
/// with its response, by the stream's settlement for a served stream.
///
/// Never carries a secret or message content: the attributes are the provider's configured name, the
/// upstream model id, the outcome, the status, token counts and times.
public final class AttemptTrace: Sendable {
    /// `nil` when tracing is off (only the observer is told).
    public let span: (any Span)?
    private let observer: (any AttemptObserver)?
    private let key: String?
    private let started = ContinuousClock.now
    private struct State {
        var record: AttemptRecord?
        var firstEvent: ContinuousClock.Instant?
        var responseModel: String?
        var ended = false
    }
    private let state = Mutex(State())

    /// The headers that carry this attempt's span to the provider (`traceparent`, `tracestate`); empty when
    /// tracing is off.
    public let propagation: [(name: String, value: String)]

    init(
        tracer: (any Tracer)?, parent: InstrumentationContext, operation: String, provider: Provider, tier: Tier, number: Int, key: String?,
        continued: Bool, observer: (any AttemptObserver)?
    ) {
        self.observer = observer
        self.key = key
        if let tracer {
            let span = tracer.startSpan("\(operation) \(provider.model)", context: parent, ofKind: .client)
            span.attributes["gen_ai.operation.name"] = operation
            span.attributes["gen_ai.request.model"] = provider.model
            span.attributes["gen_ai.provider.name"] = provider.name
            span.attributes["multiplexer.tier"] = tier == .primary ? "primary" : "fallback"
            span.attributes["multiplexer.attempt"] = number
            span.attributes["multiplexer.continued"] = continued
            if let host = Self.host(of: provider.baseURL) { span.attributes["server.address"] = host }
            var carrier = HeaderCarrier()
            tracer.inject(span.context, into: &carrier, using: HeaderCarrier.Injector())
            self.span = span
            self.propagation = carrier.fields
        } else {
            self.span = nil
            self.propagation = []
        }
    }

    /// A stream's first event arrived (the first call counts).
    public func markFirstEvent() {
        let now = ContinuousClock.now
        self.state.withLock { if $0.firstEvent == nil { $0.firstEvent = now } }
    }

    /// The model id the provider answered with (the first call counts).
    public func setResponseModel(_ model: String?) {
        guard let model, !model.isEmpty else { return }
        self.state.withLock { if $0.responseModel == nil { $0.responseModel = String(model.prefix(256)) } }
    }

    /// The router's record of the attempt, once its response (or failure) is known.
    func responded(_ record: AttemptRecord) {
        self.state.withLock { $0.record = record }
    }

    /// Ends the attempt (only the first call does anything).
    ///
    /// - Parameters:
    ///   - outcome: how it ended.
    ///   - usage: what it is counted as having used.
    public func end(_ outcome: AttemptOutcome, usage: TokenUsage?) {
        let (record, first, model) = self.state.withLock { s -> (AttemptRecord?, ContinuousClock.Instant?, String?) in
            guard !s.ended else { return (nil, nil, nil) }
            s.ended = true
            return (s.record, s.firstEvent, s.responseModel)
        }
        guard let record else { return }
        let ttft = first.map { self.started.duration(to: $0) }
        if let span = self.span {
            span.attributes["multiplexer.outcome"] = outcome.rawValue
            if let status = record.status { span.attributes["http.response.status_code"] = status }
            if let error = record.error { span.attributes["error.type"] = error.rawValue }
            if let model { span.attributes["gen_ai.response.model"] = model }
            if let usage {
                span.attributes["gen_ai.usage.input_tokens"] = usage.promptTokens
                span.attributes["gen_ai.usage.output_tokens"] = usage.completionTokens
            }
            if let ttft { span.attributes["gen_ai.server.time_to_first_token"] = ttft.seconds }
            switch outcome {
            case .success, .clientError, .cancelled: break
            case .rateLimited, .failure, .timeout, .brokenStream:
                span.setStatus(SpanStatus(code: .error, message: outcome.rawValue))
            }
            span.end()
        }
        self.observer?.attemptEnded(
            record, AttemptEnd(outcome: outcome, key: self.key, usage: usage, timeToFirstToken: ttft, responseModel: model))
    }

    /// Ends a served stream by its settlement.
    func end(settled result: SettlementResult) {
        switch result {
        case .success(let usage): self.end(.success, usage: usage)
        case .broken(let usage): self.end(.brokenStream, usage: usage)
        case .failure: self.end(.brokenStream, usage: nil)
        case .abandoned: self.end(.cancelled, usage: nil)
        case .rateLimited: self.end(.rateLimited, usage: nil)
        case .unauthorized: self.end(.failure, usage: nil)
        case .contextLengthExceeded, .clientError: self.end(.clientError, usage: nil)
        }
    }

    deinit {
        // A path that dropped the attempt without ending it (it never should): its span still ends.
        self.end(.cancelled, usage: nil)
    }

    /// The host of a base URL (`server.address`): never its user info, path or query.
    static func host(of url: String) -> String? {
        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://") else { return nil }
        var rest = url[url.index(colon, offsetBy: 3)...]
        if let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) { rest = rest[..<end] }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") { return String(rest[rest.index(after: rest.startIndex)..<close]) }
        if let colon = rest.lastIndex(of: ":") { rest = rest[..<colon] }
        return rest.isEmpty ? nil : String(rest)
    }
}

/// Header fields a tracer injects a span context into.
public struct HeaderCarrier: Sendable {
    public var fields: [(name: String, value: String)] = []
    public init() {}

    public struct Injector: Tracing.Injector {
        public init() {}
        public func inject(_ value: String, forKey key: String, into carrier: inout HeaderCarrier) {
            carrier.fields.removeAll { $0.name == key }
            carrier.fields.append((key, value))
        }
    }
}
