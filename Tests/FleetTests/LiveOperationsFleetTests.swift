import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import MultiplexerUpstream
import Testing

/// Live operations on real processes (ARCHITECTURE §4 Reload, §6 `/admin/reload` and `/admin/keys`): a
/// configuration reloaded under load, a broken one refused, run-time client keys across two nodes.
@Suite("Live operations (fleet)")
struct LiveOperationsFleetTests {
    static func adminHeaders(_ fleet: LocalFleet) -> UpstreamHeaders { ["Authorization": "Bearer \(fleet.plan.adminKey)"] }

    /// The configuration file of `plan` (with the fleet's mocks and Redis).
    static func yaml(_ fleet: LocalFleet, _ plan: FleetPlan) -> String {
        plan.configurationYAML(mockPorts: fleet.mockPorts, redisURL: fleet.redis?.url)
    }

    static func write(_ text: String, to path: String) throws {
        // Replace by rename, as editors and ConfigMap updates do.
        try text.write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
        _ = rename(path + ".tmp", path)
    }

    static func models(_ fleet: LocalFleet, node: Int = 0) async -> String {
        await fleet.http.get(fleet.nodes[node].url + "/v1/models")?.body ?? ""
    }

    @Test func aReloadUnderLoadDropsNothingAndABrokenOneIsRefused() async throws {
        var a = FleetPlan.Provider(name: "a", limits: .init(rpm: 600), latency: .milliseconds(20))
        // A stream lasts 3 s: one is in flight across every reload below.
        a.mock = {
            $0.streamChunks = 30
            $0.tokenInterval = .milliseconds(100)
        }
        var plan = fleetPlan([a, .init(name: "b", tier: .fallback, latency: .milliseconds(20))], nodes: 1)
        plan.nginx = false
        plan.serveArguments = ["--watch"]
        try await LocalFleet.run(plan) { [plan] fleet in
            let node = fleet.nodes[0].url
            async let stream: (status: Int, body: String, headers: UpstreamHeaders)? = fleet.http.post(
                node + "/v1/chat/completions",
                json: #"{"model":"\#(plan.model)","stream":true,"messages":[{"role":"user","content":"a long answer please"}]}"#, timeout: .seconds(30))
            async let load = LoadGenerator(client: fleet.client, targets: [node], model: plan.model).run(total: 120, concurrency: 4, spacing: .milliseconds(40))

            try await Task.sleep(for: .milliseconds(500))
            // 1. SIGHUP after a rewrite: a new alias and a new weight.
            var next = plan
            next.groupSettings = ["aliases: [renamed-alias]"]
            next.providers[0].weight = 5
            try Self.write(Self.yaml(fleet, next), to: fleet.configPath)
            fleet.signal(node: 0, SIGHUP)
            #expect(await fleet.eventually(within: .seconds(2)) { await Self.models(fleet).contains("renamed-alias") }, "the reload took effect")

            // 2. A broken file is refused by /admin/reload with every error, and the running configuration stays.
            let broken = Self.yaml(fleet, next).replacingOccurrences(of: "    model: mock-a\n", with: "    model: mock-a\n    colour: blue\n    default_max_tokens: lots\n")
            try Self.write(broken, to: fleet.configPath)
            let refused = try #require(await fleet.http.post(node + "/admin/reload", json: "{}", headers: Self.adminHeaders(fleet)))
            #expect(refused.status == 400, "\(refused.body)")
            let errors = try JSONParser.parse(Array(refused.body.utf8)).value["errors"]?.arrayValue ?? []
            #expect(errors.count >= 2, "every error: \(refused.body)")
            #expect(errors.allSatisfy { $0["path"]?.stringValue?.hasPrefix("providers[0].") == true && $0["line"]?.intValue != nil }, "key path and line: \(refused.body)")
            #expect(await Self.models(fleet).contains("renamed-alias"), "the running configuration stayed")

            // 3. --watch: a fixed file is picked up on its own within 2 s, without a signal.
            var third = next
            third.groupSettings = ["aliases: [watched-alias]"]
            let before = ContinuousClock.now
            try Self.write(Self.yaml(fleet, third), to: fleet.configPath)
            #expect(await fleet.eventually(within: .seconds(2)) { await Self.models(fleet).contains("watched-alias") }, "the watcher reloaded")
            print("watch: reload seen \(before.duration(to: .now)) after the write")

            // 4. A change that needs a restart is said, not applied.
            var fourth = third
            fourth.serverSettings = ["max_connections: 5000"]
            try Self.write(Self.yaml(fleet, fourth), to: fleet.configPath)
            try await Task.sleep(for: .milliseconds(1200))
            let restart = try #require(await fleet.http.post(node + "/admin/reload", json: "{}", headers: Self.adminHeaders(fleet)))
            #expect(restart.status == 200 && restart.body.contains(#""restart_required":["server.max_connections"]"#), "\(restart.body)")

            let results = await load
            #expect(results.statuses == [200: 120], "nothing dropped across the reloads: \(results.statuses)")
            let s = try #require(await stream)
            #expect(s.status == 200 && s.body.hasSuffix("data: [DONE]\n\n"), "the stream in flight finished on the configuration that admitted it")
            let log = (try? String(contentsOfFile: fleet.directory + "/gw-1.log", encoding: .utf8)) ?? ""
            #expect(log.contains("configuration reloaded") && log.contains("configuration reload refused"), "reloads are logged")
            fleet.expectNoOvershoot()
        }
    }

    @Test func runtimeKeysHoldOnEveryNodeAndRevocationIsFleetWide() async throws {
        var plan = fleetPlan([.init(name: "a", latency: .milliseconds(5))], nodes: 2)
        plan.nginx = false
        // Run-time keys only: no key, no access — also once every run-time key is revoked.
        plan.extraYAML = "keys: []\n"
        try await LocalFleet.run(plan) { [plan] fleet in
            let (n1, n2) = (fleet.nodes[0].url, fleet.nodes[1].url)
            #expect(await fleet.chat(n1)?.status == 401)

            let created = try #require(
                await fleet.http.post(n1 + "/admin/keys", json: #"{"name":"team-x","limits":{"rpm":3},"models":["\#(plan.model)"]}"#, headers: Self.adminHeaders(fleet)))
            #expect(created.status == 201, "\(created.body)")
            let secret = try #require(try JSONParser.parse(Array(created.body.utf8)).value["key"]?.stringValue)
            let auth: UpstreamHeaders = ["Authorization": "Bearer \(secret)"]
            @Sendable func chat(_ url: String) async -> Int {
                await fleet.http.post(url + "/v1/chat/completions", json: LoadGenerator.bodyText(model: plan.model, index: 1), headers: auth)?.status ?? 0
            }
            // Usable on the other node at once (within the sync interval).
            let t0 = ContinuousClock.now
            let usable = await fleet.eventually(within: .seconds(1)) { await chat(n2) == 200 }
            #expect(usable, "the key works on the other node within a second")
            print("run-time key: usable on the other node after \(t0.duration(to: .now))")
            // Its limit is fleet-wide: 3 per minute over both nodes.
            #expect(await chat(n1) == 200)
            #expect(await chat(n2) == 200)
            #expect(await chat(n1) == 429)
            #expect(await chat(n2) == 429)
            // Anonymous and wrong keys are refused.
            #expect(await fleet.chat(n1)?.status == 401)
            #expect(await fleet.http.post(n2 + "/v1/chat/completions", json: LoadGenerator.bodyText(model: plan.model, index: 1), headers: ["Authorization": "Bearer mx-wrong"])?.status == 401)

            // Redis holds no secret: only its SHA-256.
            let dump = try await fleet.redisCLI(["--scan", "--pattern", "\(fleet.keyPrefix):vkey*"])
            #expect(dump.contains(SHA256Hex.of(secret)) && !dump.contains(secret))
            let hash = try await fleet.redisCLI(["HGETALL", "\(fleet.keyPrefix):vkey:\(SHA256Hex.of(secret))"])
            #expect(hash.contains("team-x") && !hash.contains(secret))

            // The CLI lists it without the secret; a name is unique.
            let listed = try await fleet.runBinary(["keys", "list", "--redis", fleet.redis!.url, "--namespace", plan.namespace])
            #expect(listed.status == 0 && listed.output.contains("team-x") && !listed.output.contains(secret))
            let dup = try #require(await fleet.http.post(n2 + "/admin/keys", json: #"{"name":"team-x"}"#, headers: Self.adminHeaders(fleet)))
            #expect(dup.status == 409)

            // A key created by the CLI works at once too.
            let cli = try await fleet.runBinary(["keys", "create", "cli-key", "--rpm", "100", "--redis", fleet.redis!.url, "--namespace", plan.namespace])
            let cliSecret = String(cli.output.split(separator: "\n").first ?? "")
            #expect(cli.status == 0 && cliSecret.hasPrefix("mx-"), "\(cli.output)")
            #expect(await fleet.eventually(within: .seconds(1)) {
                await fleet.http.post(n1 + "/v1/chat/completions", json: LoadGenerator.bodyText(model: plan.model, index: 2), headers: ["Authorization": "Bearer \(cliSecret)"])?.status == 200
            })

            // Revoked on one node (by the CLI), refused on both within a second.
            let revoked = try await fleet.runBinary(["keys", "revoke", "cli-key", "--redis", fleet.redis!.url, "--namespace", plan.namespace])
            #expect(revoked.status == 0)
            let t1 = ContinuousClock.now
            for url in [n1, n2] {
                #expect(await fleet.eventually(within: .seconds(1)) {
                    await fleet.http.post(url + "/v1/chat/completions", json: LoadGenerator.bodyText(model: plan.model, index: 3), headers: ["Authorization": "Bearer \(cliSecret)"])?.status == 401
                }, "revocation reached \(url) within a second")
            }
            print("run-time key: refused on both nodes \(t1.duration(to: .now)) after the revocation")
            // Through the admin API as well.
            var del = UpstreamHTTPRequest(method: "DELETE", url: n2 + "/admin/keys/team-x", timeouts: .init(connect: .seconds(2), response: .seconds(5)))
            del.headers = Self.adminHeaders(fleet)
            #expect(try await fleet.client.execute(del).status == 200)
            #expect(await fleet.eventually(within: .seconds(1)) { await chat(n1) == 401 })
            fleet.expectNoOvershoot()
        }
    }
}

/// SHA-256 in hex, for the tests (the gateway's own implementation is internal).
enum SHA256Hex {
    static func of(_ s: String) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["sha256sum"]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try? p.run()
        input.fileHandleForWriting.write(Data(s.utf8))
        try? input.fileHandleForWriting.close()
        p.waitUntilExit()
        return String(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(64))
    }
}
