import Foundation
import Hummingbird
import Logging
import MultiplexerCore
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerRedis
import MultiplexerProcesses
import MultiplexerTestSupport
import MultiplexerUpstream
import ServiceLifecycle
import Synchronization
import Testing

/// A gateway and its mock providers, all running in this process on loopback ports, and a real
/// libcurl client to call the gateway with.
struct GatewayFixture: Sendable {
    let gatewayPort: Int
    let mocks: [String: MockProvider]
    let mockPorts: [String: Int]
    let gateway: Gateway
    let client: CurlClient

    var base: String { "http://127.0.0.1:\(self.gatewayPort)" }

    /// One mock provider to start.
    struct MockSpec: Sendable {
        var name: String
        var configuration = MockProvider.Configuration()
        init(_ name: String, _ configure: (inout MockProvider.Configuration) -> Void = { _ in }) {
            self.name = name
            configure(&self.configuration)
        }
    }

    /// Starts the mocks, then a gateway whose configuration `yaml(ports)` renders, runs `body`, and stops everything.
    static func with(
        mocks specs: [MockSpec], store: (any QuotaStore)? = nil, yaml: @Sendable ([String: Int]) -> String,
        _ body: @Sendable (GatewayFixture) async throws -> Void
    ) async throws {
        let mocks = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, MockProvider(configuration: $0.configuration)) })
        let upstreams = mocks.mapValues { mock in { @Sendable (onRunning: @escaping @Sendable (Int) async -> Void) -> any Service in mock.buildApplication(onServerRunning: onRunning) } }
        try await Self.with(upstreams: upstreams, mocks: mocks, store: store, yaml: yaml, body)
    }

    /// Starts one upstream server per name (each made from the callback that reports its port), then a gateway
    /// whose configuration `yaml(ports)` renders, runs `body`, and stops everything.
    static func with(
        upstreams: [String: @Sendable (@escaping @Sendable (Int) async -> Void) -> any Service], mocks: [String: MockProvider] = [:],
        store: (any QuotaStore)? = nil, logLevel: Logger.Level = .warning, yaml: @Sendable ([String: Int]) -> String,
        _ body: @Sendable (GatewayFixture) async throws -> Void
    ) async throws {
        let client = try CurlClient()
        let (ports, portsContinuation) = AsyncStream.makeStream(of: (String, Int).self)
        let apps: [any Service] = upstreams.map { name, make in make { port in portsContinuation.yield((name, port)) } }
        try await withServicesRunning(apps) {
            var upstreamPorts: [String: Int] = [:]
            for await (name, port) in ports {
                upstreamPorts[name] = port
                if upstreamPorts.count == upstreams.count { break }
            }
            let configuration = try ConfigurationLoader.parse(yaml: yaml(upstreamPorts), environment: [:])
            var logger = Logger(label: "gateway-test")
            logger.logLevel = logLevel
            let gateway = try Gateway(configuration: configuration, client: client, logger: logger, store: store)
            let (gwPort, gwContinuation) = AsyncStream.makeStream(of: Int.self)
            // The gateway's application runs the client's loop and the store's background work as its services.
            let app = buildApplication(gateway: gateway, client: client, onServerRunning: { gwContinuation.yield($0) })
            try await withServicesRunning([app]) {
                var port = 0
                for await p in gwPort {
                    port = p
                    break
                }
                try await body(GatewayFixture(gatewayPort: port, mocks: mocks, mockPorts: upstreamPorts, gateway: gateway, client: client))
            }
            client.shutdown()
        }
    }

    /// A response as the test sees it.
    struct Reply: Sendable {
        var status: Int
        var headers: UpstreamHeaders
        var body: [UInt8]
        var text: String { String(decoding: self.body, as: UTF8.self) }
        var json: JSONValue? { try? JSONParser.parse(self.body).value }
        var errorCode: String? { self.json?["error"]?["code"]?.stringValue }
    }

    func request(
        _ path: String, method: String = "POST", body: String? = nil, headers: [String: String] = ["content-type": "application/json"],
        timeout: Duration = .seconds(10)
    ) async throws -> Reply {
        var h = UpstreamHeaders()
        for (k, v) in headers { h.add(name: k, value: v) }
        let r = try await self.client.execute(
            UpstreamHTTPRequest(method: method, url: self.base + path, headers: h, body: Array((body ?? "").utf8), timeouts: .init(connect: .seconds(2), response: timeout)))
        return Reply(status: r.status, headers: r.headers, body: r.body)
    }

    func chat(_ model: String = "m", content: String = "hello world", extra: String = "", headers: [String: String] = [:]) async throws -> Reply {
        var h = ["content-type": "application/json"]
        h.merge(headers) { $1 }
        return try await self.request("/v1/chat/completions", body: #"{"model":"\#(model)","messages":[{"role":"user","content":"\#(content)"}]\#(extra)}"#, headers: h)
    }

    func stats(_ provider: String) async throws -> ProviderStats {
        try #require(try await self.gateway.store.stats(StatsQuery(providers: [provider], keys: [], models: [])).providers.first)
    }

    /// Polls `condition` until it holds or `timeout` passes.
    static func eventually(timeout: Duration = .seconds(5), _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool {
        try await MultiplexerTestSupport.eventually(timeout: timeout, condition)
    }
}

/// The config of a group `m` over the given providers (`name: weight` primaries, then fallbacks).
func gatewayYAML(
    _ ports: [String: Int], primary: [(String, Int)], fallback: [(String, Int)] = [], providerExtra: [String: String] = [:], groupExtra: String = "",
    top: String = ""
) -> String {
    var y = "server: { host: 127.0.0.1, port: 0 }\nproviders:\n"
    for (name, _) in primary + fallback {
        y += "  - { name: \(name), base_url: \"http://127.0.0.1:\(ports[name] ?? 1)/v1\", api_key: sk-test-\(name)-secret, model: upstream-\(name)\(providerExtra[name].map { ", " + $0 } ?? "") }\n"
    }
    y += "models:\n  - name: m\n    aliases: [gpt-4o-mini]\n    primary: [\(primary.map { "{ provider: \($0.0), weight: \($0.1) }" }.joined(separator: ", "))]\n"
    if !fallback.isEmpty { y += "    fallback: [\(fallback.map { "{ provider: \($0.0), weight: \($0.1) }" }.joined(separator: ", "))]\n" }
    if !groupExtra.isEmpty { y += "    " + groupExtra + "\n" }
    return y + top
}
