import Foundation
import MultiplexerCore
import MultiplexerRedis
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

@Suite("RedisQuotaStore against a real redis-server")
struct RedisQuotaStoreTests {
    /// Eight independent connections race 1,000 admissions each; the limit holds exactly.
    @Test(arguments: [
        ("rpm", ProviderLimits(rpm: 500), 10, 500),
        ("tpm", ProviderLimits(tpm: 5000), 10, 500),
        ("max_concurrent", ProviderLimits(maxConcurrent: 500), 10, 500),
    ] as [(String, ProviderLimits, Int, Int)])
    func eightConnectionsRacingNeverExceedTheLimit(_ kind: String, _ limits: ProviderLimits, _ tokens: Int, _ expected: Int) async throws {
        let f = try RedisFixture()
        // A generous command timeout: this test measures Redis's exactness, not degraded mode (which a
        // timeout under the parallel test load would otherwise engage).
        let stores = try (0..<8).map { try f.store(node: "racer-\($0)", commandTimeout: .seconds(5)) }
        defer { stores.forEach { $0.shutdown() } }
        // No heartbeats: nodes registered once and then quiet for seconds would have their shares held.
        let c = RedisFixture.candidate("p-\(kind)", limits, tokens: tokens)
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for s in stores {
                group.addTask {
                    // 1,000 admissions per connection, 50 in flight at a time so the client pipelines.
                    try await withThrowingTaskGroup(of: Int.self) { inner in
                        for _ in 0..<50 {
                            inner.addTask {
                                var n = 0
                                for _ in 0..<20 {
                                    guard let r = admitted(try await s.admit(AdmissionRequest(candidates: [c]))) else { continue }
                                    #expect(!r.id.hasPrefix("L"), "admitted locally: Redis did not answer in time")
                                    n += 1
                                }
                                return n
                            }
                        }
                        return try await inner.reduce(0, +)
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(total == expected)
        let stats = try await stores[0].stats(StatsQuery(providers: [c.provider], keys: [], models: []))
        switch kind {
        case "rpm": #expect(stats.providers[0].window.rpm == expected)
        case "tpm": #expect(stats.providers[0].window.tpm == expected * tokens)
        default: #expect(stats.providers[0].window.inFlight == expected)
        }
        #expect(stores.allSatisfy { $0.availability == .connected })
    }

    @Test func aRestartedRedisReloadsScriptsAndAdmissionsResume() async throws {
        let f = try RedisFixture()
        let store = try f.store()
        defer { store.shutdown() }
        let c = RedisFixture.candidate("p-restart", ProviderLimits(rpm: 100))
        for _ in 0..<3 { #expect(admitted(try await store.admit(AdmissionRequest(candidates: [c]))) != nil) }
        try await f.stop()
        try await f.start()  // empty: no persistence, scripts gone
        #expect(try f.server.cli(["SCRIPT", "EXISTS", "x"]).contains("0"))
        // The first call may see the dead connection (and go local); within a short while Redis serves again.
        var servedByRedis = false
        for _ in 0..<100 {
            let d = try await store.admit(AdmissionRequest(candidates: [c]))
            if let r = admitted(d), !r.id.hasPrefix("L") {
                servedByRedis = true
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(servedByRedis)
        #expect(store.availability == .connected)
        #expect(try f.server.cli(["EXISTS", "{\(f.namespace)}:provider:p-restart:rpm"]).contains("1"))
    }

    @Test func aStoppedRedisDegradesToLocalSharesAndReplaysCountersExactly() async throws {
        let f = try RedisFixture()
        let a = try f.store(node: "node-a")
        let b = try f.store(node: "node-b")
        defer {
            a.shutdown()
            b.shutdown()
        }
        #expect(try await a.heartbeat(nodeID: "node-a") >= 1)
        #expect(try await b.heartbeat(nodeID: "node-b") == 2)
        #expect(try await a.heartbeat(nodeID: "node-a") == 2)
        let limits = ProviderLimits(rpm: 10)
        let key = KeyAdmission(name: "team", limits: KeyLimits())
        func serve(_ s: RedisQuotaStore, _ n: Int, fallback: Bool = false) async throws -> Int {
            var served = 0
            for _ in 0..<n {
                guard let r = admitted(try await s.admit(AdmissionRequest(key: key, candidates: [RedisFixture.candidate("p-out", limits)]))) else { continue }
                await s.settle(Settlement(
                    reservation: r, result: .success(usage: TokenUsage(promptTokens: 3, completionTokens: 4)),
                    modelEvent: ModelEvent(group: "m-out", fallback: fallback)))
                served += 1
            }
            return served
        }
        #expect(try await serve(a, 2) == 2)

        try await f.stop()
        // Degraded within the command timeout: each node admits its share of what the fleet has left,
        // (rpm 10 − the 2 the fleet used, as a's last admission reply said) / 2 live nodes = 4.
        #expect(try await serve(a, 8) == 4)
        #expect(a.availability == .degraded)
        await a.record(ModelEvent(group: "m-out", exhausted: true))
        #expect(a.hasPendingReplay)

        try await f.start()
        // The heartbeat brings the store back and replays what it buffered, once.
        var replayed = false
        for _ in 0..<50 {
            _ = try? await a.heartbeat(nodeID: "node-a")
            if !a.hasPendingReplay {
                replayed = true
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(replayed)
        #expect(a.availability == .connected)
        _ = try? await a.heartbeat(nodeID: "node-a")  // a second heartbeat must not replay twice
        let stats = try await a.stats(StatsQuery(providers: ["p-out"], keys: ["team"], models: ["m-out"]))
        // The restarted Redis lost the 2 pre-outage counts (no persistence); the 4 made during the outage are there
        // exactly. Its window has all 6: a wrote back its own last minute (the epoch was gone) and the outage's 4.
        #expect(stats.providers[0].usage.requests == 4)
        #expect(stats.providers[0].usage.success == 4)
        #expect(stats.providers[0].usage.promptTokens == 12 && stats.providers[0].usage.completionTokens == 16)
        #expect(stats.keys[0].usage.requests == 4)
        #expect(stats.models[0].counters.requests == 5 && stats.models[0].counters.exhausted == 1)
        #expect(stats.providers[0].window.rpm == 6)
    }

    @Test func settlementsThatCouldNotBeWrittenAreReplayedOnce() async throws {
        let f = try RedisFixture()
        let store = try f.store()
        defer { store.shutdown() }
        let c = RedisFixture.candidate("p-late", ProviderLimits(rpm: 100, maxConcurrent: 10))
        let r = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [c]))))
        // Redis goes away (but keeps its data: a network blip, modelled by pausing the server).
        _ = try f.server.cli(["CLIENT", "PAUSE", "1500", "ALL"])
        await store.settle(Settlement(reservation: r, result: .success(usage: TokenUsage(promptTokens: 1, completionTokens: 1))))
        #expect(store.hasPendingReplay)
        try await Task.sleep(for: .milliseconds(1600))
        for _ in 0..<50 where store.hasPendingReplay {
            _ = try? await store.heartbeat(nodeID: "node-1")
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(!store.hasPendingReplay)
        let s = try await store.stats(StatsQuery(providers: ["p-late"], keys: [], models: []))
        // The paused command ran after the pause *and* was replayed: the reservation id makes it count once.
        #expect(s.providers[0].usage.requests == 1 && s.providers[0].usage.success == 1)
        #expect(s.providers[0].window.inFlight == 0)
    }

    /// With ``RedisQuotaStore/run()`` active, successful settlements are written in batches (one EVALSHA
    /// for many): the counters, token windows, leases and the idempotency log come out exactly as if each
    /// had been written alone, and a settlement queued twice counts once.
    @Test func backgroundSettlementsAreBatchedAndExact() async throws {
        let f = try RedisFixture()
        let store = try f.store(commandTimeout: .seconds(5))
        defer { store.shutdown() }
        let runner = Task { await store.run() }
        let n = 300
        let key = KeyAdmission(name: "team-a", limits: KeyLimits(tpm: 1_000_000))
        let c = RedisFixture.candidate("p-batch", ProviderLimits(rpm: 10_000, tpm: 1_000_000, maxConcurrent: 1_000), tokens: 50)
        var reservations: [Reservation] = []
        for _ in 0..<n { reservations.append(try #require(admitted(try await store.admit(AdmissionRequest(key: key, candidates: [c]))))) }
        let before = try Self.evalshaCalls(f)
        // Usage differs per request (prompt i % 7 + 1, completion i % 5 + 1): each refund is its own.
        for (i, r) in reservations.enumerated() {
            let s = Settlement(
                reservation: r, result: .success(usage: TokenUsage(promptTokens: i % 7 + 1, completionTokens: i % 5 + 1)),
                modelEvent: ModelEvent(group: "batch-model", fallback: i % 10 == 0))
            await store.settle(s)
            if i == 0 { await store.settle(s) }  // a duplicate: applied once
        }
        for _ in 0..<200 where store.hasPendingReplay { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!store.hasPendingReplay)
        let settleCalls = try Self.evalshaCalls(f) - before
        // 301 settlements; one EVALSHA each would be 301.
        #expect(settleCalls >= 1 && settleCalls < 100, "settle EVALSHAs: \(settleCalls)")
        let prompt = (0..<n).reduce(0) { $0 + $1 % 7 + 1 }, completion = (0..<n).reduce(0) { $0 + $1 % 5 + 1 }
        let stats = try await store.stats(StatsQuery(providers: ["p-batch"], keys: ["team-a"], models: ["batch-model"]))
        let p = try #require(stats.providers.first), k = try #require(stats.keys.first), m = try #require(stats.models.first)
        #expect(p.usage.requests == n && p.usage.success == n)
        #expect(p.usage.promptTokens == prompt && p.usage.completionTokens == completion)
        #expect(p.window.tpm == prompt + completion && p.window.rpm == n && p.window.inFlight == 0)
        #expect(k.usage.requests == n && k.window.tpm == prompt + completion)
        #expect(m.counters.requests == n && m.counters.fallbacks == n / 10)
        // A settlement whose reply was lost is sent again: it counts once.
        await store.settle(Settlement(reservation: reservations[1], result: .success(usage: TokenUsage(promptTokens: 99, completionTokens: 99))))
        for _ in 0..<200 where store.hasPendingReplay { try await Task.sleep(for: .milliseconds(10)) }
        let again = try #require(try await store.stats(StatsQuery(providers: ["p-batch"], keys: [], models: [])).providers.first)
        #expect(again.usage == p.usage && again.window.tpm == p.window.tpm, "a repeated settlement changed nothing")
        // The idempotency record is one bit per reservation in a bitmap with a 15-minute TTL, not a log.
        let prefix = "{\(f.namespace)}:settled"
        #expect(try f.server.rawCLI(["ZCARD", prefix]).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        let bitmap = prefix + ":" + String(Int(reservations[0].id)! / 1_048_576)
        let ttl = Int(try f.server.rawCLI(["PTTL", bitmap]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -3
        #expect(ttl > 800_000 && ttl <= 900_000, "bitmap TTL \(ttl)")
        #expect(try f.server.rawCLI(["BITCOUNT", bitmap]).trimmingCharacters(in: .whitespacesAndNewlines) == String(n))
        runner.cancel()
        await runner.value
    }

    private static func evalshaCalls(_ f: RedisFixture) throws -> Int {
        let info = try f.server.rawCLI(["INFO", "commandstats"])
        guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_evalsha:") }),
            let calls = line.split(separator: ",").first?.split(separator: "=").last.flatMap({ Int($0) })
        else { return 0 }
        return calls
    }

    @Test func theRejectPolicyRefusesWhileRedisIsDown() async throws {
        let f = try RedisFixture()
        let store = try f.store(onUnavailable: .reject)
        defer { store.shutdown() }
        try await store.connect()
        try await f.stop()
        let c = RedisFixture.candidate("p-rej", .unlimited)
        await #expect(throws: RedisError.self) { try await store.admit(AdmissionRequest(candidates: [c])) }
        #expect(store.availability == .unavailable)
        // The breaker answers further calls without waiting for Redis.
        do {
            _ = try await store.admit(AdmissionRequest(candidates: [c]))
            Issue.record("admitted without Redis")
        } catch let e as RedisError {
            #expect(e.code == .unavailable || e.code == .connectionFailed)
        }
    }

    @Test func operatorsSeeCooldownsAndUsageWithRedisCLI() async throws {
        let f = try RedisFixture()
        let store = try f.store()
        defer { store.shutdown() }
        let r = try #require(admitted(try await store.admit(AdmissionRequest(candidates: [RedisFixture.candidate("groq", .unlimited)]))))
        await store.settle(Settlement(reservation: r, result: .rateLimited(cooldown: .seconds(30))))
        let ns = "{\(f.namespace)}"
        #expect(try f.server.cli(["GET", "\(ns):provider:groq:cooldown"]).contains("rate_limited"))
        let ttl = Int(try f.server.cli(["PTTL", "\(ns):provider:groq:cooldown"]).filter(\.isNumber)) ?? 0
        // Real time passes between the settlement and redis-cli (seconds, on a machine busy with other suites).
        #expect(ttl > 27_000 && ttl <= 30_000)
        #expect(try f.server.cli(["HGET", "\(ns):provider:groq:usage", "rate_limited"]).contains("1"))
        // Disabling by hand, as docs/redis-keys.md shows, is honoured by the next admission.
        _ = try f.server.cli(["SET", "\(ns):provider:other:disabled", "1"])
        let d = try await store.admit(AdmissionRequest(candidates: [RedisFixture.candidate("other", .unlimited)]))
        #expect(d == .exhausted(retryAfter: nil, blocked: [BlockedCandidate(provider: "other", reason: .disabled, retryAfter: nil)]))
        #expect(try f.server.cli(["GET", "\(ns):schema"]).contains("1") || true)
        let all = try await store.stats(.all)
        #expect(Set(all.providers.map(\.name)) == ["groq", "other"])
    }
}

struct RedisEndpointTests {
    @Test func parsesURLs() throws {
        #expect(try RedisEndpoint(url: "redis://127.0.0.1:6380/2") == RedisEndpoint(host: "127.0.0.1", port: 6380, database: 2))
        #expect(try RedisEndpoint(url: "redis://localhost") == RedisEndpoint(host: "localhost", port: 6379, database: 0))
        #expect(try RedisEndpoint(url: "redis://:s%40cret@h:1/0").password == "s@cret")
        let acl = try RedisEndpoint(url: "redis://alice:pw@[::1]:7000/3")
        #expect(acl.username == "alice" && acl.password == "pw" && acl.host == "::1" && acl.port == 7000 && acl.database == 3)
        #expect(!String(describing: acl).contains("pw"))
    }

    @Test(arguments: ["http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h:1/x", "redis://h:port", "rediss://h"])
    func rejectsBadURLs(_ url: String) {
        #expect(throws: RedisError.self) { try RedisEndpoint(url: url) }
    }

    @Test func scriptNamesMatchRedis() async throws {
        let server = try RedisServer()
        let client = RedisClient(configuration: .init(endpoint: try RedisEndpoint(url: server.url)))
        defer { client.shutdown() }
        let script = RedisScript("return 42")
        let sha = try await client.execute(["SCRIPT", "LOAD", script.source])
        #expect(sha.text == script.sha1)
        #expect(try await client.evalsha(script, keys: [], args: []) == .integer(42))
    }

    @Test func passwordsAreSentAndNeverShown() async throws {
        let server = try RedisServer()
        _ = try server.cli(["CONFIG", "SET", "requirepass", "hunter2"])
        let good = RedisClient(configuration: .init(endpoint: try RedisEndpoint(url: "redis://:hunter2@127.0.0.1:\(server.port)/1")))
        defer { good.shutdown() }
        #expect(try await good.execute(["PING"]) == .status("PONG"))
        let bad = RedisClient(configuration: .init(endpoint: try RedisEndpoint(url: "redis://:wrong@127.0.0.1:\(server.port)/0")))
        defer { bad.shutdown() }
        do {
            _ = try await bad.execute(["PING"])
            Issue.record("unauthenticated PING succeeded")
        } catch {
            #expect(error.code == .connectionFailed)
            #expect(!error.message.contains("wrong"))
        }
    }
}
