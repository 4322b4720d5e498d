/// Run-time client keys (ARCHITECTURE §7 `{mux}:vkey:<sha256 hex>`, `{mux}:vkeys`): created, listed and
/// revoked fleet-wide. Only the SHA-256 of a key's secret is stored.
extension RedisQuotaStore {
    /// One stored run-time key: its name, the SHA-256 (hex) of its secret, and its hash's fields
    /// (`rpm`, `tpm`, `max_concurrent`, `daily_micro_usd`, `monthly_micro_usd`, `models`, `created_ms`).
    public struct StoredClientKey: Sendable, Hashable {
        public var name: String
        public var digest: String
        public var fields: [String: String]
        public init(name: String, digest: String, fields: [String: String]) {
            self.name = name
            self.digest = digest
            self.fields = fields
        }
    }

    /// Stores a key unless its name (or digest) is taken. Returns `false` when it is.
    public func createClientKey(_ key: StoredClientKey) async throws -> Bool {
        // One script: the name check and both writes are atomic (both keys share the namespace's hash tag).
        let script = """
            if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
            redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
            redis.call('HSET', KEYS[2], 'name', ARGV[1], unpack(ARGV, 3))
            return 1
            """
        var args = ["EVAL", script, "2", self.keyPrefix + "vkeys", self.keyPrefix + "vkey:" + key.digest, key.name, key.digest]
        for (f, v) in key.fields.sorted(by: { $0.key < $1.key }) where f != "name" { args += [f, v] }
        let v = try await self.client.execute(args)
        if let e = v.errorMessage { throw RedisError(.serverError, e) }
        return v.int == 1
    }

    /// Removes the key named `name`. Returns `false` if there is none.
    public func revokeClientKey(name: String) async throws -> Bool {
        let script = """
            local d = redis.call('HGET', KEYS[1], ARGV[1])
            if not d then return 0 end
            redis.call('HDEL', KEYS[1], ARGV[1])
            redis.call('DEL', ARGV[2] .. d)
            return 1
            """
        let v = try await self.client.execute(["EVAL", script, "1", self.keyPrefix + "vkeys", name, self.keyPrefix + "vkey:"])
        if let e = v.errorMessage { throw RedisError(.serverError, e) }
        return v.int == 1
    }

    /// Every stored run-time key, in one round trip.
    public func clientKeys() async throws -> [StoredClientKey] {
        let script = """
            local names = redis.call('HGETALL', KEYS[1])
            local out = {}
            for i = 1, #names, 2 do
              out[#out + 1] = {names[i], names[i + 1], redis.call('HGETALL', ARGV[1] .. names[i + 1])}
            end
            return out
            """
        let v = try await self.client.execute(["EVAL", script, "1", self.keyPrefix + "vkeys", self.keyPrefix + "vkey:"])
        if let e = v.errorMessage { throw RedisError(.serverError, e) }
        guard let rows = v.array else { throw RedisError(.protocolError, "unexpected reply to the key listing") }
        var out: [StoredClientKey] = []
        for row in rows {
            guard let r = row.array, r.count == 3, let name = r[0].text, let digest = r[1].text, let flat = r[2].array else { continue }
            var fields: [String: String] = [:]
            var i = 0
            while i + 1 < flat.count {
                if let k = flat[i].text, k != "name", let val = flat[i + 1].text { fields[k] = val }
                i += 2
            }
            out.append(StoredClientKey(name: name, digest: digest, fields: fields))
        }
        return out
    }
}
