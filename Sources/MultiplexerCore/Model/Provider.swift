/// One upstream endpoint: a base URL, a credential and the model id sent upstream.
///
/// A provider is the unit every limit, cooldown and counter is kept for. Two providers may host the
/// same upstream model (that is how quotas add up); each has its own name.
///
/// The API key is a secret: ``description`` and `dump` never show it.
public struct Provider: Sendable, Hashable {
    /// Unique name, `[a-z0-9._-]+`; used in store keys, metrics and response headers.
    public var name: String
    /// The OpenAI-compatible base URL, e.g. `https://api.groq.com/openai/v1`.
    public var baseURL: String
    /// The bearer credential sent upstream. Never logged, never shown.
    public var apiKey: String
    /// The model id sent upstream in the request body's `model` field.
    public var model: String
    /// Fleet-wide limits.
    public var limits: ProviderLimits
    /// Cooldown after a 429 without any reset hint (reference design: 60 s).
    public var cooldown: Duration
    /// Consecutive failures (5xx, timeouts, connection errors) that open a cooldown.
    public var failureThreshold: Int
    /// Cooldown after `failureThreshold` consecutive failures (reference design: 15 s).
    public var failureCooldown: Duration
    /// Completion tokens reserved when a request sets no `max_tokens`.
    public var defaultMaxTokens: Int
    /// Largest prompt + completion the provider accepts; larger requests skip it up front.
    public var contextWindow: Int?
    /// TCP/TLS connect timeout.
    public var connectTimeout: Duration
    /// Whole non-streaming call, or until response headers of a stream.
    public var timeout: Duration
    /// A stream's first event must arrive within this.
    public var timeToFirstTokenTimeout: Duration
    /// A stream silent for this long is a failure.
    public var streamIdleTimeout: Duration
    /// Whether the provider accepts an assistant prefill (used to continue a broken stream).
    public var supportsPrefill: Bool
    /// Extra headers sent upstream with every request (they win over headers forwarded from the client).
    public var headers: [String: String]
    /// How an `https://` base URL's certificate is checked, and the client certificate (mTLS).
    public var tls: TLSOptions
    /// One server-sent event larger than this breaks a stream (default 1 MiB).
    public var maxEventBytes: Int
    /// Whether the client's `OpenAI-Organization` / `OpenAI-Project` headers are forwarded to this provider
    /// (`forward_client_headers`, default false): they name an account, which is only meaningful when the
    /// provider is the client's own OpenAI account.
    public var forwardClientHeaders: Bool

    public init(
        name: String,
        baseURL: String,
        apiKey: String = "",
        model: String,
        limits: ProviderLimits = .unlimited,
        cooldown: Duration = .seconds(60),
        failureThreshold: Int = 3,
        failureCooldown: Duration = .seconds(15),
        defaultMaxTokens: Int = 1024,
        contextWindow: Int? = nil,
        connectTimeout: Duration = .seconds(5),
        timeout: Duration = .seconds(120),
        timeToFirstTokenTimeout: Duration = .seconds(15),
        streamIdleTimeout: Duration = .seconds(30),
        supportsPrefill: Bool = true,
        headers: [String: String] = [:],
        tls: TLSOptions = TLSOptions(),
        maxEventBytes: Int = 1 << 20,
        forwardClientHeaders: Bool = false,
        pricing: Pricing? = nil
    ) {
        self.pricing = pricing
        self.name = name
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.model = model
        self.limits = limits
        self.cooldown = cooldown
        self.failureThreshold = failureThreshold
        self.failureCooldown = failureCooldown
        self.defaultMaxTokens = defaultMaxTokens
        self.contextWindow = contextWindow
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        self.timeToFirstTokenTimeout = timeToFirstTokenTimeout
        self.streamIdleTimeout = streamIdleTimeout
        self.supportsPrefill = supportsPrefill
        self.headers = headers
        self.tls = tls
        self.maxEventBytes = maxEventBytes
        self.forwardClientHeaders = forwardClientHeaders
    }

    /// What the provider charges (`providers[].pricing`); `nil`: no spend is counted and no budget applies.
    public var pricing: Pricing?

    /// The highest cost, in micro-USD, of an attempt that reserves `cost` on this provider: the estimated
    /// prompt at the input price plus the reserved completion at the output price (0 without pricing).
    public func maximumCost(of cost: RequestCost) -> Int64 {
        guard let pricing else { return 0 }
        let total = cost.tokens(on: self)
        return pricing.cost(prompt: cost.promptTokens, completion: max(0, total - cost.promptTokens))
    }

    /// How long an in-flight reservation on this provider lives past its last renewal before the store
    /// reclaims it, should the node holding it die (ARCHITECTURE §8: at most 30 s).
    public var leaseDuration: Duration { Self.lease }

    /// The lease of every in-flight reservation: renewed every ``leaseRenewal`` while its upstream
    /// transfer is open, so a dead node's capacity is back within 40 s.
    public static let lease: Duration = .seconds(30)
    /// How often a node renews the lease of an open upstream transfer.
    public static let leaseRenewal: Duration = .seconds(10)

    /// Whether `name` is a valid provider (or model group, or key) name: `[a-z0-9._-]+`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { c in
                (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                    || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
            }
    }
}

extension Provider: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "Provider(name: \(self.name), baseURL: \(self.baseURL), model: \(self.model), apiKey: <redacted>)"
    }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror {
        Mirror(self, children: ["name": self.name, "baseURL": self.baseURL, "model": self.model, "apiKey": "<redacted>"])
    }
}

/// The TLS settings of one provider (`tls:` in the configuration).
///
/// By default an `https://` provider's certificate and host name are verified against the system's CA
/// store. ``caFile`` replaces that store for this provider; ``certFile`` and ``keyFile`` present a client
/// certificate (mutual TLS). ``verify`` `false` switches verification off and must be written out.
public struct TLSOptions: Sendable, Hashable {
    /// PEM file of the CAs that may sign the provider's certificate, in place of the system store.
    public var caFile: String?
    /// PEM client certificate (mutual TLS).
    public var certFile: String?
    /// PEM private key of ``certFile`` (when it is not in the same file).
    public var keyFile: String?
    /// Whether the certificate and host name are verified.
    public var verify: Bool

    /// - Parameters:
    ///   - caFile: the CA bundle replacing the system store.
    ///   - certFile: the client certificate.
    ///   - keyFile: the client certificate's key.
    ///   - verify: whether to verify the server.
    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, verify: Bool = true) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.verify = verify
    }
}
