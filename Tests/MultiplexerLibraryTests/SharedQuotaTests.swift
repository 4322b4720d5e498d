import Foundation
import Multiplexer
import MultiplexerCore
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import MultiplexerUpstream
import Testing

/// A gateway process (`multiplexer serve`) and the library in this process on one Redis namespace share a
/// provider's limit: together they never send it more than its rpm, and both keep succeeding through the
/// other provider.
@Suite("Library and gateway share quotas", .serialized)
struct SharedQuotaTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let rpm = 6

    @Test func aProvidersLimitHoldsAcrossTheGatewayAndTheLibrary() async throws {
        let redis = try RedisServer()
        let namespace = "lib\(UInt32.random(in: 0...UInt32.max))"
        try await MockProviders.with([.init("shared") { $0.rpm = Self.rpm }, .init("other")]) { m in
            let gatewayPort = LocalPorts.free()
            let config = NSTemporaryDirectory() + "mux-lib-\(namespace).yaml"
            try """
                server: { host: 127.0.0.1, port: \(gatewayPort), node_id: gw-1 }
                redis: { url: "\(redis.url)", namespace: \(namespace) }
                providers:
                  - { name: shared, base_url: "\(m.url("shared"))", api_key: sk-shared, model: upstream-shared, limits: { rpm: \(Self.rpm) } }
                  - { name: other, base_url: "\(m.url("other"))", api_key: sk-other, model: upstream-other }
                models:
                  - name: m
                    primary: [{ provider: shared, weight: 1 }]
                    fallback: [{ provider: other, weight: 1 }]
                    tier_wait_ms: 0
                """.write(toFile: config, atomically: true, encoding: .utf8)
            let binary = Self.packageRoot.appendingPathComponent(".build/debug/multiplexer").path
            let gateway = try ManagedProcess(
                name: "gateway", executable: binary, arguments: ["serve", "--config", config], logPath: config + ".log")
            defer { gateway.stop() }

            try await CurlClient.withClient { http in
                let base = "http://127.0.0.1:\(gatewayPort)"
                let ready = await eventually(timeout: .seconds(20)) {
                    (try? await http.execute(.init(method: "GET", url: base + "/readyz", timeouts: .init(connect: .seconds(1), response: .seconds(1)))).status) == 200
                }
                try #require(ready, "the gateway did not become ready: \((try? String(contentsOfFile: config + ".log", encoding: .utf8)) ?? "")")

                /// One chat through the gateway: the provider that served it.
                @Sendable func viaGateway() async throws -> String {
                    var h = UpstreamHeaders()
                    h.add(name: "content-type", value: "application/json")
                    let r = try await http.execute(.init(
                        method: "POST", url: base + "/v1/chat/completions", headers: h,
                        body: Array(#"{"model":"m","messages":[{"role":"user","content":"hello from the gateway"}]}"#.utf8),
                        timeouts: .init(connect: .seconds(2), response: .seconds(10))))
                    #expect(r.status == 200, "\(String(decoding: r.body, as: UTF8.self))")
                    return r.headers["x-multiplexer-provider"] ?? "?"
                }

                try await Multiplexer.withMultiplexer(
                    store: try .redis(url: redis.url, namespace: namespace, nodeID: "lib-1", commandTimeout: .milliseconds(200)),
                    configuration: .init(tierWait: .zero)
                ) { mux in
                    try mux.addModel(
                        OpenAICompatibleEndpoint(baseURL: m.url("shared"), apiKey: "sk-shared", model: "upstream-shared", limits: .init(rpm: Self.rpm)),
                        weight: 1, modelName: "shared")
                    try mux.addFallbackModel(OpenAICompatibleEndpoint(baseURL: m.url("other"), apiKey: "sk-other", model: "upstream-other"), weight: 1, modelName: "other")

                    // 1. The library alone takes 4 of the 6.
                    var library: [String] = []
                    for _ in 0..<4 { library.append(try await ask(mux).servedBy ?? "?") }
                    #expect(library == ["shared", "shared", "shared", "shared"])

                    // 2. Both at once: the 2 left go to whoever asks first, the rest to the other provider.
                    var gatewayServed: [String] = []
                    try await withThrowingTaskGroup(of: (Bool, String).self) { group in
                        for _ in 0..<5 {
                            group.addTask { (true, try await ask(mux).servedBy ?? "?") }
                            group.addTask { (false, try await viaGateway()) }
                        }
                        for try await (isLibrary, name) in group {
                            if isLibrary { library.append(name) } else { gatewayServed.append(name) }
                        }
                    }
                    // 3. Both again, one after the other: the shared limit is used up for everyone.
                    for _ in 0..<3 {
                        library.append(try await ask(mux).servedBy ?? "?")
                        gatewayServed.append(try await viaGateway())
                    }

                    #expect(library.count == 12 && gatewayServed.count == 8)
                    let sharedServed = library.filter { $0 == "shared" }.count + gatewayServed.filter { $0 == "shared" }.count
                    #expect(sharedServed == Self.rpm, "library \(library), gateway \(gatewayServed)")
                    #expect(m.counters("shared").served == Self.rpm)
                    #expect(m.counters("shared").overshoot == 0)
                    #expect(m.counters("other").served == 20 - Self.rpm)

                    // The counters are the fleet's: the library sees the gateway's attempts too.
                    let stats = try await mux.stats()
                    #expect(stats["shared"] == SeedStats(success: Self.rpm, rateLimited: 0, failed: 0))
                    #expect(stats["other"]?.success == 20 - Self.rpm)
                    let fleet = try await mux.fleetStats()
                    #expect(fleet.providers.first { $0.name == "shared" }?.window.rpm == Self.rpm)
                    #expect(Set(fleet.nodes.map(\.id)).isSuperset(of: ["gw-1", "lib-1"]))
                }
            }
        }
    }
}
