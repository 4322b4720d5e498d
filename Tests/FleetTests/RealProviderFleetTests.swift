import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// One `multiplexer serve` process (the built binary) in front of mock providers that behave like real ones:
/// seconds before their headers, HTTPS with HTTP/2 through nginx and a throw-away CA, certificates that are
/// wrong in each way a real deployment meets, and answers that are broken in each way a real provider's are.
/// Serialized: hundreds of connections at once share two cores with the rest of the suite.
@Suite(.serialized) struct RealProviderFleetTests {
    /// One node, no load balancer, Redis (so cooldowns can be read with redis-cli).
    func onePlan(_ providers: [FleetPlan.Provider]) -> FleetPlan {
        var plan = FleetPlan(providers: providers)
        plan.nodes = 1
        plan.redis = true
        plan.nginx = false
        plan.namespace = "real\(UInt16.random(in: 0...UInt16.max))"
        return plan
    }

    /// Sends `count` requests at once (each its own connection) and returns their statuses and serving providers.
    func burst(_ fleet: LocalFleet, count: Int, stream: Bool, timeout: Duration = .seconds(30)) async -> [(status: Int, provider: String?, body: String)] {
        await withTaskGroup(of: (Int, String?, String).self) { group in
            for i in 0..<count {
                group.addTask {
                    let body = #"{"model":"\#(fleet.plan.model)","messages":[{"role":"user","content":"hello \#(i)"}],"max_tokens":8,"stream":\#(stream)}"#
                    guard let r = await fleet.http.post(fleet.entryURL + "/v1/chat/completions", json: body, timeout: timeout) else { return (0, nil, "") }
                    return (r.status, r.headers["x-multiplexer-provider"], r.body)
                }
            }
            return await group.reduce(into: []) { $0.append((status: $1.0, provider: $1.1, body: $1.2)) }
        }
    }

    func statuses(_ results: [(status: Int, provider: String?, body: String)]) -> [Int: Int] {
        Dictionary(grouping: results, by: \.status).mapValues(\.count)
    }

    /// `multiplexer_upstream_attempts_total{provider=…, outcome=…}` on node 0.
    func attempts(_ fleet: LocalFleet, provider: String, outcome: String) async -> Int {
        guard let text = await fleet.http.get(fleet.nodes[0].url + "/metrics")?.body else { return -1 }
        let prefix = #"multiplexer_upstream_attempts_total{outcome="\#(outcome)",provider="\#(provider)"}"#
        let alt = #"multiplexer_upstream_attempts_total{provider="\#(provider)",outcome="\#(outcome)"}"#
        for line in text.split(separator: "\n") where line.hasPrefix(prefix) || line.hasPrefix(alt) {
            return Int(Double(line.split(separator: " ").last ?? "") ?? -1)
        }
        return 0
    }

    /// The node's resident memory in MiB, from /proc.
    func residentMiB(_ fleet: LocalFleet) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(fleet.nodes[0].process.pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kb = Int(line.filter(\.isNumber))
        else { return -1 }
        return kb / 1024
    }

    // MARK: Slow providers, hundreds at once

    @Test func twoHundredCallsAndStreamsToASlowPlainHTTPProviderAllRunAtOnce() async throws {
        var slow = FleetPlan.Provider(name: "slow", latency: .seconds(2), settings: ["timeout_seconds: 30", "ttft_timeout_seconds: 30"])
        slow.mock = { $0.streamChunks = 5; $0.tokenInterval = .milliseconds(20) }
        try await LocalFleet.run(onePlan([slow])) { fleet in
            let plain = await burst(fleet, count: 200, stream: false)
            #expect(statuses(plain) == [200: 200], "200 plain calls to a provider that answers after 2 s")
            #expect(fleet.mocks["slow"]!.state.counters.maxInFlight == 200, "the provider had all 200 at once (none queued on a connection)")
            let first = await fleet.audit()
            #expect(first.isClean, "\(first)")
            // Counted anew for the streams (max in flight); Redis's counters keep both halves.
            fleet.mocks["slow"]!.state.reset()
            let streams = await burst(fleet, count: 200, stream: true)
            #expect(statuses(streams) == [200: 200], "200 streams whose first event comes after 2 s")
            #expect(streams.allSatisfy { $0.body.contains("data: [DONE]") }, "every stream ended with [DONE]")
            #expect(fleet.mocks["slow"]!.state.counters.maxInFlight == 200)
            let audit = await fleet.audit(counters: false)
            #expect(audit.isClean, "\(audit)")
        }
    }

    @Test func twoHundredCallsAndStreamsOverHTTPSAndHTTP2ShareAFewConnections() async throws {
        var slow = FleetPlan.Provider(name: "h2", latency: .seconds(2), settings: ["timeout_seconds: 30", "ttft_timeout_seconds: 30"])
        slow.mock = { $0.streamChunks = 5; $0.tokenInterval = .milliseconds(20) }
        slow.tls = .init()
        try await LocalFleet.run(onePlan([slow])) { fleet in
            let plain = await burst(fleet, count: 200, stream: false)
            #expect(statuses(plain) == [200: 200])
            #expect(fleet.mocks["h2"]!.state.counters.maxInFlight == 200, "all 200 at the provider at once, multiplexed")
            let streams = await burst(fleet, count: 200, stream: true)
            #expect(statuses(streams) == [200: 200])
            #expect(streams.allSatisfy { $0.body.contains("data: [DONE]") })
            let log = try #require(fleet.tlsFronts["h2"]).accessLog()
            #expect(log.count == 400, "nginx saw every request")
            #expect(Set(log.map(\.serverProtocol)) == ["HTTP/2.0"], "HTTP/2 by ALPN")
            let connections = Set(log.map(\.connection)).count
            // 128 streams per connection (nginx's default): 200 at once need at least 2.
            #expect(connections >= 2 && connections <= 20, "400 requests on \(connections) connections")
        }
    }

    // MARK: Certificates

    @Test func aProviderWithABadCertificateFailsOverToTheNextAndAnMTLSProviderServes() async throws {
        var expired = FleetPlan.Provider(name: "expired")
        expired.tls = .init(certificate: .expired)
        var wrongHost = FleetPlan.Provider(name: "wronghost")
        wrongHost.tls = .init(certificate: .wrongHost)
        var unknownCA = FleetPlan.Provider(name: "unknownca")
        unknownCA.tls = .init(trustsAuthority: false)
        var mutual = FleetPlan.Provider(name: "mtls", tier: .fallback)
        mutual.tls = .init(mutual: true)
        try await LocalFleet.run(onePlan([expired, wrongHost, unknownCA, mutual])) { fleet in
            let results = await burst(fleet, count: 6, stream: false)
            #expect(statuses(results) == [200: 6], "every request served: \(results.map(\.body))")
            #expect(results.allSatisfy { $0.provider == "mtls" }, "by the provider that needs a client certificate")
            for name in ["expired", "wronghost", "unknownca"] {
                #expect(await attempts(fleet, provider: name, outcome: "tls_failure") >= 1, "\(name): tls_failure")
                #expect(fleet.mocks[name]!.state.counters.requests == 0, "\(name): nothing got through nginx")
            }
            #expect(fleet.mocks["mtls"]!.state.counters.served == 6)
        }
    }

    // MARK: Broken answers

    /// A provider that answers 200 and then breaks the answer (or never completes it) costs one attempt, within
    /// its timeouts; the request is served by the next provider, and memory stays bounded.
    @Test(arguments: [
        (MockProvider.Mode.commentsOnly, true), (.commentsOnly, false), (.trickleBytes, true), (.trickleBytes, false),
        (.endlessLine, true), (.endlessLine, false), (.invalidJSON200, false), (.invalidJSON200, true), (.blankKeepalive, true),
    ])
    func aBrokenAnswerFailsOverWithinItsTimeouts(mode: MockProvider.Mode, stream: Bool) async throws {
        var bad = FleetPlan.Provider(
            name: "bad", settings: ["timeout_seconds: 3", "ttft_timeout_seconds: 2", "stream_idle_timeout_seconds: 2", "max_event_bytes: 65536"])
        bad.mock = { $0.mode = mode; $0.keepAliveInterval = .milliseconds(50); $0.trickleInterval = .milliseconds(50) }
        let good = FleetPlan.Provider(name: "good", tier: .fallback)
        try await LocalFleet.run(onePlan([bad, good])) { fleet in
            let start = ContinuousClock.now
            let results = await burst(fleet, count: 4, stream: stream, timeout: .seconds(30))
            let took = start.duration(to: .now)
            #expect(statuses(results) == [200: 4], "\(mode) stream=\(stream): \(results.first?.body.prefix(300) ?? "")")
            #expect(results.allSatisfy { $0.provider == "good" })
            if stream { #expect(results.allSatisfy { $0.body.contains("data: [DONE]") }) }
            // The bound is the provider's timeouts (3 s at most) plus the fallback's answer — never the client's 30 s.
            #expect(took < .seconds(15), "\(mode) stream=\(stream): answered after \(took)")
            let rss = residentMiB(fleet)
            #expect(rss > 0 && rss < 400, "node RSS \(rss) MiB")
            #expect(fleet.mocks["bad"]!.state.counters.requests >= 1)
            let audit = await fleet.audit()
            #expect(audit.isClean, "\(audit)")
        }
    }

    // MARK: Exhaustion announced by rate-limit headers

    @Test func anExhaustedProviderCoolsDownInRedisUntilItsReset() async throws {
        var ex = FleetPlan.Provider(name: "ex")
        ex.mock = { $0.mode = .exhausted; $0.retryAfter = 40 }
        let other = FleetPlan.Provider(name: "other", tier: .fallback)
        try await LocalFleet.run(onePlan([ex, other])) { fleet in
            let first = await fleet.http.post(fleet.entryURL + "/v1/chat/completions", json: LoadGenerator.bodyText(model: fleet.plan.model, index: 0))
            #expect(first?.status == 200 && first?.headers["x-multiplexer-provider"] == "ex", "the exhausted answer is still an answer")
            let key = "\(fleet.keyPrefix):provider:ex:cooldown"
            let reason = try await fleet.redisCLI(["GET", key]).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(reason.contains("exhausted"), "cooldown reason: \(reason)")
            let ttl = Int(try await fleet.redisCLI(["PTTL", key]).filter(\.isNumber)) ?? -1
            #expect(ttl > 30_000 && ttl <= 40_000, "the cooldown lasts until the announced reset: PTTL \(ttl)")
            let next = await burst(fleet, count: 5, stream: false)
            #expect(next.allSatisfy { $0.status == 200 && $0.provider == "other" }, "the next requests go elsewhere")
            #expect(fleet.mocks["ex"]!.state.counters.requests == 1)
        }
    }
}
