import MultiplexerCore
@testable import MultiplexerRedis
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// The batched admission script (many admissions per call, each window read once and written once) and the
/// batched settlement (one `BITFIELD`, `HMGET`, `HSET` per key) against the scripts they replaced
/// (``ReferenceScripts``: one admission per call), on a real Redis: random limits, candidates, keys, budgets,
/// epochs, settled ids, settlements and time steps, run in two namespaces on the same clock — one gets each group
/// of admissions as one batched call, the other one call per admission in the same order. Every reply and,
/// after every step, every key (type, members, scores, fields, values, whether it has a TTL) must be equal.
@Suite struct AdmissionBatchDifferentialTests {
    /// A clock the test sets (`{ns}:now`), so both namespaces see the same time.
    static let fixedClock = """
        local function clock() return tonumber(redis.call('GET', P .. 'now')) end

        """

    static func script(_ body: String) -> RedisScript {
        RedisScript(RedisScripts.header + Self.fixedClock + RedisScripts.noTouchFunction + RedisScripts.prelude + body)
    }

    static let batchedAdmit = Self.script(RedisScripts.admitBody)
    static let referenceAdmit = Self.script(ReferenceScripts.admitBody)
    static let batchedSettle = Self.script(RedisScripts.settleBody)
    static let referenceSettle = Self.script(ReferenceScripts.settleBody)

    /// SplitMix64: a seeded generator, so a failing seed can be run again.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    struct Limits {
        var rpm = -1, rpd = -1, tpm = -1, tpd = -1, conc = -1, budget = -1
    }

    /// One admitted reservation (the reference's reply), for later settlements.
    struct Admitted {
        var id: String, provider: String, key: String, tokens: Int, cost: Int, day: String, month: String
    }

    @Test(arguments: [1 as UInt64, 2, 3, 4, 5, 6])
    func batchedAdmissionsAndSettlementsEqualOneAtATime(seed: UInt64) async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let client = RedisClient(configuration: .init(endpoint: try RedisEndpoint(url: server.url), commandTimeout: .seconds(5)))
        defer { client.shutdown() }
        var rng = Seeded(state: seed)
        let batched = "{db\(seed)}:", reference = "{dr\(seed)}:"
        let providers = ["p0", "p1", "p2", "p3"]
        var limits: [String: Limits] = [:]
        func small(_ range: ClosedRange<Int>) -> Int { Bool.random(using: &rng) ? Int.random(in: range, using: &rng) : -1 }
        for p in providers {
            limits[p] = Limits(
                rpm: small(1...8), rpd: Int.random(in: 0..<4, using: &rng) == 0 ? Int.random(in: 3...20, using: &rng) : -1,
                tpm: small(20...200), tpd: Int.random(in: 0..<4, using: &rng) == 0 ? Int.random(in: 100...600, using: &rng) : -1,
                conc: small(1...5), budget: Int.random(in: 0..<3, using: &rng) == 0 ? Int.random(in: 100...2000, using: &rng) : -1)
        }
        let keys: [(name: String, rpm: Int, tpm: Int, daily: Int, monthly: Int)] = [
            ("", -1, -1, -1, -1),
            ("k0", small(2...10), small(30...300), -1, -1),
            ("k1", small(2...10), -1, Int.random(in: 200...3000, using: &rng), Int.random(in: 500...5000, using: &rng)),
        ]
        var now = 1_800_000_000_000 + Int.random(in: 0...86_400_000, using: &rng)
        let quiet = Bool.random(using: &rng) ? "1" : "0"
        for ns in [batched, reference] {
            _ = try await client.execute(["HSET", ns + "fleet", "epoch", "e1", "live", "3", "quiet", quiet])
        }
        var nextID = 7 * 1_048_576 + Int.random(in: 0...1_000_000, using: &rng)
        var open: [Admitted] = []
        var admittedCount = 0, rejectedCount = 0

        for step in 0..<120 {
            // Time moves: not at all, a little, across a lease, across a minute.
            switch Int.random(in: 0..<10, using: &rng) {
            case 0...2: break
            case 3...6: now += Int.random(in: 1...400, using: &rng)
            case 7, 8: now += Int.random(in: 1_000...8_000, using: &rng)
            default: now += Int.random(in: 20_000...70_000, using: &rng)
            }
            for ns in [batched, reference] { _ = try await client.execute(["SET", ns + "now", String(now)]) }
            // Now and then an operator disables or cools down a provider (no TTL: both namespaces see the same).
            if Int.random(in: 0..<8, using: &rng) == 0 {
                let p = providers.randomElement(using: &rng)!
                let what = Bool.random(using: &rng) ? "disabled" : "cooldown"
                let on = Bool.random(using: &rng)
                for ns in [batched, reference] {
                    let k = ns + "provider:" + p + ":" + what
                    _ = try await client.execute(on ? ["SET", k, "manual"] : ["DEL", k])
                }
            }
            if open.count > 0, Int.random(in: 0..<3, using: &rng) == 0 {
                // A batch of settlements, the same batch to both scripts.
                var fields: [String] = []
                var count = 0
                for _ in 0..<Int.random(in: 1...min(10, open.count), using: &rng) {
                    let r = open.remove(at: Int.random(in: 0..<open.count, using: &rng))
                    let result = ["success", "success", "failure", "abandoned", "broken", "client_error"].randomElement(using: &rng)!
                    let used = Int.random(in: 0...(r.tokens + 10), using: &rng)
                    let real = r.cost == 0 ? 0 : Int.random(in: 0...r.cost, using: &rng)
                    fields += [
                        r.id, r.provider, r.key, "0", String(used), result, "0", "1000", "0",
                        "1", result == "success" ? "1" : "0", "0", "0", String(used / 2), String(used - used / 2), "0",
                        "m", String(Int.random(in: 0...3, using: &rng)), "0", "0", String(r.cost), String(real), r.day, r.month,
                    ]
                    count += 1
                    if Int.random(in: 0..<8, using: &rng) == 0 {
                        // the same settlement twice in one batch: applied once
                        fields += fields.suffix(RedisScripts.settlementFields)
                        count += 1
                    }
                }
                let b = try await client.evalsha(Self.batchedSettle, keys: [batched + "schema"], args: [batched, String(count)] + fields)
                let r = try await client.evalsha(Self.referenceSettle, keys: [reference + "schema"], args: [reference, String(count)] + fields)
                #expect(b == r, "seed \(seed) step \(step): settlement replies differ")
            } else {
                // A group of admissions: one batched call against one call each.
                var parts: [[String]] = []
                for _ in 0..<Int.random(in: 1...12, using: &rng) {
                    let key = keys.randomElement(using: &rng)!
                    var id = String(nextID)
                    nextID += 1
                    if Int.random(in: 0..<40, using: &rng) == 0 { id = "not-a-number" }
                    let epoch = Int.random(in: 0..<30, using: &rng) == 0 ? "stale" : "e1"
                    let candidates = Array(providers.shuffled(using: &rng).prefix(Int.random(in: 1...3, using: &rng)))
                    let wait = Int.random(in: 0..<3, using: &rng) == 0 ? String(Int.random(in: 0...3_000, using: &rng)) : "-1"
                    var f = [id, epoch, "node-\(seed)", key.name, String(key.rpm), String(key.tpm), wait, String(candidates.count), String(key.daily), String(key.monthly)]
                    for (i, p) in candidates.enumerated() {
                        let l = limits[p]!
                        let priced = l.budget >= 0 || key.daily >= 0 || Int.random(in: 0..<3, using: &rng) == 0
                        f += [
                            p, i == 0 ? "0" : String(Int.random(in: 0...1, using: &rng)), String(l.rpm), String(l.rpd), String(l.tpm), String(l.tpd),
                            String(l.conc), String(Int.random(in: 0...60, using: &rng)), String(Int.random(in: 100...5_000, using: &rng)),
                            priced ? String(Int.random(in: 1...300, using: &rng)) : "0", String(l.budget),
                        ]
                    }
                    parts.append(f)
                }
                // Some ids were cancelled (settled as never used) before their admission arrives.
                if Int.random(in: 0..<6, using: &rng) == 0, let id = parts.randomElement(using: &rng)?.first, let n = Int(id) {
                    for ns in [batched, reference] { _ = try await client.execute(["SETBIT", ns + "settled:\(n / 1_048_576)", String(n % 1_048_576), "1"]) }
                }
                var args = [batched, String(parts.count)]
                for p in parts { args += [String(p.count)] + p }
                let b = try await client.evalsha(Self.batchedAdmit, keys: [batched + "schema"], args: args)
                guard case .array(let replies) = b, replies.count == parts.count else {
                    Issue.record("seed \(seed) step \(step): batched reply \(b)")
                    return
                }
                for (i, p) in parts.enumerated() {
                    let r = try await client.evalsha(Self.referenceAdmit, keys: [reference + "schema"], args: [reference] + p)
                    #expect(replies[i] == r, "seed \(seed) step \(step) admission \(i) of \(parts.count): \(replies[i]) vs \(r)")
                    if let a = r.array, a.first?.int == 1, let index = a[2].int {
                        let b = 10 + Int(index) * 11
                        open.append(Admitted(
                            id: p[0], provider: p[b], key: p[3], tokens: Int(p[b + 7])!, cost: Int(p[b + 9])!,
                            day: a.count > 7 ? a[6].text ?? "" : "", month: a.count > 7 ? a[7].text ?? "" : ""))
                        admittedCount += 1
                    } else {
                        rejectedCount += 1
                    }
                }
            }
            try await Self.expectSameState(client, batched, reference, "seed \(seed) step \(step)")
        }
        // The scenario must have exercised both outcomes.
        #expect(admittedCount > 30)
        #expect(rejectedCount > 20)
    }

    /// Every key of `a` equals the same key of `b` (type, content, whether it has a TTL).
    static func expectSameState(_ client: RedisClient, _ a: String, _ b: String, _ context: String) async throws {
        func keys(_ ns: String) async throws -> [String] {
            let v = try await client.execute(["KEYS", ns + "*"])
            return (v.array ?? []).compactMap(\.text).map { String($0.dropFirst(ns.count)) }.filter { $0 != "now" }.sorted()
        }
        let ka = try await keys(a), kb = try await keys(b)
        #expect(ka == kb, "\(context): keys differ")
        guard ka == kb else { return }
        for k in ka {
            let type = try await client.execute(["TYPE", a + k]).text ?? ""
            let read: [String]
            switch type {
            case "zset": read = ["ZRANGE", "0", "-1", "WITHSCORES"]
            case "hash": read = ["HGETALL"]
            default: read = ["GET"]
            }
            func content(_ ns: String) async throws -> RedisValue {
                let v = try await client.execute([read[0], ns + k] + read.dropFirst())
                guard type == "hash", case .array(let a) = v else { return v }
                // field order in a hash is not part of its state
                var pairs: [(String, String)] = []
                for i in stride(from: 0, to: a.count - 1, by: 2) { pairs.append((a[i].text ?? "", a[i + 1].text ?? "")) }
                return .array(pairs.sorted { $0.0 < $1.0 }.flatMap { [RedisValue.status($0.0), .status($0.1)] })
            }
            let ca = try await content(a), cb = try await content(b)
            #expect(ca == cb, "\(context): \(k) differs")
            let ta = try await client.execute(["PTTL", a + k]).int ?? -3, tb = try await client.execute(["PTTL", b + k]).int ?? -3
            #expect((ta >= 0) == (tb >= 0), "\(context): \(k) TTL \(ta) vs \(tb)")
        }
    }
}
