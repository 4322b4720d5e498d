import Foundation
import MultiplexerCore
import MultiplexerGateway
import Testing

struct ConfigurationTests {
    /// The example of ARCHITECTURE §4, verbatim but for the comment lines.
    static let example = """
        server:
          host: 0.0.0.0
          port: 8080
          node_id: ${HOSTNAME}
          max_body_bytes: 10485760
          header_timeout_seconds: 10
          idle_timeout_seconds: 75
          client_write_timeout_seconds: 30
          max_connections: 10000
          passthrough: [responses, messages, moderations, rerank, images/generations, audio/speech]

        redis:
          url: redis://127.0.0.1:6379/0
          namespace: mux
          timeout_ms: 50
          on_unavailable: local

        providers:
          - name: groq-llama70b
            base_url: https://api.groq.com/openai/v1
            api_key: ${GROQ_API_KEY}
            model: llama-3.3-70b-versatile
            limits:
              rpm: 30
              rpd: 14400
              tpm: 6000
              tpd: 500000
              max_concurrent: 10
            cooldown_seconds: 60
            failure_threshold: 3
            failure_cooldown_seconds: 15
            default_max_tokens: 1024
            context_window: 131072
            connect_timeout_seconds: 5
            timeout_seconds: 120
            ttft_timeout_seconds: 15
            stream_idle_timeout_seconds: 30
            supports_prefill: true
            headers: { X-Extra: value }
          - name: together-llama70b
            base_url: https://api.together.xyz/v1
            api_key: ${TOGETHER_API_KEY:-none}
            model: meta-llama/Llama-3.3-70B-Instruct-Turbo
          - name: openrouter-llama70b
            base_url: https://openrouter.ai/api/v1/
            model: meta-llama/llama-3.3-70b-instruct

        models:
          - name: llama-70b
            aliases: [gpt-4o-mini]
            primary:
              - { provider: groq-llama70b, weight: 5 }
              - { provider: together-llama70b, weight: 3 }
            fallback:
              - { provider: openrouter-llama70b, weight: 1 }
            max_attempts: 4
            retries_per_provider: 1
            tier_wait_ms: 3000
            queue_timeout_ms: 0

        default_model: llama-70b

        keys:
          - name: team-a
            key: ${TEAM_A_KEY}
            limits: { rpm: 600, tpm: 200000 }
            models: [llama-70b]
          - name: team-b
            key_sha256: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08

        admin_key: ${MULTIPLEXER_ADMIN_KEY}

        tracing:
          otlp_endpoint: http://otel-collector:4318
          service_name: multiplexer
          sample_ratio: 1.0
        """

    static let env = ["HOSTNAME": "gw-1", "GROQ_API_KEY": "gsk-secret-1", "TEAM_A_KEY": "team-a-secret", "MULTIPLEXER_ADMIN_KEY": "admin-secret-123"]

    @Test func theArchitectureExampleLoads() throws {
        let c = try ConfigurationLoader.parse(yaml: Self.example, environment: Self.env)
        #expect(c.server.host == "0.0.0.0" && c.server.port == 8080 && c.server.nodeID == "gw-1" && c.server.maxBodyBytes == 10_485_760)
        #expect(c.server.headerTimeout == .seconds(10) && c.server.idleTimeout == .seconds(75) && c.server.clientWriteTimeout == .seconds(30))
        #expect(c.server.maxConnections == 10_000 && c.server.passthrough.count == 6)
        #expect(c.redis == {
            var r = GatewayConfiguration.Redis(topology: .standalone(url: "redis://127.0.0.1:6379/0"))
            r.timeoutMs = 50
            return r
        }())
        #expect(c.providers.count == 3)
        let groq = c.providers[0]
        #expect(groq.apiKey == "gsk-secret-1" && groq.model == "llama-3.3-70b-versatile")
        #expect(groq.limits == ProviderLimits(rpm: 30, rpd: 14400, tpm: 6000, tpd: 500_000, maxConcurrent: 10))
        #expect(groq.cooldown == .seconds(60) && groq.failureCooldown == .seconds(15) && groq.contextWindow == 131_072)
        #expect(groq.timeToFirstTokenTimeout == .seconds(15) && groq.headers == ["X-Extra": "value"])
        #expect(c.providers[1].apiKey == "none", "default from ${VAR:-default}")
        #expect(c.providers[2].baseURL == "https://openrouter.ai/api/v1", "trailing slash dropped")
        let g = c.models[0]
        #expect(g.aliases == ["gpt-4o-mini"] && g.primary.map(\.weight) == [5, 3] && g.fallback.map(\.provider) == ["openrouter-llama70b"])
        #expect(g.tierWait == .milliseconds(3000) && g.queueTimeout == .zero)
        #expect(c.keys[0].secret == .plain("team-a-secret") && c.keys[0].limits == KeyLimits(rpm: 600, tpm: 200_000) && c.keys[0].models == ["llama-70b"])
        #expect(c.keys[1].secret == .sha256("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"))
        #expect(c.adminKey == "admin-secret-123")
        #expect(c.tracing?.tracesURL == "http://otel-collector:4318/v1/traces" && c.tracing?.serviceName == "multiplexer" && c.tracing?.sampleRatio == 1)
        #expect(c.server.logFormat == .text)
        let table = try c.routingTable()
        #expect(table.group(forModel: "gpt-4o-mini")?.name == "llama-70b")
        #expect(table.group(forModel: "placeholder")?.name == "llama-70b")
        #expect(!c.description.contains("secret"))
    }

    @Test func pricingAndBudgetsAreReadAndAKeyBudgetNeedsPricedProviders() throws {
        let c = try ConfigurationLoader.parse(yaml: """
            providers:
              - name: a
                base_url: "http://127.0.0.1:9000/v1"
                model: m
                pricing: { input_per_mtok: 0.59, output_per_mtok: 0.79 }
                budget: { daily_usd: 50 }
            models:
              - { name: m, primary: [{ provider: a }] }
            keys:
              - { name: team, key: team-key-123, budget: { daily_usd: 5, monthly_usd: 100 } }
            """, environment: [:])
        #expect(c.providers[0].pricing == Pricing(inputMicroUSDPerMillion: 590_000, outputMicroUSDPerMillion: 790_000))
        #expect(c.providers[0].limits.dailyBudgetMicroUSD == 50_000_000)
        #expect(c.keys[0].limits.dailyBudgetMicroUSD == 5_000_000 && c.keys[0].limits.monthlyBudgetMicroUSD == 100_000_000)
        #expect {
            try ConfigurationLoader.parse(yaml: """
                providers:
                  - { name: a, base_url: "http://127.0.0.1:9000/v1", model: m, budget: { daily_usd: 1 } }
                  - { name: b, base_url: "http://127.0.0.1:9001/v1", model: m, pricing: { input_per_mtok: -1, output_per_mtok: 1 } }
                models:
                  - { name: m, primary: [{ provider: a }, { provider: b }] }
                keys:
                  - { name: team, key: team-key-123, budget: { daily_usd: 5 } }
                """, environment: [:])
        } throws: { error in
            guard let e = error as? ConfigurationError else { return false }
            let p = e.problems.map(\.description)
            return p.contains { $0.hasPrefix("line 2: ") && $0.contains("providers[0].budget: a budget needs pricing") }
                && p.contains { $0.hasPrefix("line 3: ") && $0.contains("providers[1].pricing.input_per_mtok: must be an amount in USD") }
                && p.contains { $0.hasPrefix("line 7: ") && $0.contains("keys[0].budget: a budget needs pricing on every provider the key may reach; none on: a, b") }
        }
    }

    @Test func aMinimalFileNeedsOnlyProvidersAndModels() throws {
        let c = try ConfigurationLoader.parse(yaml: """
            providers:
              - { name: a, base_url: "http://127.0.0.1:9000/v1", model: m }
            models:
              - { name: m, primary: [{ provider: a }] }
            """, environment: [:])
        #expect(c.redis == nil && c.keys.isEmpty && c.adminKey == nil && c.server.port == 8080)
        #expect(c.models[0].primary == [WeightedProvider(provider: "a", weight: 1)])
    }

    @Test func clientWriteTimeoutDefaultsTo30SecondsAndReportsABadValueWithItsPathAndLine() throws {
        let models = """
            providers:
              - { name: a, base_url: "http://127.0.0.1:9000/v1", model: m }
            models:
              - { name: m, primary: [{ provider: a }] }
            """
        #expect(try ConfigurationLoader.parse(yaml: models, environment: [:]).server.clientWriteTimeout == .seconds(30))
        let set = try ConfigurationLoader.parse(yaml: "server:\n  client_write_timeout_seconds: 2.5\n" + models, environment: [:])
        #expect(set.server.clientWriteTimeout == .milliseconds(2500))
        #expect {
            try ConfigurationLoader.parse(yaml: "server:\n  client_write_timeout_seconds: 0\n" + models, environment: [:])
        } throws: { error in
            guard let e = error as? ConfigurationError else { return false }
            return e.problems.map(\.description).contains { $0.hasPrefix("line 2: ") && $0.contains("server.client_write_timeout_seconds: ") }
        }
    }

    @Test func clientTimeoutsAndTheConnectionCapDefaultAndReportBadValuesWithTheirPathAndLine() throws {
        let models = """
            providers:
              - { name: a, base_url: "http://127.0.0.1:9000/v1", model: m }
            models:
              - { name: m, primary: [{ provider: a }] }
            """
        let d = try ConfigurationLoader.parse(yaml: models, environment: [:]).server
        #expect(d.headerTimeout == .seconds(10) && d.idleTimeout == .seconds(75) && d.maxConnections == 10_000)
        let set = try ConfigurationLoader.parse(
            yaml: "server:\n  header_timeout_seconds: 2.5\n  idle_timeout_seconds: 5\n  max_connections: 3\n" + models, environment: [:]).server
        #expect(set.headerTimeout == .milliseconds(2500) && set.idleTimeout == .seconds(5) && set.maxConnections == 3)
        #expect {
            try ConfigurationLoader.parse(
                yaml: "server:\n  header_timeout_seconds: 0\n  idle_timeout_seconds: forever\n  max_connections: 0\n" + models, environment: [:])
        } throws: { error in
            guard let e = error as? ConfigurationError else { return false }
            let p = e.problems.map(\.description)
            return p.contains { $0.hasPrefix("line 2: ") && $0.contains("server.header_timeout_seconds: ") }
                && p.contains { $0.hasPrefix("line 3: ") && $0.contains("server.idle_timeout_seconds: ") }
                && p.contains { $0.hasPrefix("line 4: ") && $0.contains("server.max_connections: ") }
        }
    }

    @Test func tracingAndTheLogFormatLoadAndReportBadValuesWithTheirPathAndLine() throws {
        let models = """
            providers:
              - { name: a, base_url: "http://127.0.0.1:9000/v1", model: m }
            models:
              - { name: m, primary: [{ provider: a }] }
            """
        let none = try ConfigurationLoader.parse(yaml: models, environment: [:])
        #expect(none.tracing == nil && none.server.logFormat == .text)
        let set = try ConfigurationLoader.parse(
            yaml: "server:\n  log_format: json\n" + models + "\ntracing:\n  otlp_endpoint: https://collector.example:4318/\n  sample_ratio: 0.25\n",
            environment: [:])
        #expect(set.server.logFormat == .json)
        #expect(set.tracing?.tracesURL == "https://collector.example:4318/v1/traces", "a trailing slash is not doubled")
        #expect(set.tracing?.sampleRatio == 0.25 && set.tracing?.serviceName == "multiplexer")
        #expect {
            try ConfigurationLoader.parse(
                yaml: "server:\n  log_format: xml\n" + models + "\ntracing:\n  otlp_endpoint: collector:4318\n  sample_ratio: 2\n  exporter: grpc\n",
                environment: [:])
        } throws: { error in
            guard let e = error as? ConfigurationError else { return false }
            let p = e.problems.map(\.description)
            return p.contains { $0.hasPrefix("line 2: ") && $0.contains("server.log_format: ") }
                && p.contains { $0.hasPrefix("line 8: ") && $0.contains("tracing.otlp_endpoint: must be an http:// or https:// URL") }
                && p.contains { $0.hasPrefix("line 9: ") && $0.contains("tracing.sample_ratio: ") }
                && p.contains { $0.contains("tracing.exporter") }
        }
        #expect {
            try ConfigurationLoader.parse(yaml: models + "\ntracing:\n  service_name: x\n", environment: [:])
        } throws: { error in
            (error as? ConfigurationError)?.problems.map(\.description).contains { $0.contains("tracing.otlp_endpoint: missing required key") } ?? false
        }
    }

    @Test func passthroughListsOperationsAndRefusesAnyOtherShape() throws {
        let models = """
            providers:
              - { name: a, base_url: "http://127.0.0.1:9000/v1", model: m }
            models:
              - { name: m, primary: [{ provider: a }] }
            """
        #expect(try ConfigurationLoader.parse(yaml: models, environment: [:]).server.passthrough.contains("responses"))
        let set = try ConfigurationLoader.parse(yaml: "server:\n  passthrough: [responses, images/generations]\n" + models, environment: [:])
        #expect(set.server.passthrough == ["responses", "images/generations"])
        for bad in ["../admin", "Files", "a//b", "/responses", "x?y"] {
            #expect {
                try ConfigurationLoader.parse(yaml: "server:\n  passthrough: [\"\(bad)\"]\n" + models, environment: [:])
            } throws: { error in
                guard let e = error as? ConfigurationError else { return false }
                return e.problems.map(\.description).contains { $0.hasPrefix("line 2: ") && $0.contains("server.passthrough[0]: ") }
            }
        }
    }

    @Test func forwardClientHeadersIsOffUnlessSetAndReportsABadValueWithItsPathAndLine() throws {
        let c = try ConfigurationLoader.parse(yaml: """
            providers:
              - { name: a, base_url: "http://127.0.0.1:9000/v1", model: m }
              - { name: b, base_url: "http://127.0.0.1:9001/v1", model: m, forward_client_headers: true }
            models:
              - { name: m, primary: [{ provider: a }, { provider: b }] }
            """, environment: [:])
        #expect(c.providers.map(\.forwardClientHeaders) == [false, true])
        #expect {
            try ConfigurationLoader.parse(yaml: """
                providers:
                  - name: a
                    base_url: "http://127.0.0.1:9000/v1"
                    model: m
                    forward_client_headers: sometimes
                models:
                  - { name: m, primary: [{ provider: a }] }
                """, environment: [:])
        } throws: { error in
            guard let e = error as? ConfigurationError else { return false }
            return e.problems.map(\.description).contains { $0.hasPrefix("line 5: ") && $0.contains("providers[0].forward_client_headers: ") }
        }
    }

    @Test func everyProblemIsReportedWithItsPathAndLine() {
        let yaml = """
            server:
              port: 99999
              colour: blue
            redis:
              url: http://nope
              on_unavailable: maybe
            providers:
              - name: Bad_Name
                base_url: ftp://x
                model: m
                limits: { rpm: 0, tpm: lots }
              - name: ok
                base_url: http://127.0.0.1:1/v1
                model: m
                api_key: ${MISSING_VAR}
                timeout_seconds: -1
              - name: ok
                base_url: http://127.0.0.1:2/v1
            models:
              - name: g
                primary:
                  - { provider: ghost, weight: 1 }
                  - { provider: ok, weight: 0 }
                fallback:
                  - { provider: ok, weight: 2 }
              - name: g
                primary: []
            default_model: nothing
            keys:
              - name: k
                key: short
                models: [unknown-model]
            """
        #expect {
            try ConfigurationLoader.parse(yaml: yaml, environment: [:])
        } throws: { error in
            guard let e = error as? ConfigurationError else { return false }
            let lines = e.problems.map(\.description)
            let expected: [(Int, String)] = [
                (2, "server.port: must be between 0 and 65535"),
                (3, "server.colour: unknown key"),
                (5, "redis.url: not a valid redis URL"),
                (6, "redis.on_unavailable: must be 'local' or 'reject'"),
                (8, "providers[0].name: 'Bad_Name' must match"),
                (9, "providers[0].base_url: must be an http:// or https:// URL"),
                (11, "providers[0].limits.rpm: must be between 1"),
                (11, "providers[0].limits.tpm: must be an integer"),
                (15, "providers[1].api_key: environment variable MISSING_VAR is not set"),
                (16, "providers[1].timeout_seconds: must be a number of seconds"),
                (17, "providers[2].model: missing required key"),
                (17, "providers[2].name: duplicate provider name 'ok' (first at line 12)"),
                (22, "models[0].primary[0].provider: unknown provider 'ghost'"),
                (23, "models[0].primary[1].weight: must be a positive integer"),
                (25, "models[0].fallback: provider 'ok' is in both tiers"),
                (26, "model name or alias 'g' is used twice"),
                (27, "models[1].primary: needs at least one provider"),
                (28, "default_model: 'nothing' is not a model group or alias"),
                (31, "keys[0].key: must be at least 8 characters"),
                (32, "keys[0].models[0]: unknown model 'unknown-model'"),
            ]
            for (line, text) in expected where !lines.contains(where: { $0.hasPrefix("line \(line): ") && $0.contains(text) }) {
                Issue.record("missing problem at line \(line): \(text)\nall:\n\(lines.joined(separator: "\n"))")
            }
            return true
        }
    }

    /// A key written twice is reported where it is written the second time (the one most YAML readers silently
    /// keep), with the first one's line: in block and flow mappings, at any depth.
    @Test(arguments: [
        ("server:\n  port: 8080\n  host: 127.0.0.1\n\n  # again\n  port: 9090\n", 6, 2),
        ("providers:\n  - { name: a, base_url: \"http://127.0.0.1:1/v1\", model: m, model: n }\n", 2, 2),
        ("providers:\n  - name: a\n    model: m\n    limits:\n      rpm: 1\n    model: n\n", 6, 3),
        ("providers:\n  - name: a\n    model: m\n  - name: b\n    name: c\n", 5, 4),
    ])
    func aDuplicateKeyIsReportedAtItsSecondOccurrence(yaml: String, line: Int, first: Int) {
        #expect {
            try ConfigurationLoader.parse(yaml: yaml, environment: [:])
        } throws: { error in
            let problems = (error as? ConfigurationError)?.problems ?? []
            let ok = problems.count == 1 && problems[0].line == line && problems[0].message.hasSuffix("(first at line \(first))")
            if !ok { Issue.record("\(problems.map(\.description))") }
            return true
        }
    }

    @Test func yamlSyntaxErrorsNameTheLine() {
        #expect {
            try ConfigurationLoader.parse(yaml: "providers:\n  - name: a\n   bad: [\n", environment: [:])
        } throws: { error in
            let p = (error as? ConfigurationError)?.problems.first
            return p?.line != nil && p!.message.contains("not valid YAML")
        }
    }

    @Test func missingSectionsAndWrongShapesAreErrors() {
        #expect {
            try ConfigurationLoader.parse(yaml: "server: [1, 2]\nkeys: {}\n", environment: [:])
        } throws: { error in
            let d = String(describing: error)
            return d.contains("server: must be a mapping") && d.contains("providers: missing required key") && d.contains("models: missing required key")
                && d.contains("keys: must be a list")
        }
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.parse(yaml: "", environment: [:]) }
    }

    @Test func environmentSubstitution() throws {
        let c = try ConfigurationLoader.parse(yaml: """
            server: { host: "${H:-127.0.0.1}", port: "${P}" }
            providers:
              - { name: a, base_url: "http://${HOST}:9000/v1", model: "$${literal}", api_key: "${EMPTY:-fallback}" }
            models:
              - { name: m, primary: [{ provider: a }] }
            """, environment: ["P": "9090", "HOST": "127.0.0.1", "EMPTY": ""])
        #expect(c.server.host == "127.0.0.1" && c.server.port == 9090)
        #expect(c.providers[0].baseURL == "http://127.0.0.1:9000/v1")
        #expect(c.providers[0].model == "${literal}")
        #expect(c.providers[0].apiKey == "fallback")
    }

    @Test func redisTopologies() throws {
        let base = "providers: [{ name: a, base_url: 'http://127.0.0.1:1', model: m }]\nmodels: [{ name: m, primary: [{ provider: a }] }]\n"
        let s = try ConfigurationLoader.parse(yaml: base + "redis: { sentinels: ['127.0.0.1:26379', 'h:26380'], master_name: mymaster }", environment: [:])
        #expect(s.redis?.topology == .sentinel(sentinels: ["127.0.0.1:26379", "h:26380"], masterName: "mymaster"))
        let c = try ConfigurationLoader.parse(yaml: base + "redis: { cluster: ['127.0.0.1:7000'], namespace: eu-1 }", environment: [:])
        #expect(c.redis?.topology == .cluster(seeds: ["127.0.0.1:7000"]) && c.redis?.namespace == "eu-1")
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.parse(yaml: base + "redis: { url: 'redis://h', cluster: ['h:1'] }", environment: [:])
        }
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.parse(yaml: base + "redis: { sentinels: ['h'] }", environment: [:])
        }
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.parse(yaml: base + "redis: { url: 'redis://h', namespace: '{x}' }", environment: [:])
        }
    }
}

@Suite("Configuration: TLS and stream limits")
struct ProviderTLSConfigurationTests {
    static func provider(_ extra: String, baseURL: String = "https://provider.example/v1") -> String {
        """
        providers:
          - name: p
            base_url: \(baseURL)
            model: m
        \(extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        models:
          - { name: m, primary: [{ provider: p }] }
        """
    }

    @Test func tlsFilesAndMaxEventBytesLoad() throws {
        let ca = FileManager.default.temporaryDirectory.appendingPathComponent("mux-ca-\(UInt32.random(in: 0...UInt32.max)).pem").path
        _ = FileManager.default.createFile(atPath: ca, contents: Data("-----BEGIN CERTIFICATE-----\n".utf8))
        defer { try? FileManager.default.removeItem(atPath: ca) }
        let c = try ConfigurationLoader.parse(
            yaml: Self.provider("max_event_bytes: 65536\ntls:\n  ca_file: \(ca)\n  cert_file: \(ca)\n  key_file: \(ca)"), environment: [:])
        #expect(c.providers[0].tls == TLSOptions(caFile: ca, certFile: ca, keyFile: ca, verify: true))
        #expect(c.providers[0].maxEventBytes == 65536)
        #expect(c.warnings.isEmpty)
        let defaults = try ConfigurationLoader.parse(yaml: Self.provider(""), environment: [:])
        #expect(defaults.providers[0].tls == TLSOptions() && defaults.providers[0].maxEventBytes == 1 << 20)
    }

    @Test func verifyFalseIsAcceptedWithAWarning() throws {
        let c = try ConfigurationLoader.parse(yaml: Self.provider("tls: { verify: false }"), environment: [:])
        #expect(c.providers[0].tls.verify == false)
        #expect(c.warnings.count == 1)
        #expect(c.warnings.first?.path == "providers[0].tls.verify" && c.warnings.first?.line == 5)
        #expect(c.warnings.first?.message.contains("verification is off") == true)
    }

    @Test func badTLSSettingsAreErrorsWithTheirPaths() {
        let yaml = Self.provider("max_event_bytes: 10\ntls:\n  ca_file: /nonexistent/ca.pem\n  key_file: /nonexistent/k.pem\n  verify: maybe\n  pin: x")
        do {
            _ = try ConfigurationLoader.parse(yaml: yaml, environment: [:])
            Issue.record("accepted")
        } catch {
            let paths = Set(error.problems.map(\.path))
            #expect(paths.isSuperset(of: ["providers[0].max_event_bytes", "providers[0].tls.ca_file", "providers[0].tls.key_file", "providers[0].tls.verify", "providers[0].tls.pin"]), "\(error)")
            #expect(error.problems.allSatisfy { $0.line != nil })
        }
        do {
            _ = try ConfigurationLoader.parse(yaml: Self.provider("tls: { verify: true }", baseURL: "http://127.0.0.1:1/v1"), environment: [:])
            Issue.record("tls on http:// accepted")
        } catch {
            #expect(error.problems.map(\.path) == ["providers[0].tls"])
        }
    }
}
