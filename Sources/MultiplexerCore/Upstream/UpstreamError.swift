/// A failure to get an HTTP response from a provider, one kind per cause so the router can classify it.
public struct UpstreamError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The TCP or TLS connection was not established within the connect timeout.
        case connectTimeout = "connect_timeout"
        /// No response (or, for a stream, no response headers) within the call timeout.
        case timeout
        /// A stream's first event did not arrive within the time-to-first-token timeout.
        case firstTokenTimeout = "first_token_timeout"
        /// A stream went silent for longer than the idle timeout.
        case streamIdleTimeout = "stream_idle_timeout"
        /// Nothing listens at the provider's address.
        case connectionRefused = "connection_refused"
        /// The connection was reset or closed before the response headers.
        case connectionReset = "connection_reset"
        /// The provider's host name did not resolve.
        case dnsFailure = "dns_failure"
        /// The TLS handshake or certificate check failed.
        case tlsFailure = "tls_failure"
        /// The response could not be read or was not valid HTTP. (The router also records this kind for a 2xx
        /// whose body is not what the operation promises, ``UpstreamResponse/invalidBody``.)
        case invalidResponse = "invalid_response"
        /// A stream sent one server-sent event larger than the provider's `max_event_bytes`.
        case eventTooLarge = "event_too_large"
        /// The call was cancelled by the caller (client went away, shutdown).
        case cancelled
        /// Anything else.
        case other

        /// Whether the provider cannot have processed the request: the connection never carried it (connect
        /// timeout, refused, DNS, TLS). Such a failed attempt keeps no tokens (ARCHITECTURE §3 step 6). Every
        /// other failure came after the request was sent — a first-token timeout after the provider's
        /// headers, a call timeout while it may be generating — and keeps the estimate.
        public var isBeforeProcessing: Bool {
            switch self {
            case .connectTimeout, .connectionRefused, .dnsFailure, .tlsFailure: true
            case .timeout, .firstTokenTimeout, .streamIdleTimeout, .connectionReset, .invalidResponse, .eventTooLarge, .cancelled, .other:
                false
            }
        }
    }

    public var kind: Kind
    /// A human-readable detail (never contains credentials).
    public var message: String

    public init(_ kind: Kind, message: String = "") {
        self.kind = kind
        self.message = message
    }

    public var description: String { self.message.isEmpty ? self.kind.rawValue : "\(self.kind.rawValue): \(self.message)" }

    /// Whether this failure is a timeout of any kind (a silent provider is not asked twice in one request).
    public var isTimeout: Bool {
        switch self.kind {
        case .connectTimeout, .timeout, .firstTokenTimeout, .streamIdleTimeout: true
        default: false
        }
    }
}

/// Token usage reported by a provider (or estimated when it reports none).
public struct TokenUsage: Sendable, Hashable, Codable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int { self.promptTokens + self.completionTokens }
    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}
