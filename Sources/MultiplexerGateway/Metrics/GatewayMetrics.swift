import MultiplexerCore
import MultiplexerUpstream
public import Prometheus
import Synchronization

/// The gateway's Prometheus series. Dimensions are bounded by configuration (model groups, providers,
/// status codes); never a request id or a key.
///
/// Series:
/// - `multiplexer_requests_total{model, provider, status}` — client requests by final status
/// - `multiplexer_upstream_attempts_total{provider, outcome}` — upstream attempts by outcome
/// - `multiplexer_upstream_duration_seconds{provider}` — upstream latency (to headers, or whole stream)
/// - `multiplexer_fallbacks_total{model}` — requests served by the fallback tier
/// - `multiplexer_stream_continuations_total{model, outcome}` — streams that broke mid-way and were continued
///   on another provider: `completed`, or `failed` (the continuation could not finish the answer)
/// - `multiplexer_cooldowns_total{provider, reason}` — cooldowns this node set
/// - `multiplexer_spend_usd_total{provider}` and `{key}` — USD this node's settled attempts cost (the real cost)
/// - `multiplexer_store_admission_duration_seconds` — quota-store admission round trip
/// - `multiplexer_store_available` — 1 connected, 0 degraded or unavailable
/// - `multiplexer_inflight_requests` — client requests in progress on this node
/// - `multiplexer_upstream_connections_opened_total` — upstream connections opened (TCP + TLS handshakes)
/// - `multiplexer_upstream_connection_waits_total`, `multiplexer_upstream_connection_wait_seconds_total` —
///   upstream calls that waited for a connection, and their total wait (0 unless a pool limit is reached)
/// - `multiplexer_client_connections` — client connections open on this node
/// - `multiplexer_client_connections_closed_total{reason}` — client connections the gateway closed for a
///   timeout: `header_timeout`, `body_timeout`, `idle_timeout`
public final class GatewayMetrics: Sendable {
    /// The registry `/metrics` renders.
    public let registry: PrometheusCollectorRegistry
    /// Metric objects by their labels, so a request costs one dictionary lookup, not a registry call.
    private let counters = Mutex<[CounterKey: Counter]>([:])
    private let histograms = Mutex<[String: DurationHistogram]>([:])
    let inFlight: Gauge
    let storeAvailable: Gauge
    let admission: DurationHistogram
    let clientConnections: Gauge
    /// By reason: header, body, idle.
    let clientTimeouts: [Counter]
    private let connectionsOpened: Counter
    private let connectionWaits: Counter
    private let connectionWaitSeconds: Counter
    /// The pool statistics already added to the counters.
    private let poolSeen = Mutex<CurlClient.Statistics?>(nil)

    static let latencyBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
    ]
    static let storeBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
    ]

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "multiplexer", metricName: metric, unitName: unit, helpText: help)
    }
    static var requests: MetricNameDescriptor { name("requests", "total", "Client requests by model, serving provider and status") }
    static var attempts: MetricNameDescriptor { name("upstream_attempts", "total", "Upstream attempts by outcome") }
    static var upstreamDuration: MetricNameDescriptor { name("upstream_duration", "seconds", "Upstream latency until the response (or first event)") }
    static var cooldowns: MetricNameDescriptor { name("cooldowns", "total", "Cooldowns set by this node") }
    static var fallbacks: MetricNameDescriptor { name("fallbacks", "total", "Requests served by the fallback tier") }
    static var continuations: MetricNameDescriptor {
        name("stream_continuations", "total", "Streams that broke mid-way and were continued on another provider, by outcome")
    }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.inFlight = registry.makeGauge(descriptor: Self.name("inflight", "requests", "Client requests in progress on this node"), labels: [])
        self.storeAvailable = registry.makeGauge(descriptor: Self.name("store", "available", "1 when the quota store is reachable"), labels: [])
        self.admission = registry.makeDurationHistogram(
            descriptor: Self.name("store_admission_duration", "seconds", "Quota store admission round trip"), labels: [], buckets: Self.storeBuckets)
        self.clientConnections = registry.makeGauge(
            descriptor: Self.name("client", "connections", "Client connections open on this node"), labels: [])
        self.clientTimeouts = ["header_timeout", "body_timeout", "idle_timeout"].map { reason in
            registry.makeCounter(
                descriptor: Self.name("client_connections_closed", "total", "Client connections closed by the gateway for a timeout"),
                labels: [("reason", reason)])
        }
        self.connectionsOpened = registry.makeCounter(
            descriptor: Self.name("upstream_connections_opened", "total", "Upstream connections opened (TCP and TLS handshakes)"), labels: [])
        self.connectionWaits = registry.makeCounter(
            descriptor: Self.name("upstream_connection_waits", "total", "Upstream calls that waited for a free connection"), labels: [])
        self.connectionWaitSeconds = registry.makeCounter(
            descriptor: Self.name("upstream_connection_wait_seconds", "total", "Time upstream calls spent waiting for a connection"), labels: [])
    }

    /// Brings the upstream pool counters up to `statistics` (called when `/metrics` is scraped).
    func upstreamPool(_ statistics: CurlClient.Statistics) {
        self.poolSeen.withLock { seen in
            let before = seen ?? CurlClient.Statistics()
            if statistics.connectionsOpened > before.connectionsOpened {
                self.connectionsOpened.increment(by: Int64(statistics.connectionsOpened - before.connectionsOpened))
            }
            if statistics.connectionWaits > before.connectionWaits {
                self.connectionWaits.increment(by: Int64(statistics.connectionWaits - before.connectionWaits))
                self.connectionWaitSeconds.increment(by: Double((statistics.connectionWaitTime - before.connectionWaitTime).seconds))
            }
            seen = statistics
        }
    }

    private struct CounterKey: Hashable {
        var kind: UInt8
        var a: String
        var b: String
        var c: Int
    }

    private func counter(_ key: CounterKey, _ make: () -> Counter) -> Counter {
        if let c = self.counters.withLock({ $0[key] }) { return c }
        let c = make()
        self.counters.withLock { $0[key] = c }
        return c
    }

    func request(model: String, provider: String, status: Int) {
        self.counter(CounterKey(kind: 0, a: model, b: provider, c: status)) {
            self.registry.makeCounter(descriptor: Self.requests, labels: [("model", model), ("provider", provider), ("status", String(status))])
        }.increment()
    }

    func attempt(_ a: AttemptRecord) {
        let outcome: String
        switch a.outcome {
        case .success: outcome = "success"
        case .rateLimited: outcome = "rate_limited"
        case .failure: outcome = a.error?.rawValue ?? "server_error"
        case .unauthorized: outcome = "unauthorized"
        case .contextLengthExceeded: outcome = "context_length_exceeded"
        case .clientError: outcome = "client_error"
        case .cancelled: outcome = "cancelled"
        }
        self.counter(CounterKey(kind: 1, a: a.provider, b: outcome, c: 0)) {
            self.registry.makeCounter(descriptor: Self.attempts, labels: [("provider", a.provider), ("outcome", outcome)])
        }.increment()
        let h: DurationHistogram
        if let cached = self.histograms.withLock({ $0[a.provider] }) {
            h = cached
        } else {
            h = self.registry.makeDurationHistogram(descriptor: Self.upstreamDuration, labels: [("provider", a.provider)], buckets: Self.latencyBuckets)
            self.histograms.withLock { $0[a.provider] = h }
        }
        h.record(a.latency)
        switch a.outcome {
        case .rateLimited: self.cooldown(provider: a.provider, reason: "rate_limited")
        case .unauthorized: self.cooldown(provider: a.provider, reason: "unauthorized")
        default: break
        }
        if a.exhaustedCooldown != nil { self.cooldown(provider: a.provider, reason: CooldownReason.exhausted.rawValue) }
    }

    func cooldown(provider: String, reason: String) {
        self.counter(CounterKey(kind: 2, a: provider, b: reason, c: 0)) {
            self.registry.makeCounter(descriptor: Self.cooldowns, labels: [("provider", provider), ("reason", reason)])
        }.increment()
    }

    static var spend: MetricNameDescriptor { name("spend_usd", "total", "USD spent by the attempts this node settled, at their real cost") }

    /// The real cost of a settled attempt, per provider and per client key.
    func spend(provider: String, key: String?, microUSD: Int64) {
        let usd = Double(microUSD) / 1_000_000
        self.counter(CounterKey(kind: 5, a: provider, b: "", c: 0)) {
            self.registry.makeCounter(descriptor: Self.spend, labels: [("provider", provider)])
        }.increment(by: usd)
        if let key {
            self.counter(CounterKey(kind: 6, a: key, b: "", c: 0)) {
                self.registry.makeCounter(descriptor: Self.spend, labels: [("key", key)])
            }.increment(by: usd)
        }
    }

    /// A stream that broke mid-way and was continued: `completed` when the continuation finished it.
    func continuation(model: String, completed: Bool) {
        let outcome = completed ? "completed" : "failed"
        self.counter(CounterKey(kind: 4, a: model, b: outcome, c: 0)) {
            self.registry.makeCounter(descriptor: Self.continuations, labels: [("model", model), ("outcome", outcome)])
        }.increment()
    }

    func fallback(model: String) {
        self.counter(CounterKey(kind: 3, a: model, b: "", c: 0)) {
            self.registry.makeCounter(descriptor: Self.fallbacks, labels: [("model", model)])
        }.increment()
    }
}
