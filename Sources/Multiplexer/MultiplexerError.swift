/// An error of the library: what went wrong, which registered model it concerns, and what the provider said.
///
/// The ``code`` plays the part of the reference design's exception classes:
///
/// | reference class | ``Code`` |
/// |---|---|
/// | `ValueError` (registration) | ``Code/invalidArgument`` |
/// | `RateLimitError` | ``Code/rateLimited`` (with ``retryAfter``) |
/// | `ModelSelectionError`, `AllModelsFailedError` | ``Code/allModelsExhausted`` (with ``retryAfter``) |
/// | `AuthenticationError` | ``Code/authentication`` |
/// | `ModelNotFoundError` | ``Code/modelNotFound`` |
/// | `ServiceUnavailableError` | ``Code/serviceUnavailable`` |
/// | `MultiplexerError` ("Unexpected error for model …") | ``Code/unexpected`` |
/// | — (400/422 were generic there) | ``Code/invalidRequest`` |
/// | — (invalid bodies were generic there) | ``Code/invalidResponse`` |
///
/// Match on the code:
///
/// ```swift
/// do {
///     let completion = try await mux.chat.completions.create(messages: [.user("Hi")])
/// } catch let error as MultiplexerError where error.code == .rateLimited {
///     try await Task.sleep(for: error.retryAfter ?? .seconds(1))
/// }
/// ```
///
/// Messages name the model and its endpoint when one is concerned, and never contain an API key.
public struct MultiplexerError: Error, CustomStringConvertible {
    /// The kind of error.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidArgument = "invalid_argument"
            case invalidRequest = "invalid_request"
            case authentication
            case modelNotFound = "model_not_found"
            case rateLimited = "rate_limited"
            case allModelsExhausted = "all_models_exhausted"
            case serviceUnavailable = "service_unavailable"
            case insufficientQuota = "insufficient_quota"
            case invalidResponse = "invalid_response"
            case unexpected
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// A registration argument is invalid (the reference's `ValueError`): a weight that is not positive, an
        /// empty or malformed name, a negative `maxConcurrent`, a bad Redis URL.
        public static let invalidArgument = Code(.invalidArgument)
        /// The request is invalid: rejected before sending, or a provider answered 400 or 422, or it is larger
        /// than every provider's context window.
        public static let invalidRequest = Code(.invalidRequest)
        /// Every provider that was tried rejected its credential (401/403).
        public static let authentication = Code(.authentication)
        /// A provider answered 404: the model id (or the route) does not exist there.
        public static let modelNotFound = Code(.modelNotFound)
        /// Attempts were made and the last provider tried answered 429/529; every other model is rate limited,
        /// cooling down or at one of its limits. ``MultiplexerError/retryAfter`` says when one frees up.
        public static let rateLimited = Code(.rateLimited)
        /// The multiplexer's budget (``Multiplexer/Configuration/budget``) is spent for the day or the month:
        /// ``MultiplexerError/retryAfter`` says when the period ends (UTC).
        public static let insufficientQuota = Code(.insufficientQuota)
        /// No model could take the request (no attempt was made): all are cooling down or at a limit, or none
        /// is registered. ``MultiplexerError/retryAfter`` says when one frees up, if known.
        public static let allModelsExhausted = Code(.allModelsExhausted)
        /// Providers failed (5xx, timeouts, connection errors, a stream that broke), the quota store is
        /// unreachable with the `reject` policy, or the multiplexer is not running.
        public static let serviceUnavailable = Code(.serviceUnavailable)
        /// A provider answered 2xx with a body that is not what the operation returns. A body that is not JSON,
        /// empty, or without `choices` (chat, completions) or `data` (embeddings) counts as a failure of that
        /// model and the next one is tried first: this code then means that no model was left.
        public static let invalidResponse = Code(.invalidResponse)
        /// Any other client error a provider returned (409, 413, other 4xx).
        public static let unexpected = Code(.unexpected)

        /// The code's snake-case name, e.g. `rate_limited`.
        public var description: String { self.base.rawValue }
    }

    /// One upstream attempt of the failed request.
    public struct Attempt: Hashable, Sendable {
        /// The registered name of the model tried.
        public var modelName: String
        /// Whether it is a fallback model.
        public var isFallback: Bool
        /// The HTTP status, if a response came.
        public var statusCode: Int?
        /// The transport failure (`timeout`, `connection_refused`, …), if no response came.
        public var failure: String?
        /// How long the attempt took.
        public var latency: Duration

        /// - Parameters:
        ///   - modelName: the registered name.
        ///   - isFallback: whether it is a fallback model.
        ///   - statusCode: the HTTP status, if any.
        ///   - failure: the transport failure, if any.
        ///   - latency: the attempt's duration.
        public init(modelName: String, isFallback: Bool, statusCode: Int?, failure: String?, latency: Duration) {
            self.modelName = modelName
            self.isFallback = isFallback
            self.statusCode = statusCode
            self.failure = failure
            self.latency = latency
        }
    }

    /// The kind of error.
    public var code: Code
    /// A readable explanation.
    public var message: String
    /// The registered name of the model concerned, if one is.
    public var modelName: String?
    /// That model's base URL.
    public var endpoint: String?
    /// The provider's HTTP status, if one answered.
    public var statusCode: Int?
    /// When to try again, for ``Code/rateLimited`` and ``Code/allModelsExhausted`` (`nil` if unknown).
    public var retryAfter: Duration?
    /// The provider's own error message (`error.message` of its body), if any.
    public var upstreamMessage: String?
    /// Every upstream attempt of the request, in order (the reference kept only the last error).
    public var attempts: [Attempt]
    /// The error this one wraps, if any.
    public var underlyingError: (any Error)?

    /// - Parameters:
    ///   - code: the kind of error.
    ///   - message: a readable explanation.
    ///   - modelName: the registered model concerned.
    ///   - endpoint: its base URL.
    ///   - statusCode: the provider's HTTP status.
    ///   - retryAfter: when to try again.
    ///   - upstreamMessage: the provider's own message.
    ///   - attempts: the request's attempts.
    ///   - underlyingError: a wrapped error.
    public init(
        _ code: Code, _ message: String, modelName: String? = nil, endpoint: String? = nil, statusCode: Int? = nil, retryAfter: Duration? = nil,
        upstreamMessage: String? = nil, attempts: [Attempt] = [], underlyingError: (any Error)? = nil
    ) {
        self.code = code
        self.message = message
        self.modelName = modelName
        self.endpoint = endpoint
        self.statusCode = statusCode
        self.retryAfter = retryAfter
        self.upstreamMessage = upstreamMessage
        self.attempts = attempts
        self.underlyingError = underlyingError
    }

    /// The message.
    public var description: String { self.message }
}
