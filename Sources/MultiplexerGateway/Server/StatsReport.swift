import Foundation
import MultiplexerCore
import MultiplexerRedis

/// `multiplexer stats`: the fleet's counters from Redis, as a table or JSON.
public enum StatsReport {
    /// The Redis store a command line tool reads: from the configuration's `redis` section, else `--redis`.
    static func store(configPath: String?, redisURL: String?, namespace: String) throws -> (RedisQuotaStore, GatewayConfiguration?, String) {
        var url = redisURL
        var ns = namespace
        var config: GatewayConfiguration?
        if let configPath {
            let c = try ConfigurationLoader.load(path: configPath)
            guard let r = c.redis, case .standalone(let u) = r.topology else {
                throw ConfigurationError(problems: [.init(path: "redis", line: nil, message: "this command needs a redis.url in the configuration")], file: configPath)
            }
            url = u
            ns = r.namespace
            config = c
        }
        guard let url else { throw RedisError(.invalidURL, "give --config PATH or --redis URL (or set MULTIPLEXER_CONFIG)") }
        let store = RedisQuotaStore(configuration: .init(
            endpoint: try RedisEndpoint(url: url), namespace: ns, connectTimeout: .seconds(2), commandTimeout: .seconds(5), onUnavailable: .reject,
            nodeID: "cli"))
        return (store, config, ns)
    }

    public static func render(configPath: String?, redisURL: String?, namespace: String, json: Bool) async throws -> String {
        let (store, config, ns) = try Self.store(configPath: configPath, redisURL: redisURL, namespace: namespace)
        // Keys: every key Redis knows (the file's and the run-time ones).
        let query = config.map { c in StatsQuery(providers: c.providers.map(\.name), keys: nil, models: c.models.map(\.name)) } ?? .all
        defer { store.shutdown() }
        let stats = try await store.stats(query)
        if json { return StatsJSON.render(stats, node: nil, store: "connected") }
        return Self.table(stats, namespace: ns)
    }

    /// Micro-USD as dollars with four decimals.
    static func dollars(_ micro: Int64) -> String {
        String(format: "%.4f", Double(micro) / 1_000_000)
    }

    static func table(_ s: FleetStats, namespace: String) -> String {
        func pad(_ x: String, _ n: Int) -> String { x.count >= n ? x : x + String(repeating: " ", count: n - x.count) }
        // At least one space before every column, however wide its value ("prompt" and "completion" ran together).
        func lpad(_ x: String, _ n: Int) -> String { String(repeating: " ", count: max(1, n - x.count)) + x }
        var out = "namespace {\(namespace)} — \(s.nodes.count) live node\(s.nodes.count == 1 ? "" : "s")\(s.nodes.isEmpty ? "" : ": " + s.nodes.map(\.id).joined(separator: ", "))\n\n"
        let w = max(8, (s.providers.map(\.name.count).max() ?? 0) + 2)
        out += pad("provider", w) + ["requests", "success", "429", "errors", "prompt", "completion", "fallback", "rpm", "tpm", "inflight"].map { lpad($0, 10) }.joined()
            + lpad("$ today", 10) + "  state\n"
        for p in s.providers {
            let state: String
            if p.disabled {
                state = "disabled"
            } else if let r = p.cooldownRemaining {
                state = "cooling down \(String(format: "%.1f", r.seconds))s (\(p.cooldownReason?.rawValue ?? "?"))"
            } else {
                state = "ok"
            }
            let u = p.usage
            out += pad(p.name, w)
                + [u.requests, u.success, u.rateLimited, u.errors, u.promptTokens, u.completionTokens, u.fallbackServed, p.window.rpm, p.window.tpm, p.window.inFlight]
                .map { lpad(String($0), 10) }.joined() + lpad(Self.dollars(p.spentToday), 10) + "  \(state)\n"
        }
        if !s.models.isEmpty {
            out += "\n" + pad("model", w) + ["requests", "fallbacks", "exhausted", "continued"].map { lpad($0, 10) }.joined() + "\n"
            for m in s.models {
                out += pad(m.name, w) + [m.counters.requests, m.counters.fallbacks, m.counters.exhausted, m.counters.continued].map { lpad(String($0), 10) }.joined() + "\n"
            }
        }
        if !s.keys.isEmpty {
            out += "\n" + pad("key", w) + ["requests", "success", "429", "errors", "tokens", "rpm", "tpm", "$ today", "$ month"].map { lpad($0, 10) }.joined() + "\n"
            for k in s.keys {
                let u = k.usage
                out += pad(k.name, w)
                    + ([u.requests, u.success, u.rateLimited, u.errors, u.promptTokens + u.completionTokens, k.window.rpm, k.window.tpm].map { String($0) }
                        + [Self.dollars(k.spentToday), Self.dollars(k.spentThisMonth)]).map { lpad($0, 10) }
                    .joined() + "\n"
            }
        }
        return out
    }
}
