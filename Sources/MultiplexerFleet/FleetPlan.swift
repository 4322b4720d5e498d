public import MultiplexerCore
public import MultiplexerMockProvider
public import MultiplexerProcesses

/// What a local fleet consists of: mock providers (each with the same strict limits the gateways
/// enforce for it), one model group over them, the number of gateway nodes, and whether Redis and an
/// nginx load balancer run.
public struct FleetPlan: Sendable {
    /// One upstream provider: an in-process ``MultiplexerMockProvider/MockProvider`` and its entry in the
    /// gateways' configuration.
    public struct Provider: Sendable {
        /// Provider name (`[a-z0-9._-]+`).
        public var name: String
        /// The limits the gateways enforce, fleet-wide.
        public var limits: ProviderLimits
        /// The limits the mock enforces strictly (429 and an overshoot count beyond them); by default the
        /// same as ``limits`` — a real provider's limits are what the gateway is configured with.
        public var mockLimits: ProviderLimits
        /// The tier in the model group.
        public var tier: Tier
        /// The weight in its tier.
        public var weight: Int
        /// Latency the mock adds to every answer.
        public var latency: Duration
        /// Extra provider keys for the configuration file, e.g. `"timeout_seconds: 2"`.
        public var settings: [String]
        /// Anything else about the mock (mode, stream chunks, token interval, …), applied last.
        public var mock: @Sendable (inout MockProvider.Configuration) -> Void = { _ in }
        /// An HTTPS/HTTP/2 front (nginx, ``TLSFrontProxy``) the gateways reach the mock through, as they reach a
        /// hosted API; `nil`: plain HTTP, as a self-hosted server.
        public var tls: TLSFront?

        public init(
            name: String, limits: ProviderLimits = .unlimited, mockLimits: ProviderLimits? = nil, tier: Tier = .primary, weight: Int = 1,
            latency: Duration = .milliseconds(20), settings: [String] = []
        ) {
            self.name = name
            self.limits = limits
            self.mockLimits = mockLimits ?? limits
            self.tier = tier
            self.weight = weight
            self.latency = latency
            self.settings = settings
        }
    }

    /// How a provider's HTTPS front presents itself, and what the gateways trust.
    public struct TLSFront: Sendable {
        /// The certificate nginx presents (from the fleet's ``TestCertificateAuthority``).
        public var certificate: TLSFrontProxy.ServerCertificate
        /// nginx requires a client certificate; the gateways are given the authority's client pair.
        public var mutual: Bool
        /// The gateways' `tls.ca_file` is the fleet's authority; `false`: no `ca_file`, so the system store,
        /// which does not know it (an unknown issuer).
        public var trustsAuthority: Bool

        public init(certificate: TLSFrontProxy.ServerCertificate = .valid, mutual: Bool = false, trustsAuthority: Bool = true) {
            self.certificate = certificate
            self.mutual = mutual
            self.trustsAuthority = trustsAuthority
        }
    }

    /// Where the gateways reach a provider through its HTTPS front.
    public struct TLSEndpoint: Sendable {
        public var url: String
        public var caFile: String?
        public var clientCertificate: TestCertificateAuthority.Pair?
    }

    public var providers: [Provider]
    /// The model group clients ask for.
    public var model = "demo"
    /// Extra model-group keys, e.g. `"tier_wait_ms: 0"`.
    public var groupSettings: [String] = []
    /// Extra `server:` keys, e.g. `"client_write_timeout_seconds: 2"`.
    public var serverSettings: [String] = []
    /// Gateway processes (`multiplexer serve`).
    public var nodes = 1
    /// A local `redis-server` shared by the nodes; without it each node has an in-memory store.
    public var redis = true
    /// Keep Redis's data over a stop (AOF, fsync on every write), so a restart is an outage, not a reset.
    public var redisPersistence = false
    /// Redis namespace.
    public var namespace = "mux"
    /// `redis.timeout_ms`.
    public var redisTimeoutMs = 50
    /// An nginx load balancer in front of the nodes.
    public var nginx = false
    /// `serve --drain-seconds`.
    public var drainSeconds: Double = 0
    /// `serve --shutdown-timeout` (the binary's default when `nil`).
    public var shutdownTimeoutSeconds: Double?
    /// `serve --log-level`.
    public var logLevel = "info"
    /// `admin_key` for `/admin/*`.
    public var adminKey = "fleet-admin-key"
    /// Top-level YAML appended to the configuration (e.g. `keys: []`).
    public var extraYAML = ""
    /// More arguments for every node's `multiplexer serve` (e.g. `--watch`).
    public var serveArguments: [String] = []
    /// Extra environment variables of the gateway processes (e.g. `OTEL_BSP_SCHEDULE_DELAY`).
    public var nodeEnvironment: [String: String] = [:]

    public init(providers: [Provider]) {
        self.providers = providers
    }

    /// The gateways' configuration file for mocks listening on `mockPorts` (by provider name).
    ///
    /// - Parameters:
    ///   - mockPorts: each mock's loopback port.
    ///   - redisURL: the Redis URL, or `nil` for the in-memory store.
    ///   - tls: the HTTPS fronts of providers with ``Provider/tls``, by provider name.
    public func configurationYAML(mockPorts: [String: Int], redisURL: String?, tls: [String: TLSEndpoint] = [:]) -> String {
        var y = "server:\n  host: 127.0.0.1\n"
        for s in self.serverSettings { y += "  \(s)\n" }
        if let redisURL {
            y += "redis:\n  url: \(redisURL)\n  namespace: \(self.namespace)\n  timeout_ms: \(self.redisTimeoutMs)\n  on_unavailable: local\n"
        }
        y += "providers:\n"
        for p in self.providers {
            let base = tls[p.name].map { "\($0.url)/v1" } ?? "http://127.0.0.1:\(mockPorts[p.name] ?? 0)/v1"
            y += "  - name: \(p.name)\n    base_url: \(base)\n    api_key: sk-mock-\(p.name)\n    model: mock-\(p.name)\n"
            if let t = tls[p.name] {
                var keys: [String] = []
                if let ca = t.caFile { keys.append("ca_file: \"\(ca)\"") }
                if let c = t.clientCertificate { keys += ["cert_file: \"\(c.certificatePath)\"", "key_file: \"\(c.keyPath)\""] }
                if !keys.isEmpty { y += "    tls: { \(keys.joined(separator: ", ")) }\n" }
            }
            let l = p.limits
            let pairs: [(String, Int?)] = [("rpm", l.rpm), ("rpd", l.rpd), ("tpm", l.tpm), ("tpd", l.tpd), ("max_concurrent", l.maxConcurrent)]
            let set = pairs.compactMap { k, v in v.map { "\(k): \($0)" } }
            if !set.isEmpty { y += "    limits: { \(set.joined(separator: ", ")) }\n" }
            for s in p.settings { y += "    \(s)\n" }
        }
        y += "models:\n  - name: \(self.model)\n"
        for tier in [Tier.primary, .fallback] {
            let members = self.providers.filter { $0.tier == tier }
            guard !members.isEmpty else { continue }
            y += "    \(tier == .primary ? "primary" : "fallback"):\n"
            for p in members { y += "      - { provider: \(p.name), weight: \(p.weight) }\n" }
        }
        for s in self.groupSettings { y += "    \(s)\n" }
        y += "admin_key: \(self.adminKey)\n"
        return y + self.extraYAML
    }
}
