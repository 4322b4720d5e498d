import Foundation
import MultiplexerCore
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerUpstream
import Testing

/// Every route of ARCHITECTURE §6 through a live gateway, with real mock providers and a real client.
@Suite("Gateway routes")
struct GatewayRouteTests {
    static let two = [GatewayFixture.MockSpec("a"), GatewayFixture.MockSpec("b")]

    @Test func chatCompletionsAreRoutedWithTheProvidersModelAndRelayedUnchanged() async throws {
        try await GatewayFixture.with(mocks: Self.two, yaml: { gatewayYAML($0, primary: [("a", 1)], fallback: [("b", 1)]) }) { f in
            let r = try await f.chat("gpt-4o-mini", extra: #","temperature":0.25,"x_custom":{"keep":true}"#)
            #expect(r.status == 200)
            #expect(r.json?["model"] == .string("upstream-a"), "the upstream's model is relayed unchanged")
            #expect(r.headers["x-multiplexer-provider"] == "a" && r.headers["x-multiplexer-attempts"] == "1")
            #expect(r.headers["x-request-id"]?.hasPrefix("req-") == true)
            #expect(f.mocks["a"]!.state.counters.served == 1)
            let s = try await f.stats("a")
            #expect(s.usage.success == 1 && s.usage.completionTokens == 8)
        }
    }

    @Test(arguments: [
        ("completions", #"{"model":"m","prompt":"say something","max_tokens":3}"#, "text_completion"),
        ("embeddings", #"{"model":"m","input":["one","two"]}"#, "list"),
        ("systemone", #"{"model":"m","state":{},"questions":{"q":"?"}}"#, "chat.completion"),
    ])
    func otherOperationsAreRoutedToo(_ operation: String, _ body: String, _ object: String) async throws {
        // An operation outside chat/completions, completions and embeddings is routed once `server.passthrough` lists it.
        let yaml: @Sendable ([String: Int]) -> String = {
            gatewayYAML($0, primary: [("a", 1)]).replacingOccurrences(
                of: "server: { host: 127.0.0.1, port: 0 }", with: "server: { host: 127.0.0.1, port: 0, passthrough: [systemone, responses] }")
        }
        try await GatewayFixture.with(mocks: Self.two, yaml: yaml) { f in
            let r = try await f.request("/v1/\(operation)", body: body)
            #expect(r.status == 200, "\(r.text)")
            #expect(r.json?["object"] == .string(object))
            #expect(r.json?["model"] == .string("upstream-a"))
        }
    }

    @Test func modelsHealthReadinessAndMetrics() async throws {
        try await GatewayFixture.with(mocks: Self.two, yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            let models = try await f.request("/v1/models", method: "GET")
            #expect(models.json?["object"] == .string("list"))
            #expect(models.json?["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == ["m", "gpt-4o-mini"])
            #expect(try await f.request("/healthz", method: "GET").status == 200)
            let ready = try await f.request("/readyz", method: "GET")
            #expect(ready.status == 200 && ready.json?["status"] == .string("ready"))
            _ = try await f.chat()
            let metrics = try await f.request("/metrics", method: "GET").text
            #expect(metrics.contains(#"multiplexer_requests_total{model="m",provider="a",status="200"} 1"#))
            #expect(metrics.contains("multiplexer_upstream_latency_seconds_bucket"))
            #expect(metrics.contains("multiplexer_store_admission_duration_seconds_count 1"))
            #expect(!metrics.contains("sk-test"), "no secret in metrics")
        }
    }

    @Test func adminRoutesNeedTheAdminKey() async throws {
        try await GatewayFixture.with(mocks: Self.two, yaml: { gatewayYAML($0, primary: [("a", 1)], fallback: [("b", 1)], top: "admin_key: admin-key-123\n") }) { f in
            let admin = ["authorization": "Bearer admin-key-123", "content-type": "application/json"]
            #expect(try await f.request("/admin/stats", method: "GET").status == 401)
            #expect(try await f.request("/admin/stats", method: "GET", headers: ["authorization": "Bearer nope"]).status == 401)
            let set = try await f.request("/admin/providers/a/cooldown", body: #"{"seconds": 30}"#, headers: admin)
            #expect(set.status == 200 && set.json?["cooldown_ms"]?.intValue == 30_000)
            #expect(try await f.chat().headers["x-multiplexer-provider"] == "b", "a cools down fleet-wide")
            let stats = try await f.request("/admin/stats", method: "GET", headers: admin)
            let a = stats.json?["providers"]?.arrayValue?.first { $0["name"] == .string("a") }
            #expect(a?["cooldown_reason"] == .string("manual"))
            #expect(!stats.text.contains("sk-test"))
            // The document's shape (docs/observability.md): absent values are null, never missing; windows,
            // usage and spend per provider; the configuration the dashboard draws against.
            let b = stats.json?["providers"]?.arrayValue?.first { $0["name"] == .string("b") }
            #expect(b?["cooldown_ms"] == .null && b?["cooldown_reason"] == .null && b?["disabled"] == .bool(false))
            #expect(b?["window"]?["in_flight"]?.intValue == 0 && b?["usage"]?["rate_limited"]?.intValue == 0)
            #expect(b?["spend"]?["today_micro_usd"]?.intValue == 0)
            #expect(stats.json?["store"] != nil && stats.json?["generation"]?.intValue != nil && stats.json?["recent_errors"]?.arrayValue != nil)
            let configured = stats.json?["config"]?["providers"]?.arrayValue?.first { $0["name"] == .string("a") }
            #expect(configured?["tiers"]?.arrayValue?.isEmpty == false && configured?["pricing"] == .null && configured?["budget"] == .null)
            #expect(try await f.request("/admin/providers/a/cooldown", method: "DELETE", headers: admin).status == 200)
            #expect(try await f.chat().headers["x-multiplexer-provider"] == "a")
            #expect(try await f.request("/admin/providers/ghost/cooldown", body: #"{"seconds": 3}"#, headers: admin).status == 404)
            #expect(try await f.request("/admin/providers/a/cooldown", body: #"{"seconds": -3}"#, headers: admin).status == 400)
        }
        // Without an admin key the admin API is off.
        try await GatewayFixture.with(mocks: Self.two, yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            let r = try await f.request("/admin/stats", method: "GET", headers: ["authorization": "Bearer x"])
            #expect(r.status == 404)
        }
    }
}

/// Every error code of ARCHITECTURE §6, and that bad input consumes no quota.
@Suite("Gateway errors")
struct GatewayErrorTests {
    static let one = [GatewayFixture.MockSpec("a")]

    @Test func badRequestsAreRejectedBeforeAnyQuotaIsUsed() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: { gatewayYAML($0, primary: [("a", 1)], providerExtra: ["a": "limits: { rpm: 100, tpm: 100000 }"]) }) { f in
            let cases: [(String, [String: String], Int, String?)] = [
                ("not json", ["content-type": "application/json"], 400, nil),
                (#"{"model": 7, "messages": [{"role":"user","content":"x"}]}"#, ["content-type": "application/json"], 400, nil),
                (#"{"model": "m"}"#, ["content-type": "application/json"], 400, nil),
                (#"{"model": "m", "messages": [{"role":"user","content":"x"}], "max_tokens": "9"}"#, ["content-type": "application/json"], 400, nil),
                (#"{"model": "m", "messages": [{"role":"user","content":"x"}]}"#, ["content-type": "text/plain"], 400, nil),
                (#"{"model": "nope", "messages": [{"role":"user","content":"x"}]}"#, ["content-type": "application/json"], 404, "model_not_found"),
            ]
            for (body, headers, status, code) in cases {
                let r = try await f.request("/v1/chat/completions", body: body, headers: headers)
                #expect(r.status == status, "\(body): \(r.text)")
                #expect(r.json?["error"]?["type"] == .string("invalid_request_error"), "\(r.text)")
                if let code { #expect(r.errorCode == code) }
                #expect(r.headers["x-request-id"] != nil && r.headers["x-multiplexer-attempts"] == "0")
            }
            let big = try await f.request("/v1/chat/completions", body: String(repeating: "x", count: 10_485_761))
            #expect(big.status == 413 && big.errorCode == "request_too_large")
            let s = try await f.stats("a")
            #expect(s.window.rpm == 0 && s.window.tpm == 0 && s.window.inFlight == 0 && s.usage.requests == 0)
            #expect(f.mocks["a"]!.state.counters.requests == 0)
        }
    }

    @Test func clientKeysAuthenticateLimitAndRestrictModels() async throws {
        let keys = """
            keys:
              - { name: team-a, key: key-of-team-a, limits: { rpm: 2, tpm: 100000 } }
              - { name: team-b, key: key-of-team-b, models: [other] }

            """
        let yaml: @Sendable ([String: Int]) -> String = { ports in
            gatewayYAML(ports, primary: [("a", 1)], top: keys).replacingOccurrences(
                of: "models:\n", with: "models:\n  - { name: other, primary: [{ provider: a, weight: 1 }] }\n")
        }
        try await GatewayFixture.with(mocks: Self.one, yaml: yaml) { f in
            #expect(try await f.chat().status == 401)
            #expect(try await f.chat(headers: ["authorization": "Bearer wrong-key-x"]).errorCode == "invalid_api_key")
            let ok = try await f.chat(headers: ["authorization": "Bearer key-of-team-a"])
            #expect(ok.status == 200)
            #expect(ok.headers["x-ratelimit-limit-requests"] == "2" && ok.headers["x-ratelimit-limit-tokens"] == "100000")
            #expect(ok.headers["x-ratelimit-remaining-requests"] == "1")
            #expect(Int(ok.headers["x-ratelimit-remaining-tokens"] ?? "") ?? 0 > 98_000)
            #expect(try await f.chat(headers: ["api-key": "key-of-team-a"]).status == 200)
            let limited = try await f.chat(headers: ["authorization": "Bearer key-of-team-a"])
            #expect(limited.status == 429 && limited.errorCode == "rate_limit_exceeded")
            #expect(Int(limited.headers["retry-after"] ?? "") ?? 0 > 50)
            #expect(f.mocks["a"]!.state.counters.requests == 2, "the key's limit stopped the third before any provider")
            let denied = try await f.chat(headers: ["authorization": "Bearer key-of-team-b"])
            #expect(denied.status == 403 && denied.errorCode == "model_not_allowed")
            #expect(try await f.chat("other", headers: ["authorization": "Bearer key-of-team-b"]).status == 200)
            let models = try await f.request("/v1/models", method: "GET", headers: ["authorization": "Bearer key-of-team-b"])
            #expect(models.json?["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == ["other"])
        }
    }

    @Test func exhaustedProvidersAnswer429WithRetryAfter() async throws {
        try await GatewayFixture.with(
            mocks: Self.one, yaml: { gatewayYAML($0, primary: [("a", 1)], providerExtra: ["a": "limits: { rpm: 2 }"], groupExtra: "tier_wait_ms: 0") }
        ) { f in
            #expect(try await f.chat().status == 200)
            #expect(try await f.chat().status == 200)
            let r = try await f.chat()
            #expect(r.status == 429 && r.json?["error"]?["type"] == .string("rate_limit_error"))
            let ra = Int(r.headers["retry-after"] ?? "") ?? 0
            #expect(ra >= 55 && ra <= 60)
            #expect(f.mocks["a"]!.state.counters.overshoot == 0)
        }
    }

    @Test(arguments: [("500", 502, "upstream_error"), ("503", 503, "upstream_error"), ("hang", 504, "upstream_timeout"), ("reset", 502, "upstream_error")])
    func failingProvidersMapTo5xx(_ mode: String, _ status: Int, _ code: String) async throws {
        let specs = [GatewayFixture.MockSpec("a") { $0.mode = MockProvider.Mode(rawValue: mode)! }]
        try await GatewayFixture.with(
            mocks: specs,
            yaml: { gatewayYAML($0, primary: [("a", 1)], providerExtra: ["a": "timeout_seconds: \(mode == "hang" ? "0.5" : "3"), failure_threshold: 100"], groupExtra: "retries_per_provider: 0") }
        ) { f in
            let r = try await f.chat()
            #expect(r.status == status, "\(r.text)")
            #expect(r.errorCode == code)
            #expect(r.json?["error"]?["type"] == .string("api_error"))
            // Settled at once; a broken attempt's slot (timeout, reset: the provider may still be on it)
            // stays taken for the 1 s release grace.
            let settled = try await GatewayFixture.eventually(timeout: .seconds(3)) { try await f.stats("a").window.inFlight == 0 }
            #expect(settled, "the reservation was settled")
        }
    }

    @Test func aProviderThatEchoesItsKeyNeverLeaksIt() async throws {
        let specs = [GatewayFixture.MockSpec("a") { $0.mode = .unauthorized }, GatewayFixture.MockSpec("b")]
        try await GatewayFixture.with(mocks: specs, yaml: { gatewayYAML($0, primary: [("a", 1000)], fallback: [("b", 1)]) }) { f in
            let r = try await f.chat()
            #expect(r.status == 200 && r.headers["x-multiplexer-provider"] == "b", "401 from a provider cools it down; the next serves")
            #expect(try await f.stats("a").cooldownReason == .unauthorized)
            #expect(!r.text.contains("sk-test"))
        }
        try await GatewayFixture.with(mocks: [GatewayFixture.MockSpec("a") { $0.mode = .unauthorized }], yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            let r = try await f.chat()
            #expect(r.status == 502)
            #expect(!r.text.contains("sk-test-a-secret"), "\(r.text)")
        }
    }

    @Test func upstreamRateLimitsCoolDownAndFailOver() async throws {
        let specs = [GatewayFixture.MockSpec("a") { $0.mode = .rateLimited; $0.retryAfter = 30 }, GatewayFixture.MockSpec("b")]
        try await GatewayFixture.with(mocks: specs, yaml: { gatewayYAML($0, primary: [("a", 1000), ("b", 1)]) }) { f in
            let r = try await f.chat()
            #expect(r.status == 200 && r.headers["x-multiplexer-provider"] == "b" && r.headers["x-multiplexer-attempts"] == "2")
            let s = try await f.stats("a")
            #expect(s.cooldownReason == .rateLimited && (s.cooldownRemaining ?? .zero) > .seconds(28))
            for _ in 0..<5 { _ = try await f.chat() }
            #expect(f.mocks["a"]!.state.counters.requests == 1, "nobody asks a provider that is cooling down")
        }
    }
}
