import Foundation
import MultiplexerCore
import MultiplexerRedis

/// `multiplexer keys`: run-time client keys, straight in Redis (every node honours a change within
/// ``RuntimeKeySync/interval``).
public struct KeyAdmin: Sendable {
    private let store: RedisQuotaStore
    private let config: GatewayConfiguration?

    /// - Parameters: as `multiplexer stats`: a configuration file's `redis` section, else a URL and namespace.
    public init(configPath: String?, redisURL: String?, namespace: String) throws {
        (self.store, self.config, _) = try StatsReport.store(configPath: configPath, redisURL: redisURL, namespace: namespace)
    }

    /// Creates a key; returns its secret and a one-line summary.
    public func create(name: String, rpm: Int?, tpm: Int?, dailyUSD: Double?, monthlyUSD: Double?, models: Set<String>?) async throws -> (String, String) {
        defer { self.store.shutdown() }
        guard Provider.isValidName(name), name.utf8.count <= 64 else {
            throw KeyAdminError("the name must be 1–64 characters of a-z, 0-9, '.', '_' and '-'")
        }
        if let c = self.config {
            if c.keys.contains(where: { $0.name == name }) { throw KeyAdminError("'\(name)' is a key of the configuration file") }
            if let m = models, let unknown = m.first(where: { n in !c.models.contains { $0.name == n } }) {
                throw KeyAdminError("'\(unknown)' is not a model group of the configuration")
            }
        }
        for (what, v) in [("--rpm", rpm), ("--tpm", tpm)] where (v ?? 0) < 0 { throw KeyAdminError("\(what) must not be negative") }
        let (key, secret) = RuntimeKey.make(name: name, limits: KeyLimits(rpm: rpm, tpm: tpm), models: models, dailyUSD: dailyUSD, monthlyUSD: monthlyUSD)
        guard try await self.store.createClientKey(key.stored) else { throw KeyAdminError("a run-time key named '\(name)' exists already") }
        return (secret, "created run-time key \(AdminJSON.encode(key.document))")
    }

    /// The run-time keys, one per line (or as JSON).
    public func list(json: Bool) async throws -> String {
        defer { self.store.shutdown() }
        let keys = try await self.store.clientKeys().map(RuntimeKey.init).sorted { $0.name < $1.name }
        if json { return AdminJSON.encode(AdminJSON.Keys(keys: keys.map(\.document))) }
        if keys.isEmpty { return "no run-time keys" }
        return keys.map { k in
            let limits = [k.limits.rpm.map { "rpm \($0)" }, k.limits.tpm.map { "tpm \($0)" }].compactMap { $0 }.joined(separator: ", ")
            let models = k.models.map { "models " + $0.sorted().joined(separator: ",") } ?? "all models"
            return "\(k.name)\t\(limits.isEmpty ? "no limits" : limits)\t\(models)"
        }.joined(separator: "\n")
    }

    /// Revokes a key; `false` when there is none by that name.
    public func revoke(name: String) async throws -> Bool {
        defer { self.store.shutdown() }
        return try await self.store.revokeClientKey(name: name)
    }
}

struct KeyAdminError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { self.description = d }
}
