import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MultiplexerCore
import MultiplexerGateway
import MultiplexerUpstream
import NIOCore
import Testing

/// The routes through HummingbirdTesting's router mode (no sockets): what needs no upstream.
struct GatewayRouterModeTests {
    static func app() throws -> (some ApplicationProtocol, CurlClient) {
        let config = try ConfigurationLoader.parse(yaml: """
            providers: [{ name: a, base_url: "http://127.0.0.1:9/v1", api_key: sk-router-secret, model: m-a }]
            models: [{ name: m, aliases: [alias-m], primary: [{ provider: a }] }]
            keys: [{ name: k, key: router-key-1 }]
            admin_key: router-admin-key
            """, environment: [:])
        let client = try CurlClient()
        var logger = Logger(label: "router-mode")
        logger.logLevel = .critical
        return (buildApplication(gateway: try Gateway(configuration: config, client: client, logger: logger), client: client), client)
    }

    @Test func healthModelsAuthAndValidationAnswerWithoutUpstreams() async throws {
        let (app, client) = try Self.app()
        defer { client.shutdown() }
        try await app.test(.router) { c in
            try await c.execute(uri: "/healthz", method: .get) { r in #expect(r.status == .ok) }
            try await c.execute(uri: "/v1/models", method: .get) { r in #expect(r.status == .unauthorized) }
            try await c.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer router-key-1"]) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains(#""id":"alias-m""#))
            }
            try await c.execute(
                uri: "/v1/chat/completions", method: .post, headers: [.authorization: "Bearer router-key-1", .contentType: "application/json"],
                body: ByteBuffer(string: #"{"model":"m","messages":"nope"}"#)
            ) { r in
                #expect(r.status == .badRequest)
                #expect(String(buffer: r.body).contains(#""param":"messages""#))
                #expect(r.headers[HTTPField.Name("x-request-id")!] != nil)
            }
            try await c.execute(uri: "/admin/stats", method: .get, headers: [.authorization: "Bearer router-key-1"]) { r in
                #expect(r.status == .unauthorized, "a client key is not the admin key")
            }
            try await c.execute(uri: "/admin/stats", method: .get, headers: [.authorization: "Bearer router-admin-key"]) { r in
                #expect(r.status == .ok)
                #expect(!String(buffer: r.body).contains("sk-router-secret"))
            }
        }
    }
}
