import Hummingbird
import Multiplexer
import MultiplexerCore
import MultiplexerProcesses
import MultiplexerTestSupport
import ServiceLifecycle
import Testing

/// The library over providers that answer 2xx with something that is not a completion: it fails over like
/// for any failure, and reports ``MultiplexerError/Code/invalidResponse`` when nothing else is left.
struct InvalidResponseTests {
    /// Runs `body` with the base URL of a provider that answers every request with `status` and `body`.
    static func withProvider(
        contentType: String, body: String, _ run: @Sendable (String) async throws -> Void
    ) async throws {
        let router = Hummingbird.Router(context: BasicRequestContext.self)
        router.post("/v1/**") { _, _ -> Response in
            var h = HTTPFields()
            h[.contentType] = contentType
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) })
        try await withServicesRunning([app]) {
            var port = 0
            for await p in ports {
                port = p
                break
            }
            try await run("http://127.0.0.1:\(port)/v1")
        }
    }

    static func endpoint(_ url: String) -> OpenAICompatibleEndpoint {
        OpenAICompatibleEndpoint(baseURL: url, apiKey: "sk-test-secret", model: "upstream", timeouts: .init(connect: .seconds(2), request: .seconds(10)))
    }

    @Test func aTwoHundredWithoutChoicesFailsOverToTheNextModel() async throws {
        try await Self.withProvider(contentType: "text/html", body: "<html>gateway page</html>") { broken in
            try await MockProviders.with([.init("b")]) { m in
                try await Multiplexer.withMultiplexer(configuration: .init(tierWait: .zero, retriesPerProvider: 0)) { mux in
                    try mux.addModel(Self.endpoint(broken), weight: 1, modelName: "broken")
                    try mux.addFallbackModel(m.endpoint("b"), weight: 1, modelName: "b")
                    #expect(try await ask(mux).servedBy == "b")
                    #expect(try await mux.stats()["broken"]?.failed == 1)
                }
            }
        }
    }

    @Test func withNothingLeftItIsAnInvalidResponseError() async throws {
        try await Self.withProvider(contentType: "application/json", body: #"{"object":"chat.completion"}"#) { broken in
            try await Multiplexer.withMultiplexer(configuration: .init(tierWait: .zero, retriesPerProvider: 0)) { mux in
                try mux.addModel(Self.endpoint(broken), weight: 1, modelName: "broken")
                let e = await multiplexerError { _ = try await ask(mux) }
                #expect(e?.code == .invalidResponse, "\(String(describing: e))")
                #expect(e?.modelName == "broken" && e?.statusCode == 200)
                #expect(e?.attempts.map(\.failure) == ["invalid_response"])
                #expect(e.map { !$0.message.contains("sk-test-secret") } ?? false)
            }
        }
    }
}
