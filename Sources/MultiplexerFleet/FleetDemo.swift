import Foundation
import MultiplexerCore
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerProcesses

/// `multiplexer demo`: a fleet on loopback — mock providers with strict limits, one or more gateway
/// nodes (over Redis), optionally nginx in front — bounded traffic through it, and a measured report of
/// how the providers' quotas added up without any provider ever answering 429.
public enum FleetDemo {
    public struct Options: Sendable {
        public var nodes = 1
        public var redis = false
        public var nginx = false
        public var requests = 120
        public var concurrency = 8
        /// After the traffic, keep the fleet up (print its endpoints) until `keepRunning` returns.
        public var keepRunning = false
        public init() {}
    }

    /// The demo's providers: two primaries and a fallback, with different strict limits.
    public static let providers: [FleetPlan.Provider] = [
        .init(name: "alpha", limits: .init(rpm: 40), weight: 2, latency: .milliseconds(40)),
        .init(name: "beta", limits: .init(rpm: 30), weight: 1, latency: .milliseconds(60)),
        .init(name: "gamma", limits: .init(rpm: 20), tier: .fallback, weight: 1, latency: .milliseconds(30)),
    ]

    /// The plan the options describe.
    public static func plan(_ o: Options) -> FleetPlan {
        var plan = FleetPlan(providers: Self.providers)
        plan.nodes = max(1, o.nodes)
        plan.redis = o.redis || o.nodes > 1
        plan.nginx = o.nginx
        plan.namespace = "demo"
        plan.logLevel = "warning"
        return plan
    }

    /// Runs the demo and prints its report to standard output.
    ///
    /// - Parameters:
    ///   - options: fleet size and traffic.
    ///   - keepRunning: awaited after the report when `options.keepRunning` (e.g. until SIGINT).
    /// - Returns: whether every check held (no overshoot; with Redis, its counters equal the mocks').
    public static func run(_ options: Options, keepRunning: @escaping @Sendable () async -> Void = {}) async throws -> Bool {
        let plan = Self.plan(options)
        if options.nodes > 1 && !options.redis {
            emit("(--nodes \(options.nodes) shares its limits through Redis: starting redis-server too)")
        }
        let clock = ContinuousClock()
        let started = clock.now
        return try await LocalFleet.run(plan) { fleet in
            let setup = started.duration(to: clock.now)
            emit(Self.header(fleet, options: options, setup: setup))
            let targets = fleet.nginx.map { [$0.url] } ?? fleet.nodes.map(\.url)
            let load = LoadGenerator(client: fleet.client, targets: targets, model: plan.model)
            let t0 = clock.now
            let results = options.requests > 0 ? await load.run(total: options.requests, concurrency: options.concurrency) : []
            let took = t0.duration(to: clock.now)
            var ok = true
            if options.requests > 0 {
                let stats = plan.redis ? try? await fleet.fleetStats() : nil
                let (text, good) = Self.report(fleet, results: results, took: took, stats: stats)
                emit(text)
                ok = good
            }
            if options.keepRunning {
                emit(Self.endpoints(fleet))
                await keepRunning()
                emit("stopping the fleet…")
            }
            return ok
        }
    }

    static func header(_ fleet: LocalFleet, options: Options, setup: Duration) -> String {
        let plan = fleet.plan
        var s = "\nMultiplexer demo — everything on loopback, started in \(Self.seconds(setup))\n"
        s += "  providers: \(plan.providers.count) mock providers with strict rolling limits (each answers 429 — and counts an overshoot — beyond its limit)\n"
        if let r = fleet.redis {
            s += "  gateways:  \(fleet.nodes.count) × `multiplexer serve` (\(fleet.nodes.map { "\($0.id) :\($0.port)" }.joined(separator: ", "))), sharing every limit through Redis 127.0.0.1:\(r.port), namespace {\(plan.namespace)}\n"
        } else {
            s += "  gateway:   1 × `multiplexer serve` (:\(fleet.nodes[0].port)), in-memory quota store\n"
        }
        if let n = fleet.nginx { s += "  balancer:  nginx on :\(n.port) in front of the gateways\n" }
        s += "  traffic:   \(options.requests) chat requests, \(options.concurrency) at a time, through \(fleet.nginx != nil ? "nginx" : fleet.nodes.count > 1 ? "the gateways in turn" : "the gateway")\n\n"
        let parts = plan.providers.map { "[\($0.name): \($0.limits.rpm ?? 0) rpm\($0.tier == .fallback ? ", fallback" : "")]" }
        s += "  " + parts.joined(separator: " + ") + " = \(plan.providers.reduce(0) { $0 + ($1.limits.rpm ?? 0) }) requests per minute combined\n"
        return s
    }

    /// The measured report, and whether every check held.
    static func report(_ fleet: LocalFleet, results: [LoadGenerator.Result], took: Duration, stats: FleetStats?) -> (String, Bool) {
        let plan = fleet.plan
        let counters = fleet.mockCounters()
        let served = results.filter { $0.status == 200 }
        let refused = results.filter { $0.status == 429 }
        let other = results.filter { $0.status != 200 && $0.status != 429 }
        let totalReceived = plan.providers.reduce(0) { $0 + (counters[$1.name]?.requests ?? 0) }
        var ok = true
        func pad(_ x: String, _ n: Int) -> String { x.count >= n ? x : x + String(repeating: " ", count: n - x.count) }
        func lpad(_ x: String, _ n: Int) -> String { x.count >= n ? x : String(repeating: " ", count: n - x.count) + x }

        var s = "\n  " + pad("provider", 10) + pad("tier", 10) + lpad("limit", 9) + lpad("received", 10) + lpad("served", 8) + lpad("429s", 6) + "   share\n"
        for p in plan.providers {
            let c = counters[p.name] ?? fleet.mocks[p.name]!.state.counters
            let share = totalReceived > 0 ? Double(c.requests) / Double(totalReceived) : 0
            let bar = String(repeating: "█", count: Int((share * 30).rounded()))
            s += "  " + pad(p.name, 10) + pad(p.tier == .primary ? "primary" : "fallback", 10) + lpad("\(p.limits.rpm ?? 0) rpm", 9) + lpad("\(c.requests)", 10)
                + lpad("\(c.served)", 8) + lpad("\(c.overshoot)", 6) + "   " + lpad(String(format: "%.0f%%", share * 100), 4) + " " + bar + "\n"
            if c.overshoot > 0 { ok = false }
        }
        let overshoot = fleet.totalOvershoot
        let fallbackNames = Set(plan.providers.filter { $0.tier == .fallback }.map(\.name))
        let fallbacks = served.filter { $0.provider.map(fallbackNames.contains) ?? false }.count
        let best = plan.providers.map { $0.limits.rpm ?? 0 }.max() ?? 0
        s += "\n  requests:  \(results.count) sent in \(Self.seconds(took)) — \(served.count) served (200)"
        s += refused.isEmpty ? "" : ", \(refused.count) answered 429 + Retry-After by the gateway itself (combined quota used up; no provider was asked)"
        s += other.isEmpty ? "\n" : ", \(other.count) failed (\(Dictionary(grouping: other, by: \.status).map { "\($0.value.count)× \($0.key == 0 ? "no answer" : String($0.key))" }.joined(separator: ", ")))\n"
        s += "  fallback:  \(fallbacks) served by the fallback tier (used only once alpha and beta were both at their limit)\n"
        if let nginx = fleet.nginx {
            let per = nginx.requestsPerUpstream()
            s += "  nodes:     " + fleet.nodes.map { "\($0.id) \(per[$0.port] ?? 0)" }.joined(separator: " · ") + " requests (nginx access log)\n"
        } else if fleet.nodes.count > 1 {
            s += "  nodes:     " + fleet.nodes.indices.map { i in "\(fleet.nodes[i].id) \(results.filter { $0.target == i }.count)" }.joined(separator: " · ") + " requests\n"
        }
        if best > 0 {
            s += "  combined:  a single provider would have allowed \(best) of these requests; together they served \(served.count)"
            s += String(format: " (%.2f×)\n", Double(served.count) / Double(best))
        }
        if let stats {
            var mismatches: [String] = []
            for p in stats.providers {
                guard let c = counters[p.name] else { continue }
                if p.usage.requests != c.requests || p.usage.success != c.served || p.usage.promptTokens != c.promptTokens
                    || p.usage.completionTokens != c.completionTokens
                {
                    mismatches.append("\(p.name): Redis \(p.usage.requests) requests/\(p.usage.success) ok, mock \(c.requests)/\(c.served)")
                }
            }
            let fb = stats.models.first?.counters.fallbacks ?? -1
            if fb != fallbacks { mismatches.append("model fallbacks: Redis \(fb), client saw \(fallbacks)") }
            if mismatches.isEmpty {
                s += "  counters:  Redis usage counters (multiplexer stats) equal what each mock counted — requests, successes, prompt and completion tokens\n"
            } else {
                ok = false
                s += "  counters:  MISMATCH — \(mismatches.joined(separator: "; "))\n"
            }
        }
        if overshoot == 0 && other.isEmpty {
            s += "  overshoot: 0 — no provider ever saw a request beyond its limit\n"
        } else {
            if overshoot > 0 { s += "  overshoot: \(overshoot) — a provider answered 429 because its limit was exceeded: FAILED\n" }
            ok = ok && overshoot == 0
        }
        return (s, ok)
    }

    static func endpoints(_ fleet: LocalFleet) -> String {
        var s = "\nThe fleet keeps running (Ctrl-C or SIGTERM stops every process it started):\n"
        if let n = fleet.nginx { s += "  load balancer  \(n.url)/v1/chat/completions   (nginx)\n" }
        for n in fleet.nodes { s += "  gateway \(n.id)   \(n.url)   (/readyz, /metrics, /admin/stats with `Authorization: Bearer \(fleet.plan.adminKey)`)\n" }
        for p in fleet.plan.providers { s += "  mock " + p.name.padding(toLength: 10, withPad: " ", startingAt: 0) + "http://127.0.0.1:\(fleet.mockPorts[p.name] ?? 0)   (/mock/stats, POST /mock/mode)\n" }
        if let r = fleet.redis { s += "  redis          redis-cli -p \(r.port) --scan --pattern '{\(fleet.plan.namespace)}:*'\n" }
        s += "  config         \(fleet.configPath)   (model \"\(fleet.plan.model)\"; logs in \(fleet.directory))\n"
        s += "  try:           curl -s \(fleet.entryURL)/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\":\"\(fleet.plan.model)\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n"
        return s
    }

    static func seconds(_ d: Duration) -> String {
        String(format: "%.1f s", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }

    /// Writes a line to standard output at once (unbuffered: a log file shows the report and the
    /// endpoints while the fleet runs).
    static func emit(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
