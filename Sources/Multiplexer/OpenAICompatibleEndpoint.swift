/// An OpenAI-compatible upstream: where it is, how to authenticate, which model id to ask it for, its
/// limits and its timeouts.
///
/// It plays the part of the `AsyncOpenAI` client object the reference design registers, but it is a plain
/// description: the ``Multiplexer`` sends every call itself (one libcurl client for all endpoints), so there
/// is nothing to open or close per endpoint.
///
/// ```swift
/// let groq = OpenAICompatibleEndpoint(
///     baseURL: "https://api.groq.com/openai/v1",
///     apiKey: env["GROQ_API_KEY"] ?? "",
///     model: "llama-3.3-70b-versatile",
///     limits: .init(rpm: 30, tpm: 6000))
/// try mux.addModel(groq, weight: 5, modelName: "groq-llama70b")
/// ```
///
/// ### Upstream model id
/// ``model`` is the id sent upstream in the body's `model` field. When it is `nil`, the name the endpoint is
/// registered under (`modelName`) is sent, as the reference does.
///
/// ### Limits
/// ``limits`` are enforced before a request is sent, in the multiplexer's quota store: per process with
/// the in-memory store, fleet-wide with a Redis store (shared with every gateway and embedding service on
/// the same namespace). Everyone sharing a name must declare the same limits for it.
///
/// The API key is a secret: ``description`` never shows it, and error messages never contain it.
public struct OpenAICompatibleEndpoint: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Limits of one endpoint, each over a rolling window (`nil`: no limit of that kind): `rpm`, `rpd`,
    /// `tpm`, `tpd` (tokens estimated before the call, settled with the real usage after it) and
    /// `maxConcurrent` (across every process sharing the store; `addModel`'s `maxConcurrent`, when given,
    /// replaces it). The same type the gateway's configuration fills.
    public typealias Limits = ProviderLimits

    /// Timeouts of one endpoint. A timeout is a failure of the endpoint: the request fails over to the next
    /// model (the reference failed fast instead).
    public struct Timeouts: Sendable, Hashable {
        /// TCP and TLS connect.
        public var connect: Duration
        /// A whole non-streaming call, or until a stream's response headers.
        public var request: Duration
        /// A stream's first event must arrive within this.
        public var firstToken: Duration
        /// A stream silent for this long is broken.
        public var streamIdle: Duration

        /// - Parameters:
        ///   - connect: connect timeout (default 5 s).
        ///   - request: whole-call timeout (default 120 s).
        ///   - firstToken: time to first streamed event (default 15 s).
        ///   - streamIdle: longest silence within a stream (default 30 s).
        public init(
            connect: Duration = .seconds(5), request: Duration = .seconds(120), firstToken: Duration = .seconds(15), streamIdle: Duration = .seconds(30)
        ) {
            self.connect = connect
            self.request = request
            self.firstToken = firstToken
            self.streamIdle = streamIdle
        }
    }

    /// The OpenAI-compatible base URL, e.g. `https://api.groq.com/openai/v1` (operations are appended:
    /// `…/chat/completions`).
    public var baseURL: String
    /// The bearer credential (`Authorization: Bearer …`); empty sends none.
    public var apiKey: String
    /// The model id sent upstream; `nil` sends the registered `modelName`.
    public var model: String?
    /// Extra headers sent with every request (they may replace the defaults, e.g. `api-key` with an empty
    /// ``apiKey`` for Azure).
    public var headers: [String: String]
    /// Rate limits, enforced before sending.
    public var limits: Limits
    /// Timeouts.
    public var timeouts: Timeouts
    /// Cooldown after a 429 that carries no `Retry-After` or reset header (reference: 60 s).
    public var cooldown: Duration
    /// Consecutive failures (5xx, timeouts, connection errors) that open a cooldown.
    public var failureThreshold: Int
    /// That cooldown (reference: 15 s).
    public var failureCooldown: Duration
    /// Completion tokens reserved for a request that sets no `max_tokens`.
    public var defaultMaxTokens: Int
    /// The largest prompt plus completion the endpoint accepts; larger requests skip it.
    public var contextWindow: Int?
    /// Whether the endpoint accepts an assistant prefill (a trailing `assistant` message it continues): a
    /// stream that broke mid-way on another model is continued here only if it does (ARCHITECTURE §3
    /// step 7). Endpoints that do not should set `false`; one that refuses a prefill anyway (a 4xx) is
    /// skipped for the next.
    public var supportsPrefill: Bool
    /// What the endpoint charges (USD per million input and output tokens): its calls' spend counts against
    /// ``dailyBudgetUSD`` and the multiplexer's budgets.
    public var pricing: Pricing?
    /// The most this endpoint's account may spend per UTC day; once spent it is skipped like one at its rate
    /// limit until 00:00 UTC. Needs ``pricing``.
    public var dailyBudgetUSD: Double?

    /// - Parameters:
    ///   - baseURL: the OpenAI-compatible base URL.
    ///   - apiKey: the bearer credential.
    ///   - model: the upstream model id (`nil`: the registered name).
    ///   - headers: extra request headers.
    ///   - limits: rate limits.
    ///   - timeouts: timeouts.
    ///   - cooldown: cooldown after a 429 without a hint.
    ///   - failureThreshold: consecutive failures that open a cooldown.
    ///   - failureCooldown: that cooldown.
    ///   - defaultMaxTokens: completion tokens reserved without `max_tokens`.
    ///   - contextWindow: the largest request accepted, in tokens.
    ///   - supportsPrefill: whether it continues an assistant prefill.
    ///   - pricing: USD per million tokens.
    ///   - dailyBudgetUSD: spend per UTC day.
    public init(
        baseURL: String,
        apiKey: String = "",
        model: String? = nil,
        headers: [String: String] = [:],
        limits: Limits = .unlimited,
        timeouts: Timeouts = Timeouts(),
        cooldown: Duration = .seconds(60),
        failureThreshold: Int = 3,
        failureCooldown: Duration = .seconds(15),
        defaultMaxTokens: Int = 1024,
        contextWindow: Int? = nil,
        supportsPrefill: Bool = true,
        pricing: Pricing? = nil,
        dailyBudgetUSD: Double? = nil
    ) {
        self.pricing = pricing
        self.dailyBudgetUSD = dailyBudgetUSD
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.model = model
        self.headers = headers
        self.limits = limits
        self.timeouts = timeouts
        self.cooldown = cooldown
        self.failureThreshold = failureThreshold
        self.failureCooldown = failureCooldown
        self.defaultMaxTokens = defaultMaxTokens
        self.contextWindow = contextWindow
        self.supportsPrefill = supportsPrefill
    }

    /// The endpoint without its API key.
    public var description: String {
        "OpenAICompatibleEndpoint(baseURL: \(self.baseURL), model: \(self.model ?? "<modelName>"), apiKey: <redacted>)"
    }

    /// The endpoint without its API key.
    public var debugDescription: String { self.description }

    /// What `dump` and debuggers show: everything but the API key.
    public var customMirror: Mirror {
        Mirror(self, children: ["baseURL": self.baseURL, "model": self.model as Any, "apiKey": "<redacted>", "limits": self.limits])
    }
}
