import Foundation
import MultiplexerCore
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerUpstream
import Testing

/// Reload, run-time keys and the dashboard on one in-process node (the fleet-wide behaviour is in
/// `LiveOperationsFleetTests`).
@Suite("Live operations")
struct LiveOperationsTests {
    static let admin = ["content-type": "application/json", "authorization": "Bearer admin-key-123"]
    static func yaml(_ ports: [String: Int], alias: String = "gpt-4o-mini", extra: String = "") -> String {
        gatewayYAML(
            ports, primary: [("a", 1)], fallback: [("b", 1)],
            providerExtra: ["a": "limits: { rpm: 50 }, pricing: { input_per_mtok: 1, output_per_mtok: 2 }", "b": "pricing: { input_per_mtok: 1, output_per_mtok: 2 }"],
            top: "admin_key: admin-key-123\n" + extra)
            .replacingOccurrences(of: "aliases: [gpt-4o-mini]", with: "aliases: [\(alias)]")
    }

    @Test func aReloadSwapsTheConfigurationAndKeepsTheCounters() async throws {
        try await GatewayFixture.with(mocks: [.init("a"), .init("b")], yaml: { Self.yaml($0) }) { f in
            #expect(try await f.chat().status == 200)
            #expect(try await f.stats("a").usage.success == 1)
            let next = try ConfigurationLoader.parse(yaml: Self.yaml(f.mockPorts, alias: "new-alias"), environment: [:])
            let r = f.gateway.reload(to: next)
            #expect(r.applied && r.generation == 2 && r.changes == ["models ~m"] && r.restartRequired.isEmpty, "\(r)")
            #expect(try await f.chat("new-alias").status == 200)
            #expect(try await f.chat("gpt-4o-mini").status == 404, "the old alias is gone")
            #expect(try await f.stats("a").usage.success == 2, "a provider that kept its name kept its counters")
            // What needs a restart keeps its running value and is said.
            var moved = next
            moved.server.port = 1
            let r2 = f.gateway.reload(to: moved)
            #expect(r2.applied && r2.restartRequired == ["server.port"] && f.gateway.configuration.server.port != 1)
            // The tracer and the log format are made at start.
            var traced = next
            traced.tracing = .init(otlpEndpoint: "http://127.0.0.1:4318")
            traced.server.logFormat = .json
            let r3 = f.gateway.reload(to: traced)
            #expect(r3.applied && r3.restartRequired == ["server.log_format", "tracing"], "\(r3.restartRequired)")
            #expect(f.gateway.configuration.tracing == nil && f.gateway.configuration.server.logFormat == .text)
            // A node built from a value (no file) refuses /admin/reload with an OpenAI-shaped error and the reason.
            let refused = try await f.request("/admin/reload", body: "{}", headers: Self.admin)
            #expect(refused.status == 400 && refused.errorCode == "invalid_configuration", "\(refused.text)")
            // Every problem with its key path, line (null: not from a file) and message.
            #expect(refused.text.contains(#""errors":[{"line":null,"message":"this node was not started from a configuration file","path":""}]"#), "\(refused.text)")
        }
    }

    @Test func aReloadFromAFileReportsEveryErrorWithItsLine() async throws {
        let path = NSTemporaryDirectory() + "mux-reload-\(UInt32.random(in: 0...UInt32.max)).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await GatewayFixture.with(mocks: [.init("a"), .init("b")], yaml: { Self.yaml($0) }) { f in
            try Self.yaml(f.mockPorts).write(toFile: path, atomically: true, encoding: .utf8)
            let source = ConfigurationSource(path: path)
            let good = try source.load()
            #expect(f.gateway.reload(to: good).applied)
            try (Self.yaml(f.mockPorts) + "surprise: 1\nmodels_typo: []\n").write(toFile: path, atomically: true, encoding: .utf8)
            do throws(ConfigurationError) {
                _ = try source.load()
                Issue.record("a broken file loaded")
            } catch {
                #expect(error.problems.count == 2 && error.problems.allSatisfy { $0.line != nil }, "\(error)")
            }
        }
    }

    @Test func runtimeKeysAreCreatedValidatedUsedAndRevoked() async throws {
        try await GatewayFixture.with(mocks: [.init("a"), .init("b")], yaml: { Self.yaml($0) }) { f in
            for (body, why) in [
                (#"{"limits":{"rpm":1}}"#, "no name"), (#"{"name":"Bad Name"}"#, "invalid name"), (#"{"name":"k","limits":{"rpm":-1}}"#, "negative"),
                (#"{"name":"k","limits":{"rpd":1}}"#, "unknown limit"), (#"{"name":"k","models":["nope"]}"#, "unknown model"), (#"{"name":"k","colour":1}"#, "unknown member"),
                (#"{"name":"k","name":"j"}"#, "duplicate key"),
            ] {
                let r = try await f.request("/admin/keys", body: body, headers: Self.admin)
                #expect(r.status == 400 && r.json?["error"]?["message"] != nil, "\(why): \(r.text)")
            }
            #expect(try await f.request("/admin/keys", body: #"{"name":"k"}"#).status == 401, "the admin key is required")
            let created = try await f.request("/admin/keys", body: #"{"name":"team-y","limits":{"rpm":2},"budget":{"daily_usd":1.5}}"#, headers: Self.admin)
            #expect(created.status == 201)
            let secret = try #require(created.json?["key"]?.stringValue)
            #expect(created.json?["budget"]?["daily_usd"] == .number(1.5))
            let listed = try await f.request("/admin/keys", method: "GET", headers: Self.admin)
            #expect(listed.text.contains("team-y") && !listed.text.contains(secret), "no secret in the listing")
            let auth = ["content-type": "application/json", "authorization": "Bearer \(secret)"]
            #expect(try await f.chat(headers: auth).status == 200)
            #expect(try await f.chat().status == 401, "once keys exist, a key is required")
            #expect(try await f.chat(headers: ["x-api-key": secret]).status == 200, "any of the ways a key is presented")
            #expect(try await f.chat(headers: auth).status == 429, "its limit holds")
            let stats = try await f.request("/admin/stats", method: "GET", headers: Self.admin)
            #expect(stats.text.contains(#""name":"team-y""#), "the key's use is in /admin/stats")
            #expect(try await f.request("/admin/keys/team-y", method: "DELETE", headers: Self.admin).status == 200)
            #expect(try await f.request("/admin/keys/team-y", method: "DELETE", headers: Self.admin).status == 404)
            #expect(try await f.chat().status == 200, "no key left and no `keys` section: anonymous use again")
        }
    }

    @Test func withAnEmptyKeysSectionARevokedLastKeyClosesTheGateway() async throws {
        try await GatewayFixture.with(mocks: [.init("a"), .init("b")], yaml: { Self.yaml($0, extra: "keys: []\n") }) { f in
            #expect(try await f.chat().status == 401, "keys: [] requires a key")
            let created = try await f.request("/admin/keys", body: #"{"name":"only"}"#, headers: Self.admin)
            let secret = try #require(created.json?["key"]?.stringValue)
            let auth = ["content-type": "application/json", "authorization": "Bearer \(secret)"]
            #expect(try await f.chat(headers: auth).status == 200)
            #expect(try await f.request("/admin/keys/only", method: "DELETE", headers: Self.admin).status == 200)
            #expect(try await f.chat(headers: auth).status == 401, "revoked")
            #expect(try await f.chat().status == 401)
        }
    }

    @Test func theDashboardIsOneSelfContainedPage() async throws {
        try await GatewayFixture.with(mocks: [.init("a"), .init("b")], yaml: { Self.yaml($0) }) { f in
            let page = try await f.request("/dashboard", method: "GET", headers: [:])
            #expect(page.status == 200 && page.headers["content-type"]?.hasPrefix("text/html") == true)
            #expect(page.headers["content-security-policy"]?.contains("connect-src 'self'") == true)
            #expect(!page.text.contains("http://") && !page.text.contains("https://") && !page.text.contains("//cdn"), "nothing from elsewhere")
            #expect(page.text.contains("sessionStorage") && !page.text.contains("localStorage"), "the key stays in the tab")
            let stats = try await f.request("/admin/stats", method: "GET", headers: Self.admin)
            let v = try #require(stats.json)
            let a = try #require(v["config"]?["providers"]?.arrayValue?.first { $0["name"] == .string("a") })
            #expect(a["limits"]?["rpm"]?.intValue == 50 && a["tiers"]?.arrayValue == [.string("m: primary")])
            #expect(v["generation"]?.intValue == 1 && v["recent_errors"]?.arrayValue != nil)
        }
    }

    @Test func aCooldownAtTheFailureThresholdIsCountedAndLogged() async throws {
        try await GatewayFixture.with(
            mocks: [.init("a") { $0.mode = .error500 }, .init("b")],
            yaml: {
                gatewayYAML(
                    $0, primary: [("a", 1_000_000)], fallback: [("b", 1)], providerExtra: ["a": "failure_threshold: 2, failure_cooldown_seconds: 30"],
                    groupExtra: "retries_per_provider: 0", top: "admin_key: admin-key-123\n")
            }
        ) { f in
            for _ in 0..<2 { #expect(try await f.chat().status == 200) }
            let metrics = try await f.request("/metrics", method: "GET").text
            #expect(metrics.contains(#"multiplexer_cooldowns_total{provider="a",reason="failures"} 1"#), "the cooldown the threshold opened is counted")
            let s = try await f.stats("a")
            #expect(s.cooldownReason == .failures)
        }
    }
}

/// Spend where a user looks: the response header, /admin/stats, /metrics (ARCHITECTURE §8, issue 18).
@Suite("Budgets on one node")
struct GatewayBudgetTests {
    static let admin = ["content-type": "application/json", "authorization": "Bearer admin-key-123"]

    @Test func spendIsVisibleInTheHeaderStatsAndMetrics() async throws {
        try await GatewayFixture.with(
            mocks: [.init("a"), .init("b")],
            yaml: {
                gatewayYAML(
                    $0, primary: [("a", 1)], fallback: [("b", 1)],
                    providerExtra: ["a": "pricing: { input_per_mtok: 2, output_per_mtok: 6 }", "b": "pricing: { input_per_mtok: 2, output_per_mtok: 6 }"],
                    top: "admin_key: admin-key-123\nkeys:\n  - { name: team, key: team-key-123, budget: { daily_usd: 0.01 } }\n")
            }
        ) { f in
            let auth = ["content-type": "application/json", "authorization": "Bearer team-key-123"]
            let first = try await f.chat(extra: #","max_tokens":8"#, headers: auth)
            #expect(first.status == 200)
            let left1 = try #require(first.headers["x-multiplexer-budget-remaining-usd"].flatMap(Double.init))
            let second = try await f.chat(extra: #","max_tokens":8"#, headers: auth)
            let left2 = try #require(second.headers["x-multiplexer-budget-remaining-usd"].flatMap(Double.init))
            #expect(left1 < 0.01 && left2 < left1, "\(left1) then \(left2)")
            let stats = try #require(try await f.request("/admin/stats", method: "GET", headers: Self.admin).json)
            let a = try #require(stats["providers"]?.arrayValue?.first { $0["name"] == .string("a") })
            let mock = f.mocks["a"]!.state.counters
            let perRequest = Pricing(inputPerMillionUSD: 2, outputPerMillionUSD: 6).cost(prompt: mock.promptTokens / 2, completion: mock.completionTokens / 2)
            #expect(a["spend"]?["today_micro_usd"]?.intValue == Int(2 * perRequest), "settled to the real cost: \(a)")
            let team = try #require(stats["keys"]?.arrayValue?.first { $0["name"] == .string("team") })
            #expect(team["spend"]?["today_micro_usd"]?.intValue == Int(2 * perRequest))
            let cfgKey = try #require(stats["config"]?["keys"]?.arrayValue?.first)
            #expect(cfgKey["budget"]?["daily_micro_usd"]?.intValue == 10_000)
            let metrics = try await f.request("/metrics", method: "GET").text
            #expect(metrics.contains(#"multiplexer_spend_usd_total{provider="a"}"#) && metrics.contains(#"multiplexer_spend_usd_total{key="team"}"#), "\(metrics.prefix(200))")
        }
    }
}

extension GatewayBudgetTests {
    @Test func aRequestThatCostsMoreThanEveryBudgetIsRefusedUpFront() async throws {
        try await GatewayFixture.with(
            mocks: [.init("a")],
            yaml: {
                gatewayYAML($0, primary: [("a", 1)], providerExtra: ["a": "pricing: { input_per_mtok: 2, output_per_mtok: 6 }, budget: { daily_usd: 0.001 }"])
            }
        ) { f in
            // 1000 output tokens at 6 USD per million: 0.006 USD, over the 0.001 daily budget whatever is spent.
            let r = try await f.chat(extra: #","max_tokens":1000"#)
            #expect(r.status == 400 && r.errorCode == "request_too_large_for_limits", "\(r.text)")
            #expect(f.mocks["a"]!.state.counters.requests == 0)
            #expect(try await f.chat(extra: #","max_tokens":8"#).status == 200)
        }
    }
}
