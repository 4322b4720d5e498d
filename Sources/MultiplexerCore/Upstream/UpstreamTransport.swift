/// The router's view of an upstream client: send one request to one provider.
///
/// The gateway implements it over libcurl; tests implement it over a local HTTP server. The router
/// calls it once per attempt, classifies what comes back and settles.
public protocol UpstreamTransport: Sendable {
    /// What the caller routes (e.g. a parsed body and its operation).
    associatedtype Request: Sendable
    /// What a response carries back to the caller (bytes, a stream).
    associatedtype Body: Sendable

    /// Sends `request` to `attempt.provider`.
    ///
    /// For a stream, return once the first event has arrived (or throw `firstTokenTimeout`), with
    /// ``UpstreamResponse/settlesLater`` set: the caller settles when the stream ends.
    func send(_ request: Request, attempt: UpstreamAttempt) async throws(UpstreamError) -> UpstreamResponse<Body>

    /// The OpenTelemetry GenAI operation name of `request` (`chat`, `text_completion`, `embeddings`, …): the
    /// first word of its attempt spans' names. Defaults to `chat`.
    func operationName(of request: Request) -> String
}

extension UpstreamTransport {
    public func operationName(of request: Request) -> String { "chat" }
}

/// One attempt of one request on one provider.
public struct UpstreamAttempt: Sendable {
    public var provider: Provider
    public var tier: Tier
    /// 1 for the first attempt of the request.
    public var number: Int
    public var reservation: Reservation
    /// The attempt's span and report, when the router traces or observes attempts: a transport sends its
    /// ``AttemptTrace/propagation`` headers (the attempt span's `traceparent`), and marks a stream's first
    /// event and the response's model on it.
    public var trace: AttemptTrace?

    public init(provider: Provider, tier: Tier, number: Int, reservation: Reservation, trace: AttemptTrace? = nil) {
        self.provider = provider
        self.tier = tier
        self.number = number
        self.reservation = reservation
        self.trace = trace
    }
}

/// An HTTP response from a provider.
public struct UpstreamResponse<Body: Sendable>: Sendable {
    public var status: Int
    public var headers: UpstreamHeaders
    public var body: Body
    /// The OpenAI error `code` (or `type`) of an error body, used to recognise `context_length_exceeded`.
    public var errorCode: String?
    /// Usage the provider reported, if known now.
    public var usage: TokenUsage?
    /// A stream whose usage is known only at its end: the router leaves it unsettled and hands the
    /// caller a ``PendingSettlement``.
    public var settlesLater: Bool
    /// Why a 2xx body is not what the operation promises (not JSON, empty, no `choices` for a chat
    /// completion…), or `nil` when it is (and for every non-2xx). A 2xx with an invalid body is a failure
    /// of the provider, never a success (ARCHITECTURE §3 step 6).
    public var invalidBody: String?
    /// The model id the response says it came from (a body's or a stream's first chunk's `model`), if any.
    public var model: String?

    public init(
        status: Int, headers: UpstreamHeaders = [:], body: Body, errorCode: String? = nil, usage: TokenUsage? = nil,
        settlesLater: Bool = false, invalidBody: String? = nil, model: String? = nil
    ) {
        self.model = model
        self.status = status
        self.headers = headers
        self.body = body
        self.errorCode = errorCode
        self.usage = usage
        self.settlesLater = settlesLater
        self.invalidBody = invalidBody
    }
}
