import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// The fleet with real processes: a redis-server, three `multiplexer serve` (the built binary), nginx
/// as the load balancer, and mock providers that enforce their limits strictly (a 429 beyond them is an
/// overshoot, which a correct fleet never causes). Serialized: each test runs its own fleet, and they
/// share two cores with the rest of the suite.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct FleetTests {
    // MARK: Global limits

    @Test func aProviderReceivesNoMoreThanItsRPMFromThreeNodes() async throws {
        let plan = fleetPlan([
            .init(name: "limited", limits: .init(rpm: 50), latency: .milliseconds(10)),
            .init(name: "spare", latency: .milliseconds(10)),
        ])
        try await LocalFleet.run(plan) { fleet in
            let results = await LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(total: 300, concurrency: 24)
            let limited = fleet.mocks["limited"]!.state.counters
            #expect(results.statuses == [200: 300], "every client request succeeds through the other provider")
            #expect(limited.requests == 50, "the limited provider's whole minute is used, and not one request more")
            fleet.expectNoOvershoot()
            let perNode = fleet.nginx!.requestsPerUpstream()
            #expect(fleet.nodes.allSatisfy { (perNode[$0.port] ?? 0) > 50 }, "nginx spread the burst over the nodes: \(perNode)")
        }
    }

    @Test func aProviderReceivesNoMoreThanItsTPMFromThreeNodes() async throws {
        let plan = fleetPlan([
            // default_max_tokens 16 (these requests ask for 8): with the default 1,024 the mock's first
            // `x-ratelimit-remaining-tokens` (< 600) would cool it down as exhausted at once (§3 step 6).
            .init(name: "limited", limits: .init(tpm: 600), latency: .milliseconds(10), settings: ["default_max_tokens: 16"]),
            .init(name: "spare", latency: .milliseconds(10)),
        ])
        try await LocalFleet.run(plan) { fleet in
            let results = await LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(total: 240, concurrency: 24)
            let limited = fleet.mocks["limited"]!.state.counters
            #expect(results.statuses == [200: 240])
            #expect(limited.requests > 10, "the limited provider got its share: \(limited.requests) requests, \(limited.promptTokens + limited.completionTokens) tokens")
            #expect(limited.promptTokens + limited.completionTokens <= 600)
            fleet.expectNoOvershoot()
            // Reserved estimates were settled to the real usage: the window holds what the mock counted.
            let stats = try await fleet.fleetStats()
            let window = try #require(stats.providers.first { $0.name == "limited" }).window
            #expect(window.tpm == limited.promptTokens + limited.completionTokens)
        }
    }

    @Test func aProviderNeverHasMoreThanMaxConcurrentInFlightFromThreeNodes() async throws {
        let plan = fleetPlan([
            // Weighted so that demand on `limited` is well above its 3 slots the whole time.
            .init(name: "limited", limits: .init(maxConcurrent: 3), weight: 10, latency: .milliseconds(150)),
            .init(name: "spare", latency: .milliseconds(20)),
        ])
        try await LocalFleet.run(plan) { fleet in
            let results = await LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(total: 150, concurrency: 30)
            let limited = fleet.mocks["limited"]!.state.counters
            #expect(results.statuses == [200: 150])
            #expect(limited.maxInFlight == 3, "used to the limit, never beyond")
            fleet.expectNoOvershoot()
        }
    }

    // MARK: Cooldowns and tiers

    @Test func aCooldownSetByOneNodeHoldsOnEveryNode() async throws {
        let plan = fleetPlan([
            .init(name: "flaky", weight: 100, latency: .milliseconds(5)),
            .init(name: "steady", weight: 1, latency: .milliseconds(5)),
        ])
        try await LocalFleet.run(plan) { fleet in
            let flaky = fleet.mocks["flaky"]!.state
            flaky.setMode(.rateLimited, retryAfter: 3)
            // Node 1 meets the 429 (weight 100: flaky is tried first), cools it down, and serves from steady.
            var first: (status: Int, provider: String?)?
            for i in 0..<20 where flaky.counters.forced429 == 0 {
                first = await fleet.chat(fleet.nodes[0].url, index: i)
                #expect(first?.status == 200)
            }
            #expect(flaky.counters.forced429 == 1 && first?.provider == "steady")
            let key = "\(fleet.keyPrefix):provider:flaky:cooldown"
            let pttl = try await fleet.redisInteger(["PTTL", key])
            #expect(pttl > 1500 && pttl <= 3000, "Retry-After: 3 → a 3 s fleet-wide cooldown, PTTL \(pttl)")
            #expect(try await fleet.redisCLI(["GET", key]).contains("rate_limited"))
            // The other nodes send it nothing while it cools down.
            for i in 0..<30 {
                let r = await fleet.chat(fleet.nodes[1 + i % 2].url, index: i)
                #expect(r?.status == 200 && r?.provider == "steady")
            }
            #expect(flaky.counters.requests == 1, "nodes 2 and 3 honoured node 1's cooldown")
            #expect(try await fleet.redisInteger(["PTTL", key]) > 0, "…and all of that happened within the cooldown")
            // When it ends, traffic returns.
            flaky.setMode(.ok, retryAfter: nil)
            #expect(await fleet.eventually(within: .seconds(5)) { (try? await fleet.redisInteger(["PTTL", key])) ?? 0 < 0 })
            for i in 0..<6 { _ = await fleet.chat(fleet.nodes[i % 3].url, index: i) }
            #expect(flaky.counters.served > 0)
            fleet.expectNoOvershoot()
        }
    }

    @Test func theFallbackTierServesOnlyWhileEveryPrimaryIsExhausted() async throws {
        let plan = fleetPlan([
            .init(name: "p1", limits: .init(rpm: 10), latency: .milliseconds(5)),
            .init(name: "p2", limits: .init(rpm: 10), latency: .milliseconds(5)),
            .init(name: "backup", tier: .fallback, latency: .milliseconds(5)),
        ])
        try await LocalFleet.run(plan) { fleet in
            var served: [String] = []
            for i in 0..<15 { served.append(await fleet.chat(fleet.entryURL, index: i)?.provider ?? "failed") }
            #expect(served.allSatisfy { $0 == "p1" || $0 == "p2" }, "primaries with room left: \(served)")
            #expect(fleet.mocks["backup"]!.state.counters.requests == 0)
            for i in 15..<60 { served.append(await fleet.chat(fleet.entryURL, index: i)?.provider ?? "failed") }
            #expect(served.prefix(20).allSatisfy { $0 == "p1" || $0 == "p2" }, "the primaries' 20 requests per minute come first")
            #expect(served.dropFirst(20).allSatisfy { $0 == "backup" }, "then, and only then, the fallback tier")
            let stats = try await fleet.fleetStats()
            #expect(stats.models.first?.counters.fallbacks == 40)
            #expect(stats.providers.first { $0.name == "backup" }?.usage.fallbackServed == 40)
            fleet.expectNoOvershoot()
        }
    }

    // MARK: Failures

    @Test func killingANodeFailsOnlyItsInFlightRequestsAndItsLeasesExpire() async throws {
        // Leases last 30 s past their last renewal (Provider.lease); these calls take 0.4 s, never renewed.
        let timeouts = ["timeout_seconds: 1", "ttft_timeout_seconds: 0.5", "stream_idle_timeout_seconds: 0.5"]
        let plan = fleetPlan([
            .init(name: "slow", limits: .init(maxConcurrent: 4), latency: .milliseconds(400), settings: timeouts),
            .init(name: "spare", latency: .milliseconds(400), settings: timeouts),
        ])
        try await LocalFleet.run(plan) { fleet in
            // 1. kill -9 under load through nginx.
            let origin = ContinuousClock.now
            async let load = LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(total: 90, concurrency: 12, origin: origin)
            try await Task.sleep(for: .milliseconds(1200))
            fleet.signal(node: 0, SIGKILL)
            let killedAt = origin.duration(to: .now)
            let results = await load
            let failed = results.filter { $0.status != 200 }
            #expect(failed.count <= 12, "at most the requests in flight at the killed node: \(results.statuses)")
            #expect(failed.allSatisfy { $0.sent < killedAt }, "every request sent after the kill succeeded")
            #expect(results.filter { $0.sent > killedAt }.count > 20)
            fleet.expectNoOvershoot()

            // 2. Leases of a crashed node: the killed node may have left leases on slow (its in-flight
            // calls); node 2 now holds the rest of slow's 4 slots and is killed too.
            let slow = fleet.mocks["slow"]!.state
            let inflightKey = "\(fleet.keyPrefix):provider:slow:inflight"
            let leaked = try await fleet.redisInteger(["ZCARD", inflightKey])
            #expect(leaked <= 4)
            #expect(await fleet.adminCooldown("spare", seconds: 120, node: 2) == 200)
            #expect(await fleet.eventually(within: .seconds(5)) { slow.counters.inFlight == 0 })
            let before = slow.counters.requests
            let node1 = fleet.nodes[1].url
            async let held: Void = withTaskGroup(of: Void.self) { g in
                for i in 0..<(4 - leaked) { g.addTask { _ = await fleet.chat(node1, index: i) } }
            }
            #expect(await fleet.eventually(within: .seconds(5)) { slow.counters.requests == before + 4 - leaked })
            fleet.signal(node: 1, SIGKILL)
            await held
            #expect(try await fleet.redisInteger(["ZCARD", inflightKey]) == 4, "dead nodes' leases hold all 4 slots")
            let blocked = await fleet.chat(fleet.entryURL)
            #expect(blocked?.status == 429, "slow is full (leases), spare cools down: nothing can serve")
            // Each lease ends at most 30 s after its admission (by Redis's clock), and the slots come back then.
            let lastExpiry = try await fleet.redisCLI(["ZRANGE", inflightKey, "-1", "-1", "WITHSCORES"]).quotedIntegers.last
            let time = try await fleet.redisCLI(["TIME"]).quotedIntegers
            let remaining = Duration.milliseconds(try #require(lastExpiry) - time[0] * 1000 - time[1] / 1000)
            #expect(remaining > .zero && remaining <= .seconds(30), "lease left: \(remaining)")
            let waitStart = ContinuousClock.now
            let back = await fleet.eventually(within: remaining + .seconds(5)) {
                ((try? await fleet.fleetStats())?.providers.first { $0.name == "slow" }?.window.inFlight ?? -1) == 0
            }
            let after = waitStart.duration(to: .now)
            #expect(back && after > remaining - .seconds(1) && after < remaining + .seconds(3), "slots back after \(after), lease said \(remaining)")
            let served = await withTaskGroup(of: Int.self) { g in
                for i in 0..<4 { g.addTask { await fleet.chat(fleet.entryURL, index: i)?.status ?? 0 } }
                return await g.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(served == [200, 200, 200, 200], "all 4 slots are back")
            // The killed nodes' calls reached the mock but were never settled: no counter check.
            let audit = await fleet.audit(counters: false)
            #expect(audit.isClean, "\(audit)")
        }
    }

    @Test func aRollingRestartUnderLoadFailsNoClientRequest() async throws {
        var plan = fleetPlan([
            .init(name: "a", latency: .milliseconds(40)),
            .init(name: "b", latency: .milliseconds(60)),
        ])
        // Longer than nginx's upstream keepalive_timeout (1 s), as deploy/ has it (5 s vs 4 s).
        plan.drainSeconds = 1.5
        try await LocalFleet.run(plan) { [plan] fleet in
            let origin = ContinuousClock.now
            async let load = LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(
                total: 1000, concurrency: 8, spacing: .milliseconds(10), origin: origin)
            let balancer = try #require(fleet.nginx)
            for node in 0..<fleet.nodes.count {
                try await Task.sleep(for: .milliseconds(500))
                // As a load balancer that health-checks /readyz does (or an operator of nginx open source, who
                // has none): the node leaves the rotation as it starts draining. Without this, nginx keeps
                // opening connections to it until its listener closes, and a POST sent on one the node
                // accepted but had not read yet is reset (1 in ~7 runs on a loaded machine): nginx must not
                // pass it on (the node may have called a provider), so the client gets a 502.
                let port = fleet.nodes[node].port
                try await balancer.setDown(port, true)
                fleet.signal(node: node, SIGTERM)
                #expect(await fleet.waitForExit(node: node, timeout: .seconds(10)), "\(fleet.nodes[node].id) stopped gracefully")
                try await fleet.restart(node: node)
                try await balancer.setDown(port, false)
            }
            let restartsDoneAt = origin.duration(to: .now)
            let results = await load
            #expect(results.statuses == [200: 1000], "no failed client request while every node restarted in turn")
            #expect(restartsDoneAt < results.last!.sent, "the load outlasted the restarts")
            fleet.expectNoOvershoot()
        }
    }

    @Test func aRedisOutageDegradesToLocalSharesAndLosesNoCount() async throws {
        var plan = fleetPlan([
            .init(name: "a", limits: .init(rpm: 3000), latency: .milliseconds(10)),
            .init(name: "b", limits: .init(rpm: 3000), tier: .fallback, latency: .milliseconds(10)),
        ])
        // The outage: Redis stopped with SIGTERM (it writes its AOF and exits: connections are refused)
        // and started again on the same port with its data, as a Redis restart or failover would.
        plan.redisPersistence = true
        try await LocalFleet.run(plan) { [plan] fleet in
            let redis = try #require(fleet.redis)
            async let load = LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(
                total: 240, concurrency: 6, spacing: .milliseconds(15))
            try await Task.sleep(for: .milliseconds(800))
            await stopRedis(redis)
            let degraded = await fleet.eventually(within: .seconds(3)) {
                var all = true
                for n in fleet.nodes { all = await fleet.http.get(n.url + "/readyz")?.body == #"{"status":"degraded"}"# && all }
                return all
            }
            #expect(degraded, "every node reports degraded (and still 200: it serves on local shares)")
            try await Task.sleep(for: .seconds(2))
            try await startRedis(redis)
            let results = await load
            #expect(results.statuses == [200: 240], "every request succeeded, before, during and after the outage")
            // Each node replays its buffered settlements and counters at its next heartbeat.
            let counters = fleet.mockCounters()
            let caughtUp = await fleet.eventually(within: .seconds(15)) {
                guard let s = try? await fleet.fleetStats() else { return false }
                return s.providers.allSatisfy { $0.usage.requests == counters[$0.name]?.requests }
            }
            #expect(caughtUp)
            let stats = try await fleet.fleetStats()
            for p in stats.providers {
                let c = try #require(counters[p.name])
                #expect(p.usage.requests == c.requests && p.usage.success == c.served, "\(p.name): Redis \(p.usage), mock \(c)")
                #expect(p.usage.promptTokens == c.promptTokens && p.usage.completionTokens == c.completionTokens)
            }
            #expect(stats.models.first?.counters.requests == 240)
            for n in fleet.nodes { #expect(await fleet.http.get(n.url + "/readyz")?.body == #"{"status":"ready"}"#) }
            fleet.expectNoOvershoot()
        }
    }

    // MARK: Counters

    @Test func usageCountersInRedisEqualWhatTheMocksCounted() async throws {
        let plan = fleetPlan([
            .init(name: "a", limits: .init(rpm: 40), weight: 2, latency: .milliseconds(10)),
            .init(name: "b", limits: .init(tpm: 400), weight: 1, latency: .milliseconds(10)),
            .init(name: "c", limits: .init(rpm: 30), tier: .fallback, latency: .milliseconds(10)),
        ])
        try await LocalFleet.run(plan) { fleet in
            let results = await LoadGenerator(client: fleet.client, targets: [fleet.entryURL], model: plan.model).run(total: 150, concurrency: 10)
            let counters = fleet.mockCounters()
            let redis = try #require(fleet.redis)
            // What an operator runs: `multiplexer stats --json`.
            let (status, json) = try await fleet.runBinary(["stats", "--redis", redis.url, "--namespace", plan.namespace, "--json"])
            #expect(status == 0)
            let doc = try JSONParser.parse(Array(json.utf8)).value
            let providers = try #require(doc["providers"]?.arrayValue)
            #expect(providers.count == 3)
            for p in providers {
                let name = try #require(p["name"]?.stringValue)
                let u = try #require(p["usage"])
                let c = try #require(counters[name])
                #expect(u["requests"]?.intValue == c.requests && u["success"]?.intValue == c.served, "\(name): \(u) vs \(c)")
                #expect(u["prompt_tokens"]?.intValue == c.promptTokens && u["completion_tokens"]?.intValue == c.completionTokens)
                #expect(u["rate_limited"]?.intValue == 0 && u["errors"]?.intValue == 0)
            }
            let model = try #require(doc["models"]?.arrayValue?.first)
            #expect(model["requests"]?.intValue == 150)
            #expect(model["fallbacks"]?.intValue == results.providers["c"] ?? 0)
            #expect(model["exhausted"]?.intValue == results.statuses[429] ?? 0)
            // …and the same with redis-cli.
            let hash = try await fleet.redisCLI(["HGET", "\(fleet.keyPrefix):provider:a:usage", "requests"])
            #expect(hash.contains("\"\(counters["a"]!.requests)\""), "redis-cli HGET: \(hash)")
            #expect(counters.values.reduce(0) { $0 + $1.served } == results.statuses[200] ?? 0)
            fleet.expectNoOvershoot()
        }
    }
}

/// Stops Redis with SIGTERM (it finishes its AOF), off the concurrency pool.
private func stopRedis(_ redis: RedisServer) async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().async {
            redis.stop(signal: SIGTERM)
            c.resume()
        }
    }
}

private func startRedis(_ redis: RedisServer) async throws {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
        DispatchQueue.global().async {
            do {
                try redis.start()
                c.resume()
            } catch {
                c.resume(throwing: error)
            }
        }
    }
}
