import MultiplexerCore
import MultiplexerRedis
import Testing

/// Run-time client keys in Redis (ARCHITECTURE §7 `{mux}:vkey:*`, `{mux}:vkeys`).
@Suite("Redis client keys")
struct RedisClientKeyTests {
    @Test func keysAreCreatedListedAndRevokedAtomically() async throws {
        let f = try RedisFixture()
        let a = try f.store(node: "n1"), b = try f.store(node: "n2")
        defer {
            a.shutdown()
            b.shutdown()
        }
        try await a.connect()
        let key = RedisQuotaStore.StoredClientKey(name: "team", digest: String(repeating: "ab", count: 32), fields: ["rpm": "3", "models": "m1,m2", "created_ms": "1"])
        #expect(try await a.createClientKey(key))
        #expect(!(try await b.createClientKey(key)), "a name is taken once")
        var other = key
        other.name = "other"
        #expect(!(try await b.createClientKey(other)), "a digest is taken once")
        let listed = try await b.clientKeys()
        #expect(listed == [key], "the other node reads it back: \(listed)")
        #expect(try await f.cli(["HGET", "{\(f.namespace)}:vkeys", "team"]).hasPrefix(key.digest))
        #expect(try await b.revokeClientKey(name: "team"))
        #expect(!(try await a.revokeClientKey(name: "team")))
        #expect(try await a.clientKeys().isEmpty)
        #expect(try await f.cli(["EXISTS", "{\(f.namespace)}:vkey:\(key.digest)"]).hasPrefix("0"))
    }
}
