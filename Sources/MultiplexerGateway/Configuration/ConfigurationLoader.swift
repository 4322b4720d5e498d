public import Foundation
import MultiplexerCore
import MultiplexerRedis
import Yams

/// Reads and validates the YAML configuration file in one pass that reports **every** problem —
/// unknown keys, missing keys, bad values, duplicate names, references to unknown providers or model
/// groups — each with its key path and line.
///
/// `${VAR}` and `${VAR:-default}` in values are replaced from the environment (`$${` is a literal `${`).
public enum ConfigurationLoader {
    /// Loads the file at `path`.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> GatewayConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(problems: [.init(path: "", line: nil, message: "cannot read the configuration file")], file: path)
        }
        do {
            return try self.parse(yaml: String(decoding: data, as: UTF8.self), environment: environment)
        } catch {
            var e = error
            e.file = path
            throw e
        }
    }

    /// Parses configuration text.
    public static func parse(yaml: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> GatewayConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigurationError(problems: [Self.problem(from: error)])
        } catch {
            throw ConfigurationError(problems: [.init(path: "", line: nil, message: "not valid YAML: \(error)")])
        }
        let walker = Walker(environment: environment)
        var config = walker.configuration(root)
        config.warnings = walker.warnings
        guard walker.problems.isEmpty else {
            throw ConfigurationError(problems: walker.problems.sorted { ($0.line ?? 0, $0.path) < ($1.line ?? 0, $1.path) })
        }
        return config
    }

    private static func problem(from error: YamlError) -> ConfigurationError.Problem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return .init(path: "", line: mark.line, message: "not valid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            // Yams stops at the first mapping with a repeated key and points at the key's *first* use. The one to
            // fix is the later one (most YAML readers silently keep it): found from the first one's position.
            let key = duplicates.sorted().first ?? "?"
            let first = context.mark.line
            let second = Self.repeatedKeyLine(key, firstLine: first, firstColumn: context.mark.column, in: context.text)
            return .init(path: "", line: second ?? first, message: "duplicate key '\(key)'" + (second == nil ? "" : " (first at line \(first))"))
        default:
            return .init(path: "", line: nil, message: "not valid YAML: \(error)")
        }
    }
}

extension ConfigurationLoader {
    /// The line of the next use of `key` in the mapping whose use of it starts at `firstLine`:`firstColumn`
    /// (1-based, as Yams marks): later on the same line (a flow mapping, `{ a: 1, a: 2 }`), or a later line
    /// indented exactly as the first (a block mapping), before the mapping ends (a line indented less).
    static func repeatedKeyLine(_ key: String, firstLine: Int, firstColumn: Int, in text: String) -> Int? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard firstLine >= 1, firstLine <= lines.count else { return nil }
        let forms = [key, "\"\(key)\"", "'\(key)'"].map { $0 + ":" }
        let line = Array(lines[firstLine - 1].utf8)
        let start = min(line.count, max(0, firstColumn - 1) + key.utf8.count)
        let rest = String(decoding: line[start...], as: UTF8.self)
        for form in forms {
            if let r = rest.range(of: form) {
                let before = rest[..<r.lowerBound].last
                if before == nil || before == " " || before == "," || before == "{" { return firstLine }
            }
        }
        let indent = max(0, firstColumn - 1)
        for n in firstLine..<lines.count {
            let text = lines[n]
            let body = text.drop { $0 == " " }
            if body.isEmpty || body.hasPrefix("#") { continue }
            let column = text.count - body.count
            // Indented less: the mapping ended (a parent key, or the next `- ` item of the list it is in).
            if column < indent { return nil }
            if column == indent, forms.contains(where: { body.hasPrefix($0) }) { return n + 1 }
        }
        return nil
    }
}

/// Walks the YAML tree, collecting values and problems.
private final class Walker {
    /// Largest limit accepted: 2^50 stays exact in the Lua scripts' double arithmetic.
    static let maxLimit = 1 << 50
    var problems: [ConfigurationError.Problem] = []
    var warnings: [ConfigurationError.Problem] = []
    let environment: [String: String]

    init(environment: [String: String]) {
        self.environment = environment
    }

    func fail(_ path: String, _ node: Node?, _ message: String) {
        self.problems.append(.init(path: path, line: node?.mark?.line, message: message))
    }

    /// A valid but risky setting: `check` prints it, `serve` logs it at warning.
    func warn(_ path: String, _ node: Node?, _ message: String) {
        self.warnings.append(.init(path: path, line: node?.mark?.line, message: message))
    }

    // MARK: Sections

    func configuration(_ root: Node?) -> GatewayConfiguration {
        var c = GatewayConfiguration()
        guard let top = self.map(root, "") else {
            if root == nil { self.fail("", nil, "the file is empty") }
            return c
        }
        if let s = top.take("server") { c.server = self.server(s, "server") }
        if let r = top.take("redis") { c.redis = self.redis(r, "redis") }
        if let p = top.take("providers") {
            let items = self.list(p, "providers")
            if items.isEmpty && p.sequence != nil { self.fail("providers", p, "needs at least one provider") }
            c.providers = items.compactMap { self.provider($0.node, $0.path) }
            // Every later use of a name is reported where it is written, with the first one's line.
            var first: [String: Int] = [:]
            for item in items {
                guard let nameNode = item.node.mapping?["name"], let name = nameNode.scalar?.string else { continue }
                if let line = first[name] {
                    self.fail("\(item.path).name", nameNode, "duplicate provider name '\(name)' (first at line \(line))")
                } else {
                    first[name] = nameNode.mark?.line ?? 0
                }
            }
        } else {
            self.fail("providers", root, "missing required key")
        }
        if let m = top.take("models") {
            let items = self.list(m, "models")
            if items.isEmpty && m.sequence != nil { self.fail("models", m, "needs at least one model group") }
            c.models = items.compactMap { self.model($0.node, $0.path, providers: Set(c.providers.map(\.name))) }
        } else {
            self.fail("models", root, "missing required key")
        }
        let modelNames = self.checkModelNames(c.models, top.node("models"))
        if let d = top.take("default_model") {
            if let name = self.string(d, "default_model") {
                if !modelNames.contains(name) { self.fail("default_model", d, "'\(name)' is not a model group or alias") }
                c.defaultModel = name
            }
        }
        if let k = top.take("keys") {
            c.keysRequired = true
            c.keys = self.list(k, "keys").compactMap { self.key($0.node, $0.path, models: c.models) }
            self.checkKeys(c.keys, k)
            // A key's budget counts what it spends: every provider it may reach must have a price.
            for (i, key) in c.keys.enumerated() where key.limits.hasBudget {
                let groups = c.models.filter { g in key.models.map { $0.contains(g.name) } ?? true }
                let reachable = Set(groups.flatMap { ($0.primary + $0.fallback).map(\.provider) })
                let unpriced = c.providers.filter { reachable.contains($0.name) && $0.pricing == nil }.map(\.name).sorted()
                if !unpriced.isEmpty {
                    self.fail(
                        "keys[\(i)].budget", k.sequence?[i]["budget"] ?? k,
                        "a budget needs pricing on every provider the key may reach; none on: \(unpriced.joined(separator: ", "))")
                }
            }
        }
        if let a = top.take("admin_key") {
            if let key = self.string(a, "admin_key") {
                if key.count < 8 { self.fail("admin_key", a, "must be at least 8 characters") } else { c.adminKey = key }
            }
        }
        if let t = top.take("tracing") { c.tracing = self.tracing(t, "tracing") }
        top.finish()
        return c
    }

    func tracing(_ node: Node, _ path: String) -> GatewayConfiguration.Tracing? {
        guard let m = self.map(node, path) else { return nil }
        var t: GatewayConfiguration.Tracing?
        if let n = m.take("otlp_endpoint") {
            if let url = self.string(n, path + ".otlp_endpoint", nonEmpty: true) {
                let lower = url.lowercased()
                if (lower.hasPrefix("http://") || lower.hasPrefix("https://")) && url.count > 8 && !url.contains(where: \.isWhitespace) {
                    t = GatewayConfiguration.Tracing(otlpEndpoint: url)
                } else {
                    self.fail(path + ".otlp_endpoint", n, "must be an http:// or https:// URL, got '\(url.prefix(200))'")
                }
            }
        } else {
            self.fail(path + ".otlp_endpoint", node, "missing required key")
        }
        if let n = m.take("service_name"), let name = self.string(n, path + ".service_name", nonEmpty: true) { t?.serviceName = name }
        if let n = m.take("sample_ratio"), let v = self.scalar(n, path + ".sample_ratio") {
            if let d = Double(v), d.isFinite, (0...1).contains(d) {
                t?.sampleRatio = d
            } else {
                self.fail(path + ".sample_ratio", n, "must be a number from 0 to 1, got '\(v.prefix(100))'")
            }
        }
        m.finish()
        return t
    }

    func server(_ node: Node, _ path: String) -> GatewayConfiguration.Server {
        var s = GatewayConfiguration.Server()
        guard let m = self.map(node, path) else { return s }
        if let n = m.take("host") { s.host = self.string(n, path + ".host", nonEmpty: true) ?? s.host }
        if let n = m.take("port") { s.port = self.int(n, path + ".port", 0...65535) ?? s.port }
        if let n = m.take("node_id") { s.nodeID = self.string(n, path + ".node_id", nonEmpty: true) }
        if let n = m.take("max_body_bytes") { s.maxBodyBytes = self.int(n, path + ".max_body_bytes", 1024...1_073_741_824) ?? s.maxBodyBytes }
        if let n = m.take("client_write_timeout_seconds") {
            s.clientWriteTimeout = self.seconds(n, path + ".client_write_timeout_seconds") ?? s.clientWriteTimeout
        }
        if let n = m.take("header_timeout_seconds") {
            s.headerTimeout = self.seconds(n, path + ".header_timeout_seconds") ?? s.headerTimeout
        }
        if let n = m.take("idle_timeout_seconds") {
            s.idleTimeout = self.seconds(n, path + ".idle_timeout_seconds") ?? s.idleTimeout
        }
        if let n = m.take("max_connections") {
            s.maxConnections = self.int(n, path + ".max_connections", 1...1_000_000) ?? s.maxConnections
        }
        if let n = m.take("log_format"), let v = self.string(n, path + ".log_format") {
            if let f = GatewayConfiguration.LogFormat(rawValue: v) {
                s.logFormat = f
            } else {
                self.fail(path + ".log_format", n, "must be text or json, got '\(v.prefix(100))'")
            }
        }
        if let n = m.take("passthrough") {
            let items = self.list(n, path + ".passthrough")
            s.passthrough = items.compactMap { item in
                guard let op = self.string(item.node, item.path, nonEmpty: true) else { return nil }
                guard PathRules.isValidOperation(op) else {
                    self.fail(item.path, item.node, "must be an operation path like 'responses' or 'images/generations' ([a-z0-9_-] segments), got '\(op.prefix(100))'")
                    return nil
                }
                return op
            }
        }
        m.finish()
        return s
    }

    func redis(_ node: Node, _ path: String) -> GatewayConfiguration.Redis? {
        guard let m = self.map(node, path) else { return nil }
        var topology: GatewayConfiguration.RedisTopology?
        var sources = 0
        if let n = m.take("url") {
            sources += 1
            if let url = self.string(n, path + ".url", nonEmpty: true) {
                do {
                    _ = try RedisEndpoint(url: url)
                    topology = .standalone(url: url)
                } catch let error as RedisError {
                    self.fail(path + ".url", n, "not a valid redis URL (\(error.message))")
                } catch {
                    self.fail(path + ".url", n, "not a valid redis URL")
                }
            }
        }
        let master = m.take("master_name")
        if let n = m.take("sentinels") {
            sources += 1
            let hosts = self.hostPorts(n, path + ".sentinels")
            if let master, let name = self.string(master, path + ".master_name", nonEmpty: true) {
                topology = .sentinel(sentinels: hosts, masterName: name)
            } else if master == nil {
                self.fail(path + ".master_name", n, "required with sentinels")
            }
        } else if let master {
            self.fail(path + ".master_name", master, "only valid with sentinels")
        }
        if let n = m.take("cluster") {
            sources += 1
            topology = .cluster(seeds: self.hostPorts(n, path + ".cluster"))
        }
        if sources != 1 { self.fail(path, node, sources == 0 ? "needs one of url, sentinels or cluster" : "give only one of url, sentinels or cluster") }
        var r = GatewayConfiguration.Redis(topology: topology ?? .standalone(url: "redis://127.0.0.1:6379/0"))
        if let n = m.take("namespace"), let ns = self.string(n, path + ".namespace", nonEmpty: true) {
            if ns.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" }) { r.namespace = ns } else {
                self.fail(path + ".namespace", n, "must contain only letters, digits, '.', '_' and '-'")
            }
        }
        if let n = m.take("password") {
            if case .standalone = r.topology { self.fail(path + ".password", n, "only with sentinels or cluster (a url carries its own password)") } else {
                r.password = self.string(n, path + ".password")
            }
        }
        if let n = m.take("timeout_ms") { r.timeoutMs = self.int(n, path + ".timeout_ms", 1...60_000) ?? r.timeoutMs }
        if let n = m.take("on_unavailable"), let v = self.string(n, path + ".on_unavailable") {
            if let p = GatewayConfiguration.UnavailablePolicy(rawValue: v) { r.onUnavailable = p } else {
                self.fail(path + ".on_unavailable", n, "must be 'local' or 'reject', got '\(v)'")
            }
        }
        m.finish()
        return topology == nil ? nil : r
    }

    func provider(_ node: Node, _ path: String) -> Provider? {
        guard let m = self.map(node, path) else { return nil }
        let name = m.take("name").flatMap { self.string($0, path + ".name") }
        if name == nil, m.node("name") == nil { self.fail(path + ".name", node, "missing required key") }
        if let name, !Provider.isValidName(name) { self.fail(path + ".name", m.node("name"), "'\(name)' must match [a-z0-9._-]+") }
        let baseURL = m.take("base_url").flatMap { n -> String? in
            guard let u = self.string(n, path + ".base_url", nonEmpty: true) else { return nil }
            guard let url = URL(string: u), let scheme = url.scheme, scheme == "http" || scheme == "https", url.host?.isEmpty == false else {
                self.fail(path + ".base_url", n, "must be an http:// or https:// URL, got '\(u)'")
                return nil
            }
            return u.hasSuffix("/") ? String(u.dropLast()) : u
        }
        if m.node("base_url") == nil { self.fail(path + ".base_url", node, "missing required key") }
        let model = m.take("model").flatMap { self.string($0, path + ".model", nonEmpty: true) }
        if m.node("model") == nil { self.fail(path + ".model", node, "missing required key") }
        var p = Provider(name: name ?? "", baseURL: baseURL ?? "", model: model ?? "")
        if let n = m.take("api_key") { p.apiKey = self.string(n, path + ".api_key") ?? "" }
        if let n = m.take("limits"), let l = self.map(n, path + ".limits") {
            func limit(_ k: String) -> Int? { l.take(k).flatMap { self.int($0, "\(path).limits.\(k)", 1...Self.maxLimit) } }
            p.limits = ProviderLimits(rpm: limit("rpm"), rpd: limit("rpd"), tpm: limit("tpm"), tpd: limit("tpd"), maxConcurrent: limit("max_concurrent"))
            l.finish()
        }
        func seconds(_ k: String, _ current: Duration) -> Duration {
            m.take(k).flatMap { self.seconds($0, "\(path).\(k)") } ?? current
        }
        p.cooldown = seconds("cooldown_seconds", p.cooldown)
        p.failureCooldown = seconds("failure_cooldown_seconds", p.failureCooldown)
        p.connectTimeout = seconds("connect_timeout_seconds", p.connectTimeout)
        p.timeout = seconds("timeout_seconds", p.timeout)
        p.timeToFirstTokenTimeout = seconds("ttft_timeout_seconds", p.timeToFirstTokenTimeout)
        p.streamIdleTimeout = seconds("stream_idle_timeout_seconds", p.streamIdleTimeout)
        if let n = m.take("failure_threshold") { p.failureThreshold = self.int(n, path + ".failure_threshold", 1...1000) ?? p.failureThreshold }
        if let n = m.take("default_max_tokens") { p.defaultMaxTokens = self.int(n, path + ".default_max_tokens", 1...10_000_000) ?? p.defaultMaxTokens }
        if let n = m.take("context_window") { p.contextWindow = self.int(n, path + ".context_window", 1...100_000_000) }
        if let n = m.take("supports_prefill") { p.supportsPrefill = self.bool(n, path + ".supports_prefill") ?? p.supportsPrefill }
        if let n = m.take("forward_client_headers") {
            p.forwardClientHeaders = self.bool(n, path + ".forward_client_headers") ?? p.forwardClientHeaders
        }
        if let n = m.take("headers"), let h = self.map(n, path + ".headers") {
            for (k, v) in h.remaining() {
                if let value = self.string(v, "\(path).headers.\(k)") { p.headers[k] = value }
            }
        }
        if let n = m.take("max_event_bytes") { p.maxEventBytes = self.int(n, path + ".max_event_bytes", 1024...(1 << 30)) ?? p.maxEventBytes }
        if let n = m.take("tls") { p.tls = self.tls(n, path + ".tls", https: baseURL.map { $0.lowercased().hasPrefix("https://") }) }
        if let n = m.take("pricing"), let pr = self.map(n, path + ".pricing") {
            let input = pr.take("input_per_mtok").flatMap { self.usd($0, path + ".pricing.input_per_mtok") }
            let output = pr.take("output_per_mtok").flatMap { self.usd($0, path + ".pricing.output_per_mtok") }
            if pr.node("input_per_mtok") == nil { self.fail(path + ".pricing.input_per_mtok", n, "missing required key") }
            if pr.node("output_per_mtok") == nil { self.fail(path + ".pricing.output_per_mtok", n, "missing required key") }
            if let input, let output { p.pricing = Pricing(inputMicroUSDPerMillion: input, outputMicroUSDPerMillion: output) }
            pr.finish()
        }
        if let n = m.take("budget"), let b = self.map(n, path + ".budget") {
            p.limits.dailyBudgetMicroUSD = b.take("daily_usd").flatMap { self.usd($0, path + ".budget.daily_usd") }
            if p.pricing == nil { self.fail(path + ".budget", n, "a budget needs pricing on the provider") }
            b.finish()
        }
        m.finish()
        return name == nil || baseURL == nil || model == nil ? nil : p
    }

    /// `providers[].tls`: files must be readable now (a typo is found by `check`, not by the first request);
    /// a key needs its certificate; `verify: false` is accepted with a warning.
    func tls(_ node: Node, _ path: String, https: Bool?) -> TLSOptions {
        var t = TLSOptions()
        guard let m = self.map(node, path) else { return t }
        if https == false { self.fail(path, node, "applies to https:// base URLs only") }
        func file(_ k: String) -> String? {
            guard let n = m.take(k), let f = self.string(n, "\(path).\(k)", nonEmpty: true) else { return nil }
            if !FileManager.default.isReadableFile(atPath: f) { self.fail("\(path).\(k)", n, "cannot read '\(f)'") }
            return f
        }
        t.caFile = file("ca_file")
        t.certFile = file("cert_file")
        t.keyFile = file("key_file")
        if t.keyFile != nil && t.certFile == nil { self.fail(path + ".key_file", m.node("key_file"), "needs cert_file") }
        if let n = m.take("verify") {
            t.verify = self.bool(n, path + ".verify") ?? true
            if !t.verify {
                self.warn(path + ".verify", n, "certificate verification is off: anyone on the network path can read and change this provider's traffic, its API key included")
            }
        }
        m.finish()
        return t
    }

    func model(_ node: Node, _ path: String, providers: Set<String>) -> ModelGroup? {
        guard let m = self.map(node, path) else { return nil }
        let name = m.take("name").flatMap { self.string($0, path + ".name", nonEmpty: true) }
        if m.node("name") == nil { self.fail(path + ".name", node, "missing required key") }
        var g = ModelGroup(name: name ?? "", primary: [])
        if let n = m.take("aliases") { g.aliases = self.stringList(n, path + ".aliases") }
        func tier(_ key: String) -> [WeightedProvider] {
            guard let n = m.take(key) else { return [] }
            var seen = Set<String>()
            return self.list(n, "\(path).\(key)").compactMap { item -> WeightedProvider? in
                guard let e = self.map(item.node, item.path) else { return nil }
                defer { e.finish() }
                guard let pn = e.take("provider"), let provider = self.string(pn, item.path + ".provider") else {
                    if e.node("provider") == nil { self.fail(item.path + ".provider", item.node, "missing required key") }
                    return nil
                }
                if !providers.contains(provider) { self.fail(item.path + ".provider", pn, "unknown provider '\(provider)'") }
                if !seen.insert(provider).inserted { self.fail(item.path + ".provider", pn, "'\(provider)' is listed twice in \(key)") }
                let weight = e.take("weight").flatMap { self.int($0, item.path + ".weight", 1...1_000_000, message: "must be a positive integer") } ?? 1
                return WeightedProvider(provider: provider, weight: weight)
            }
        }
        g.primary = tier("primary")
        if m.node("primary") == nil && !self.problems.contains(where: { $0.path == path + ".primary" }) {
            self.fail(path + ".primary", node, "missing required key")
        }
        g.fallback = tier("fallback")
        let both = g.primary.map(\.provider).filter { p in g.fallback.contains { $0.provider == p } }
        for p in both { self.fail(path + ".fallback", m.node("fallback"), "provider '\(p)' is in both tiers") }
        if let n = m.take("max_attempts") { g.maxAttempts = self.int(n, path + ".max_attempts", 1...100) ?? g.maxAttempts }
        if let n = m.take("retries_per_provider") { g.retriesPerProvider = self.int(n, path + ".retries_per_provider", 0...10) ?? g.retriesPerProvider }
        if let n = m.take("tier_wait_ms"), let v = self.int(n, path + ".tier_wait_ms", 0...600_000) { g.tierWait = .milliseconds(v) }
        if let n = m.take("queue_timeout_ms"), let v = self.int(n, path + ".queue_timeout_ms", 0...600_000) { g.queueTimeout = .milliseconds(v) }
        if g.primary.isEmpty, m.node("primary") != nil { self.fail(path + ".primary", m.node("primary"), "needs at least one provider") }
        m.finish()
        return name == nil ? nil : g
    }

    func checkModelNames(_ groups: [ModelGroup], _ node: Node?) -> Set<String> {
        var seen = Set<String>()
        for (i, g) in groups.enumerated() {
            for n in [g.name] + g.aliases where !seen.insert(n).inserted {
                self.fail("models[\(i)]", node?.sequence?[i], "model name or alias '\(n)' is used twice")
            }
        }
        return seen
    }

    func key(_ node: Node, _ path: String, models: [ModelGroup]) -> GatewayConfiguration.Key? {
        guard let m = self.map(node, path) else { return nil }
        let name = m.take("name").flatMap { self.string($0, path + ".name") }
        if m.node("name") == nil { self.fail(path + ".name", node, "missing required key") }
        if let name, !Provider.isValidName(name) { self.fail(path + ".name", m.node("name"), "'\(name)' must match [a-z0-9._-]+") }
        var secret: GatewayConfiguration.KeySecret?
        let plain = m.take("key"), hashed = m.take("key_sha256")
        if plain != nil && hashed != nil { self.fail(path, node, "give key or key_sha256, not both") }
        if let plain, let k = self.string(plain, path + ".key") {
            if k.count < 8 { self.fail(path + ".key", plain, "must be at least 8 characters") } else { secret = .plain(k) }
        }
        if let hashed, let h = self.string(hashed, path + ".key_sha256") {
            let hex = h.lowercased()
            if hex.count == 64, hex.allSatisfy(\.isHexDigit) { secret = .sha256(hex) } else { self.fail(path + ".key_sha256", hashed, "must be 64 hex digits") }
        }
        if plain == nil && hashed == nil { self.fail(path + ".key", node, "missing required key (key or key_sha256)") }
        var k = GatewayConfiguration.Key(name: name ?? "", secret: secret ?? .plain(""))
        if let n = m.take("limits"), let l = self.map(n, path + ".limits") {
            k.limits = KeyLimits(
                rpm: l.take("rpm").flatMap { self.int($0, path + ".limits.rpm", 1...Self.maxLimit) },
                tpm: l.take("tpm").flatMap { self.int($0, path + ".limits.tpm", 1...Self.maxLimit) })
            l.finish()
        }
        if let n = m.take("budget"), let b = self.map(n, path + ".budget") {
            k.limits.dailyBudgetMicroUSD = b.take("daily_usd").flatMap { self.usd($0, path + ".budget.daily_usd") }
            k.limits.monthlyBudgetMicroUSD = b.take("monthly_usd").flatMap { self.usd($0, path + ".budget.monthly_usd") }
            b.finish()
        }
        if let n = m.take("models") {
            var allowed = Set<String>()
            for (i, item) in self.stringList(n, path + ".models").enumerated() {
                if let g = models.first(where: { $0.name == item || $0.aliases.contains(item) }) {
                    allowed.insert(g.name)
                } else {
                    self.fail("\(path).models[\(i)]", n.sequence?[i] ?? n, "unknown model '\(item)'")
                }
            }
            k.models = allowed
        }
        m.finish()
        return name == nil || secret == nil ? nil : k
    }

    func checkKeys(_ keys: [GatewayConfiguration.Key], _ node: Node) {
        var names = Set<String>(), secrets = Set<GatewayConfiguration.KeySecret>()
        for (i, k) in keys.enumerated() {
            if !names.insert(k.name).inserted { self.fail("keys[\(i)].name", node.sequence?[i], "duplicate key name '\(k.name)'") }
            if !secrets.insert(k.secret).inserted { self.fail("keys[\(i)]", node.sequence?[i], "the same key is configured twice") }
        }
    }

    // MARK: Values

    func map(_ node: Node?, _ path: String) -> MapReader? {
        guard let node else { return nil }
        guard let mapping = node.mapping else {
            if !Self.isNull(node) || path.isEmpty { self.fail(path, node, "must be a mapping") }
            return nil
        }
        var pairs: [(String, Node)] = []
        var seen = Set<String>()
        for (k, v) in mapping {
            guard let key = k.scalar?.string else {
                self.fail(path, k, "keys must be plain strings")
                continue
            }
            if !seen.insert(key).inserted { self.fail(Self.join(path, key), k, "duplicate key") }
            pairs.append((key, v))
        }
        return MapReader(walker: self, path: path, pairs: pairs)
    }

    func list(_ node: Node, _ path: String) -> [(node: Node, path: String)] {
        guard let seq = node.sequence else {
            self.fail(path, node, "must be a list")
            return []
        }
        return seq.enumerated().map { ($1, "\(path)[\($0)]") }
    }

    func scalar(_ node: Node, _ path: String) -> String? {
        guard let s = node.scalar else {
            self.fail(path, node, "must be a single value")
            return nil
        }
        return self.substitute(s.string, path, node)
    }

    func string(_ node: Node, _ path: String, nonEmpty: Bool = false) -> String? {
        if Self.isNull(node) {
            self.fail(path, node, "must not be empty")
            return nil
        }
        guard let v = self.scalar(node, path) else { return nil }
        if nonEmpty && v.isEmpty {
            self.fail(path, node, "must not be empty")
            return nil
        }
        return v
    }

    func int(_ node: Node, _ path: String, _ range: ClosedRange<Int>, message: String? = nil) -> Int? {
        guard let v = self.scalar(node, path) else { return nil }
        guard let i = Int(v.replacingOccurrences(of: "_", with: "")) else {
            self.fail(path, node, message ?? "must be an integer, got '\(v)'")
            return nil
        }
        guard range.contains(i) else {
            self.fail(path, node, message ?? "must be between \(range.lowerBound) and \(range.upperBound), got \(i)")
            return nil
        }
        return i
    }

    /// An amount in USD (up to 10⁹), as integer micro-USD.
    func usd(_ node: Node, _ path: String) -> Int64? {
        guard let v = self.scalar(node, path) else { return nil }
        guard let d = Double(v.replacingOccurrences(of: "_", with: "")), d.isFinite, d >= 0, d <= 1e9 else {
            self.fail(path, node, "must be an amount in USD from 0 to 1000000000, got '\(v)'")
            return nil
        }
        return Int64((d * 1_000_000).rounded())
    }

    func seconds(_ node: Node, _ path: String) -> Duration? {
        guard let v = self.scalar(node, path) else { return nil }
        guard let d = Double(v), d.isFinite, d > 0, d <= 86_400 else {
            self.fail(path, node, "must be a number of seconds above 0 and at most 86400, got '\(v)'")
            return nil
        }
        return .milliseconds(Int64((d * 1000).rounded()))
    }

    func bool(_ node: Node, _ path: String) -> Bool? {
        guard let v = self.scalar(node, path) else { return nil }
        switch v.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            self.fail(path, node, "must be true or false, got '\(v)'")
            return nil
        }
    }

    func stringList(_ node: Node, _ path: String) -> [String] {
        self.list(node, path).compactMap { self.string($0.node, $0.path, nonEmpty: true) }
    }

    func hostPorts(_ node: Node, _ path: String) -> [String] {
        let items = self.stringList(node, path)
        for (i, hp) in items.enumerated() {
            let parts = hp.split(separator: ":")
            if parts.count != 2 || parts[0].isEmpty || Int(parts[1]).map({ !(1...65535).contains($0) }) ?? true {
                self.fail("\(path)[\(i)]", node.sequence?[i] ?? node, "must be host:port, got '\(hp)'")
            }
        }
        if items.isEmpty { self.fail(path, node, "needs at least one host:port") }
        return items
    }

    /// `${VAR}` and `${VAR:-default}` from the environment; `$${` is a literal `${`.
    func substitute(_ s: String, _ path: String, _ node: Node) -> String? {
        guard s.contains("$") else { return s }
        var out = ""
        var rest = Substring(s)
        var ok = true
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            if after.hasPrefix("${") {
                out += "${"
                rest = after.dropFirst(2)
            } else if after.hasPrefix("{"), let close = after.firstIndex(of: "}") {
                let expr = after[after.index(after: after.startIndex)..<close]
                let (name, fallback): (Substring, Substring?) = {
                    if let r = expr.range(of: ":-") { return (expr[..<r.lowerBound], expr[r.upperBound...]) }
                    return (expr, nil)
                }()
                if let v = self.environment[String(name)], !(fallback != nil && v.isEmpty) {
                    out += v
                } else if let fallback {
                    out += fallback
                } else {
                    self.fail(path, node, "environment variable \(name) is not set")
                    ok = false
                }
                rest = after[after.index(after: close)...]
            } else {
                out += "$"
                rest = after
            }
        }
        out += rest
        return ok ? out : nil
    }

    static func isNull(_ node: Node) -> Bool {
        guard let s = node.scalar, s.style == .plain else { return false }
        return s.string.isEmpty || s.string == "~" || s.string == "null" || s.string == "Null" || s.string == "NULL"
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

/// A mapping being read: values are taken by key; whatever is left over is an unknown key.
private final class MapReader {
    let walker: Walker
    let path: String
    private var pairs: [(String, Node)]
    private var taken = Set<String>()

    init(walker: Walker, path: String, pairs: [(String, Node)]) {
        self.walker = walker
        self.path = path
        self.pairs = pairs
    }

    /// The value of `key` (null values count as absent), marking it read.
    func take(_ key: String) -> Node? {
        self.taken.insert(key)
        guard let n = self.node(key) else { return nil }
        return Walker.isNull(n) ? nil : n
    }

    func node(_ key: String) -> Node? {
        self.pairs.first { $0.0 == key }?.1
    }

    /// Every pair not read yet (for free-form maps such as headers), marking them read.
    func remaining() -> [(String, Node)] {
        let rest = self.pairs.filter { !self.taken.contains($0.0) }
        for (k, _) in rest { self.taken.insert(k) }
        return rest
    }

    /// Reports keys nobody read.
    func finish() {
        for (k, v) in self.pairs where !self.taken.contains(k) {
            self.walker.fail(Walker.join(self.path, k), v, "unknown key")
        }
    }
}
