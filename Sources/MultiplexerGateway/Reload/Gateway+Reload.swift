import Logging
import Synchronization
import MultiplexerCore

/// What a reload did (ARCHITECTURE §4 Reload).
public struct ReloadResult: Sendable {
    /// Whether the new configuration is in force.
    public var applied: Bool
    /// The generation in force after the reload (1 at start, one more per reload applied).
    public var generation: Int
    /// Why it was refused: every problem, with key path and line.
    public var errors: [ConfigurationError.Problem]
    /// Settings that changed but only take effect at a restart (their old values were kept).
    public var restartRequired: [String]
    /// What changed, for the log and the answer (`providers +a -b ~c`, …).
    public var changes: [String]
}

extension Gateway {
    /// Settings a running node cannot change; a reload keeps their old values and says so.
    static func restartRequired(old: GatewayConfiguration, new: GatewayConfiguration) -> [String] {
        var out: [String] = []
        if old.server.host != new.server.host { out.append("server.host") }
        if old.server.port != new.server.port { out.append("server.port") }
        if old.server.nodeID != new.server.nodeID { out.append("server.node_id") }
        if old.server.maxConnections != new.server.maxConnections { out.append("server.max_connections") }
        if old.server.logFormat != new.server.logFormat { out.append("server.log_format") }
        if old.redis != new.redis { out.append("redis") }
        if old.tracing != new.tracing { out.append("tracing") }
        return out
    }

    /// Re-reads the node's configuration file and, if it is valid, swaps it in (see ``reload(to:)``).
    public func reload() -> ReloadResult {
        guard let source = self.source else {
            return ReloadResult(
                applied: false, generation: self.snapshot.generation,
                errors: [.init(path: "", line: nil, message: "this node was not started from a configuration file")], restartRequired: [], changes: [])
        }
        do {
            return self.reload(to: try source.load(), file: source.path)
        } catch {
            return self.refused(error.problems, file: source.path)
        }
    }

    /// Validates `configuration` completely and swaps it in atomically: requests already admitted finish on
    /// the configuration that admitted them, new requests see the new one. Providers, groups and keys that
    /// kept their names keep their windows, cooldowns and counters (they live in the store, by name).
    /// Settings that need a restart keep their old values and are listed in ``ReloadResult/restartRequired``.
    public func reload(to configuration: GatewayConfiguration, file: String? = nil) -> ReloadResult {
        self.reloading.withLock { _ in
            let old = self.snapshot
            var new = configuration
            let restart = Self.restartRequired(old: old.configuration, new: new)
            new.server.host = old.configuration.server.host
            new.server.port = old.configuration.server.port
            new.server.nodeID = old.configuration.server.nodeID
            new.server.maxConnections = old.configuration.server.maxConnections
            new.server.logFormat = old.configuration.server.logFormat
            new.redis = old.configuration.redis
            new.tracing = old.configuration.tracing
            let table: RoutingTable
            do {
                table = try new.routingTable()
            } catch {
                return self.refused([.init(path: "models", line: nil, message: "\(error)")], file: file)
            }
            let changes = Self.changes(old: old.configuration, new: new)
            let installed = self.install(new, table: table)
            var metadata: Logger.Metadata = [
                "generation": .stringConvertible(installed.generation), "changes": .string(changes.isEmpty ? "none" : changes.joined(separator: "; ")),
            ]
            if !restart.isEmpty { metadata["restart_required"] = .string(restart.joined(separator: ",")) }
            self.logger.info("configuration reloaded", metadata: metadata)
            if !restart.isEmpty {
                self.logger.warning(
                    "configuration reload: these settings need a restart and keep their running values",
                    metadata: ["restart_required": .string(restart.joined(separator: ","))])
            }
            for w in new.warnings { self.logger.warning("configuration: \(w)") }
            return ReloadResult(applied: true, generation: installed.generation, errors: [], restartRequired: restart, changes: changes)
        }
    }

    private func refused(_ problems: [ConfigurationError.Problem], file: String?) -> ReloadResult {
        self.logger.error(
            "configuration reload refused; the running configuration stays",
            metadata: ["file": .string(file ?? "-"), "errors": .string(problems.map(\.description).joined(separator: "; "))])
        return ReloadResult(applied: false, generation: self.snapshot.generation, errors: problems, restartRequired: [], changes: [])
    }

    /// A short account of what differs: providers, model groups and keys added (+), removed (-), changed (~).
    static func changes(old: GatewayConfiguration, new: GatewayConfiguration) -> [String] {
        func diff<T: Equatable>(_ what: String, _ a: [T], _ b: [T], name: (T) -> String) -> String? {
            let before = Dictionary(a.map { (name($0), $0) }, uniquingKeysWith: { x, _ in x })
            let after = Dictionary(b.map { (name($0), $0) }, uniquingKeysWith: { x, _ in x })
            var parts: [String] = []
            for n in after.keys.sorted() where before[n] == nil { parts.append("+\(n)") }
            for n in before.keys.sorted() where after[n] == nil { parts.append("-\(n)") }
            for n in after.keys.sorted() where before[n] != nil && before[n]! != after[n]! { parts.append("~\(n)") }
            return parts.isEmpty ? nil : "\(what) \(parts.joined(separator: " "))"
        }
        var out: [String] = []
        if let d = diff("providers", old.providers, new.providers, name: \.name) { out.append(d) }
        if let d = diff("models", old.models, new.models, name: \.name) { out.append(d) }
        if let d = diff("keys", old.keys, new.keys, name: \.name) { out.append(d) }
        if old.server != new.server { out.append("server") }
        if old.adminKey != new.adminKey { out.append("admin_key") }
        if old.defaultModel != new.defaultModel { out.append("default_model") }
        return out
    }
}
