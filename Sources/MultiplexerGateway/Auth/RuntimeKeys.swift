import Foundation
import Logging
import MultiplexerCore
import MultiplexerRedis
import Synchronization

/// A client key created at run time (`POST /admin/keys`, `multiplexer keys create`), stored in Redis as the
/// SHA-256 of its secret with its limits, budget and model allow-list (ARCHITECTURE §7 `{mux}:vkey:*`).
struct RuntimeKey: Sendable, Hashable {
    var name: String
    /// Lower-case hex SHA-256 of the secret.
    var digest: String
    var limits = KeyLimits()
    var models: Set<String>?
    /// Budgets in integer micro-USD (stored for the budgets issue; not enforced yet).
    var dailyMicroUSD: Int?
    var monthlyMicroUSD: Int?
    var createdMs: Int64 = 0

    var key: GatewayConfiguration.Key {
        var k = GatewayConfiguration.Key(name: self.name, secret: .sha256(self.digest))
        k.limits = self.limits
        k.limits.dailyBudgetMicroUSD = self.dailyMicroUSD.map(Int64.init)
        k.limits.monthlyBudgetMicroUSD = self.monthlyMicroUSD.map(Int64.init)
        k.models = self.models
        return k
    }

    /// The Redis hash fields.
    var stored: RedisQuotaStore.StoredClientKey {
        var f: [String: String] = ["created_ms": String(self.createdMs)]
        if let r = self.limits.rpm { f["rpm"] = String(r) }
        if let t = self.limits.tpm { f["tpm"] = String(t) }
        if let d = self.dailyMicroUSD { f["daily_micro_usd"] = String(d) }
        if let m = self.monthlyMicroUSD { f["monthly_micro_usd"] = String(m) }
        if let m = self.models { f["models"] = m.sorted().joined(separator: ",") }
        return .init(name: self.name, digest: self.digest, fields: f)
    }

    init(name: String, digest: String) {
        self.name = name
        self.digest = digest
    }

    /// A new key named `name` and its secret (`mx-` + 64 hex digits from the system's random source): the only
    /// time the secret exists outside the client.
    static func make(name: String, limits: KeyLimits, models: Set<String>?, dailyUSD: Double?, monthlyUSD: Double?) -> (RuntimeKey, String) {
        var bytes = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        let secret = "mx-" + bytes.hexString
        var key = RuntimeKey(name: name, digest: KeyDigest.hex(Array(secret.utf8)))
        key.limits = KeyLimits(rpm: limits.rpm, tpm: limits.tpm)
        key.models = models
        key.dailyMicroUSD = dailyUSD.map { Int(($0 * 1_000_000).rounded()) }
        key.monthlyMicroUSD = monthlyUSD.map { Int(($0 * 1_000_000).rounded()) }
        key.createdMs = Int64(Date().timeIntervalSince1970 * 1000)
        return (key, secret)
    }

    init(_ s: RedisQuotaStore.StoredClientKey) {
        self.name = s.name
        self.digest = s.digest
        self.limits = KeyLimits(rpm: s.fields["rpm"].flatMap(Int.init), tpm: s.fields["tpm"].flatMap(Int.init))
        self.models = s.fields["models"].map { Set($0.split(separator: ",").map(String.init)) }
        self.dailyMicroUSD = s.fields["daily_micro_usd"].flatMap(Int.init)
        self.monthlyMicroUSD = s.fields["monthly_micro_usd"].flatMap(Int.init)
        self.createdMs = s.fields["created_ms"].flatMap(Int64.init) ?? 0
    }

    /// The key as the admin API shows it, without any secret.
    var document: AdminJSON.Key {
        AdminJSON.Key(
            name: self.name, source: "runtime", limits: .init(rpm: self.limits.rpm, tpm: self.limits.tpm),
            budget: .init(dailyUsd: self.dailyMicroUSD.map { Double($0) / 1_000_000 }, monthlyUsd: self.monthlyMicroUSD.map { Double($0) / 1_000_000 }),
            models: Nullable(wrappedValue: self.models?.sorted()), createdMs: self.createdMs)
    }
}

/// The run-time keys this node honours: a copy of Redis's, refreshed by ``RuntimeKeySync`` every
/// ``RuntimeKeySync/interval`` (and at once for a key created or revoked through this node). Without Redis
/// it is the keys' only home (one node).
final class RuntimeKeyRegistry: Sendable {
    private let keys = Mutex<[String: RuntimeKey]>([:])

    /// Whether any run-time key exists.
    var isEmpty: Bool { self.keys.withLock { $0.isEmpty } }

    var all: [RuntimeKey] { self.keys.withLock { Array($0.values) }.sorted { $0.name < $1.name } }

    /// The key whose SHA-256 is `digest`. (A dictionary lookup: the digest of a guess says nothing about
    /// any stored secret, so its timing reveals nothing.)
    func authenticate(digest: String) -> GatewayConfiguration.Key? {
        self.keys.withLock { $0[digest]?.key }
    }

    func named(_ name: String) -> RuntimeKey? { self.keys.withLock { $0.values.first { $0.name == name } } }

    func insert(_ k: RuntimeKey) { self.keys.withLock { $0[k.digest] = k } }

    func remove(name: String) { self.keys.withLock { d in d = d.filter { $0.value.name != name } } }

    /// Replaces every key; returns the names added and removed.
    func replaceAll(_ list: [RuntimeKey]) -> (added: [String], removed: [String]) {
        let new = Dictionary(list.map { ($0.digest, $0) }, uniquingKeysWith: { a, _ in a })
        return self.keys.withLock { d in
            let before = Set(d.values.map(\.name)), after = Set(new.values.map(\.name))
            d = new
            return (after.subtracting(before).sorted(), before.subtracting(after).sorted())
        }
    }
}

/// Keeps a node's ``RuntimeKeyRegistry`` equal to Redis's keys: one script call (`HGETALL` of `{mux}:vkeys`
/// and each key's hash) every ``interval``, so a key created or revoked on any node is honoured — or
/// refused — on every node within that interval plus a round trip. While Redis is away the last copy stays.
struct RuntimeKeySync: Sendable {
    static let interval: Duration = .milliseconds(250)
    let gateway: Gateway

    func run() async {
        guard let redis = self.gateway.redisStore else { return }
        while !Task.isCancelled {
            if let stored = try? await redis.clientKeys() {
                let (added, removed) = self.gateway.runtimeKeys.replaceAll(stored.map(RuntimeKey.init))
                for n in added { self.gateway.logger.info("client key added", metadata: ["gateway.key": .string(n), "source": "runtime"]) }
                for n in removed { self.gateway.logger.info("client key revoked", metadata: ["gateway.key": .string(n), "source": "runtime"]) }
            }
            do { try await Task.sleep(for: Self.interval) } catch { return }
        }
    }
}

extension Gateway {
    /// The client key matching `presented`: the file's keys, then the run-time keys.
    func authenticate(_ presented: String, keys: KeyAuthenticator) -> GatewayConfiguration.Key? {
        if let k = keys.authenticate(presented) { return k }
        guard !self.runtimeKeys.isEmpty else { return nil }
        return self.runtimeKeys.authenticate(digest: KeyDigest.hex(Array(presented.utf8)))
    }

    /// Whether clients must present a key: the file has a `keys` section (even `keys: []`), or run-time keys
    /// exist. (So a gateway meant for run-time keys only says `keys: []`: revoking its last key then closes it
    /// rather than opening it to anonymous use.)
    func keysEnabled(_ g: GatewaySnapshot) -> Bool {
        g.keys.isEnabled || g.configuration.keysRequired || !self.runtimeKeys.isEmpty
    }

    /// Why a run-time key cannot be created, or `nil`.
    enum KeyCreation: Error {
        case invalid(String, param: String)
        case exists(String)
    }

    /// Creates a run-time key; returns it and its secret (the only time the secret exists outside the client).
    func createRuntimeKey(name: String, limits: KeyLimits, models: Set<String>?, dailyUSD: Double?, monthlyUSD: Double?) async throws -> (RuntimeKey, String) {
        guard Provider.isValidName(name), name.utf8.count <= 64 else {
            throw KeyCreation.invalid("'name' must be 1–64 characters of a-z, 0-9, '.', '_' and '-'.", param: "name")
        }
        let snapshot = self.snapshot
        if snapshot.configuration.keys.contains(where: { $0.name == name }) || self.runtimeKeys.named(name) != nil {
            throw KeyCreation.exists(name)
        }
        if let m = models, let unknown = m.first(where: { name in !snapshot.table.groups.contains { $0.name == name } }) {
            throw KeyCreation.invalid("'models' names '\(unknown)', which is not a model group.", param: "models")
        }
        if dailyUSD != nil || monthlyUSD != nil {
            // As for a file key (`check`): a budget counts spend, so every provider the key may reach needs a price.
            let groups = snapshot.table.groups.filter { g in models.map { $0.contains(g.name) } ?? true }
            let reachable = Set(groups.flatMap { ($0.primary + $0.fallback).map(\.provider) })
            let unpriced = reachable.filter { snapshot.table.providers[$0]?.pricing == nil }.sorted()
            if !unpriced.isEmpty {
                throw KeyCreation.invalid(
                    "A budget needs pricing on every provider the key may reach; none on: \(unpriced.joined(separator: ", ")).", param: "budget")
            }
        }
        let (key, secret) = RuntimeKey.make(name: name, limits: limits, models: models, dailyUSD: dailyUSD, monthlyUSD: monthlyUSD)
        if let redis = self.redisStore {
            guard try await redis.createClientKey(key.stored) else { throw KeyCreation.exists(name) }
        }
        self.runtimeKeys.insert(key)
        self.logger.info("client key created", metadata: ["gateway.key": .string(name), "source": "runtime"])
        return (key, secret)
    }

    /// Revokes a run-time key; `false` when there is none by that name.
    func revokeRuntimeKey(name: String) async throws -> Bool {
        var found = self.runtimeKeys.named(name) != nil
        if let redis = self.redisStore { found = try await redis.revokeClientKey(name: name) || found }
        self.runtimeKeys.remove(name: name)
        if found { self.logger.info("client key revoked", metadata: ["gateway.key": .string(name), "source": "runtime"]) }
        return found
    }
}

/// The last upstream failures this node saw, for the dashboard (node-local, bounded).
final class RecentErrors: Sendable {
    struct Entry: Sendable {
        var atMs: Int64
        var provider: String
        var what: String
    }
    static let limit = 50
    private let list = Mutex<[Entry]>([])

    func record(provider: String, what: String) {
        let e = Entry(atMs: Int64(Date().timeIntervalSince1970 * 1000), provider: provider, what: what)
        self.list.withLock { l in
            l.append(e)
            if l.count > Self.limit { l.removeFirst(l.count - Self.limit) }
        }
    }

    /// The entries, oldest first.
    var entries: [AdminJSON.RecentError] {
        self.list.withLock { $0 }.map { AdminJSON.RecentError(atMs: $0.atMs, provider: $0.provider, what: $0.what) }
    }
}

extension AttemptRecord {
    /// What went wrong, in a few words (the dashboard's recent errors).
    var summary: String {
        let status = self.status.map { "HTTP \($0)" }
        switch self.outcome {
        case .success: return "ok"
        case .rateLimited: return "rate limited" + (status.map { " (\($0))" } ?? "")
        case .unauthorized: return "credentials refused" + (status.map { " (\($0))" } ?? "")
        case .contextLengthExceeded: return "context length exceeded"
        case .clientError: return "client error" + (status.map { " (\($0))" } ?? "")
        case .cancelled: return "cancelled"
        case .failure: return status ?? (self.error?.rawValue.replacingOccurrences(of: "_", with: " ") ?? "failure")
        }
    }
}
