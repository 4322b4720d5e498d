public import MultiplexerCore
import MultiplexerUpstream
public import Prometheus
import Synchronization

/// The gateway's Prometheus series. Dimensions are bounded by configuration (model groups, providers,
/// status codes); never a request id or a key.
///
/// Series:
/// - `multiplexer_requests_total{model, provider, status}` — client requests by final status
/// - `multiplexer_upstream_attempts_total{provider, outcome}` — upstream attempts by how they really ended
///   (counted when they end: a stream when it ends, `broken_stream` if it broke after it was served)
/// - `multiplexer_upstream_latency_seconds{provider}` — upstream latency: the whole response, or a stream's
///   first event
/// - `multiplexer_ttft_seconds{provider}` — a stream's time from the request to its first event
/// - `multiplexer_tokens_total{provider, direction}` and `{key, direction}` — tokens (`input`, `output`) of the
///   attempts this node ended: reported by the provider, or charged for a broken stream
/// - `multiplexer_window_use_ratio{provider, window}` — use of each configured limit (`rpm`, `rpd`, `tpm`,
///   `tpd`, `max_concurrent`, `daily_budget`) as a fraction, fleet-wide as this node last read it (at scrape)
/// - `multiplexer_trace_spans_dropped_total` — spans the exporter dropped (queue full, export failed)
/// - `multiplexer_build_info{version}` — 1
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
public final class GatewayMetrics: AttemptObserver, Sendable {
    /// The registry `/metrics` renders.
    public let registry: PrometheusCollectorRegistry
    /// Metric objects by their labels, so a request costs one dictionary lookup, not a registry call.
    private let counters = Mutex<[CounterKey: Counter]>([:])
    private let histograms = Mutex<[String: DurationHistogram]>([:])
    private let ttftHistograms = Mutex<[String: DurationHistogram]>([:])
    private let gauges = Mutex<[CounterKey: Gauge]>([:])
    /// Spans the trace exporter dropped.
    let spansDropped: Counter
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
    static let ttftBuckets: [Duration] = [
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(1500),
        .seconds(2), .seconds(3), .seconds(5), .seconds(10), .seconds(15), .seconds(30),
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
    static var upstreamLatency: MetricNameDescriptor { name("upstream_latency", "seconds", "Upstream latency until the whole response (a stream: its first event)") }
    static var ttft: MetricNameDescriptor { name("ttft", "seconds", "Time from an upstream stream request to its first event") }
    static var tokens: MetricNameDescriptor { name("tokens", "total", "Tokens of ended upstream attempts, by direction (input, output)") }
    static var windowUse: MetricNameDescriptor {
        name("window_use", "ratio", "Use of a provider's limit as a fraction of it, fleet-wide, as this node last read it")
    }
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
        self.spansDropped = registry.makeCounter(
            descriptor: Self.name("trace_spans_dropped", "total", "Spans the trace exporter dropped (queue full or export failed)"), labels: [])
        registry.makeGauge(
            descriptor: Self.name("build", "info", "The gateway's version"), labels: [("version", MultiplexerVersion.current)]
        ).set(1.0)
    }

    /// Counts spans the trace exporter dropped (`multiplexer_trace_spans_dropped_total`).
    public func droppedSpans(_ n: Int) {
        if n > 0 { self.spansDropped.increment(by: Int64(n)) }
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

    /// The metrics label of an attempt's outcome: the error kind of a failure (`timeout`, `tls_failure`, …),
    /// `broken_stream` for a served stream that broke.
    static func label(_ a: AttemptRecord, _ end: AttemptEnd) -> String {
        switch end.outcome {
        case .brokenStream: return "broken_stream"
        case .cancelled: return "cancelled"
        default: break
        }
        switch a.outcome {
        case .success: return "success"
        case .rateLimited: return "rate_limited"
        case .failure: return a.error?.rawValue ?? "server_error"
        case .unauthorized: return "unauthorized"
        case .contextLengthExceeded: return "context_length_exceeded"
        case .clientError: return "client_error"
        case .cancelled: return "cancelled"
        }
    }

    public func attemptEnded(_ a: AttemptRecord, _ end: AttemptEnd) {
        let outcome = Self.label(a, end)
        self.counter(CounterKey(kind: 1, a: a.provider, b: outcome, c: 0)) {
            self.registry.makeCounter(descriptor: Self.attempts, labels: [("provider", a.provider), ("outcome", outcome)])
        }.increment()
        Self.histogram(a.provider, in: self.histograms) {
            self.registry.makeDurationHistogram(descriptor: Self.upstreamLatency, labels: [("provider", a.provider)], buckets: Self.latencyBuckets)
        }.record(a.latency)
        if let ttft = end.timeToFirstToken {
            Self.histogram(a.provider, in: self.ttftHistograms) {
                self.registry.makeDurationHistogram(descriptor: Self.ttft, labels: [("provider", a.provider)], buckets: Self.ttftBuckets)
            }.record(ttft)
        }
        if let usage = end.usage {
            self.tokens(kind: 7, label: "provider", a.provider, usage)
            if let key = end.key { self.tokens(kind: 8, label: "key", key, usage) }
        }
        switch a.outcome {
        case .rateLimited: self.cooldown(provider: a.provider, reason: "rate_limited")
        case .unauthorized: self.cooldown(provider: a.provider, reason: "unauthorized")
        default: break
        }
        if a.exhaustedCooldown != nil { self.cooldown(provider: a.provider, reason: CooldownReason.exhausted.rawValue) }
    }

    private static func histogram(_ name: String, in cache: borrowing Mutex<[String: DurationHistogram]>, _ make: () -> DurationHistogram) -> DurationHistogram {
        if let cached = cache.withLock({ $0[name] }) { return cached }
        let h = make()
        cache.withLock { $0[name] = h }
        return h
    }

    private func tokens(kind: UInt8, label: String, _ name: String, _ usage: TokenUsage) {
        for (direction, n, slot) in [("input", usage.promptTokens, 0), ("output", usage.completionTokens, 1)] where n > 0 {
            self.counter(CounterKey(kind: kind, a: name, b: "", c: slot)) {
                self.registry.makeCounter(descriptor: Self.tokens, labels: [(label, name), ("direction", direction)])
            }.increment(by: Int64(n))
        }
    }

    /// Sets `multiplexer_window_use_ratio` from a stats snapshot, for every limit a provider has.
    func windowUse(_ stats: FleetStats, providers: [MultiplexerCore.Provider]) {
        let byName = Dictionary(stats.providers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for p in providers {
            guard let s = byName[p.name] else { continue }
            let l = p.limits
            let windows: [(String, Int, Int64?)] = [
                ("rpm", s.window.rpm, l.rpm.map(Int64.init)), ("rpd", s.window.rpd, l.rpd.map(Int64.init)),
                ("tpm", s.window.tpm, l.tpm.map(Int64.init)), ("tpd", s.window.tpd, l.tpd.map(Int64.init)),
                ("max_concurrent", s.window.inFlight, l.maxConcurrent.map(Int64.init)),
                ("daily_budget", Int(s.spentToday), l.dailyBudgetMicroUSD),
            ]
            for (i, (window, used, limit)) in windows.enumerated() {
                guard let limit, limit > 0 else { continue }
                self.gauge(CounterKey(kind: 9, a: p.name, b: "", c: i)) {
                    self.registry.makeGauge(descriptor: Self.windowUse, labels: [("provider", p.name), ("window", window)])
                }.set(min(1, max(0, Double(used) / Double(limit))))
            }
        }
    }

    private func gauge(_ key: CounterKey, _ make: () -> Gauge) -> Gauge {
        if let g = self.gauges.withLock({ $0[key] }) { return g }
        let g = make()
        self.gauges.withLock { $0[key] = g }
        return g
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
