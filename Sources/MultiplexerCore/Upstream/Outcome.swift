/// What the router does with the result of one upstream attempt (ARCHITECTURE §3 step 6).
public enum Outcome: Sendable, Hashable {
    /// 2xx: the request is served.
    case success
    /// 429 or 529: the provider is rate limited; cool it down fleet-wide for `cooldown` (extend-only) and
    /// try the next candidate.
    case rateLimited(cooldown: Duration)
    /// 5xx, 408, a timeout, a connection error, or a 2xx whose body is not what the operation promises:
    /// count a failure (a run of them opens a cooldown) and try the next candidate. `retryable` marks a
    /// transient failure (5xx, reset before headers — never a timeout, nor an invalid body) that may be
    /// retried on the same primary when only the fallback tier is left.
    case failure(retryable: Bool)
    /// 401 or 403 from a provider: it is misconfigured; cool it down for `cooldown` and try the next.
    case unauthorized(cooldown: Duration)
    /// 400 `context_length_exceeded`: the provider is healthy but this request is too large for it;
    /// never retry it for this request, set no cooldown, count no failure.
    case contextLengthExceeded
    /// Any other 4xx: the client's fault; return the response as-is, no retry, no fallback.
    case clientError
    /// The caller cancelled the attempt (client went away or shutdown); stop.
    case cancelled

    /// Whether the router moves on to another candidate after this outcome.
    public var triesNext: Bool {
        switch self {
        case .rateLimited, .failure, .unauthorized, .contextLengthExceeded: true
        case .success, .clientError, .cancelled: false
        }
    }
}

/// Classifies upstream responses and errors into ``Outcome``s.
public enum OutcomeClassifier {
    /// Classifies an HTTP response.
    ///
    /// - Parameters:
    ///   - status: the HTTP status code.
    ///   - headers: the response headers (for the rate-limit reset hints).
    ///   - errorCode: the OpenAI error `code` (or `type`) from the body, if it was an error body.
    ///   - provider: the provider that answered (its `cooldown` is the fallback cooldown).
    ///   - nowEpochSeconds: the wall-clock time, for `Retry-After: <HTTP-date>`.
    ///   - invalidBody: whether a 2xx body is not what the operation promises
    ///     (``UpstreamResponse/invalidBody``): then the 2xx is a failure, not retried on the same provider.
    public static func classify(
        status: Int,
        headers: UpstreamHeaders,
        errorCode: String?,
        provider: Provider,
        nowEpochSeconds: Double,
        invalidBody: Bool = false
    ) -> Outcome {
        switch status {
        case 200..<300:
            return invalidBody ? .failure(retryable: false) : .success
        case 429, 529:
            return .rateLimited(cooldown: RetryHint.cooldown(from: headers, nowEpochSeconds: nowEpochSeconds) ?? provider.cooldown)
        case 401, 403:
            return .unauthorized(cooldown: provider.cooldown)
        case 408:
            return .failure(retryable: false)
        case 400 where errorCode == "context_length_exceeded":
            return .contextLengthExceeded
        case 400..<500:
            return .clientError
        case 500..<600:
            return .failure(retryable: true)
        default:
            // 1xx/3xx are not valid final answers to an API call: treat as a failure of the provider.
            return .failure(retryable: false)
        }
    }

    /// Classifies a failure to get a response.
    public static func classify(_ error: UpstreamError) -> Outcome {
        switch error.kind {
        case .cancelled: .cancelled
        case .connectionReset: .failure(retryable: true)
        case .connectTimeout, .timeout, .firstTokenTimeout, .streamIdleTimeout: .failure(retryable: false)
        case .connectionRefused, .dnsFailure, .tlsFailure, .invalidResponse, .eventTooLarge, .other: .failure(retryable: false)
        }
    }
}
