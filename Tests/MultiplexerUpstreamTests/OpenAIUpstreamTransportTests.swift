import MultiplexerCore
import Testing

@testable import MultiplexerUpstream

@Suite("OpenAIUpstreamTransport against a local HTTP server")
struct OpenAIUpstreamTransportTests {
    static let completion =
        #"{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi \"there\""},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#

    static func provider(_ server: TestHTTPServer, apiKey: String = "sk-test-secret", headers: [String: String] = [:]) -> Provider {
        Provider(
            name: "local", baseURL: server.baseURL + "/v1/", apiKey: apiKey, model: "upstream-model", connectTimeout: .seconds(2),
            timeout: .seconds(5), timeToFirstTokenTimeout: .seconds(2), streamIdleTimeout: .seconds(2), headers: headers)
    }

    static let chat = OpenAIUpstreamRequest(path: "chat/completions") { provider in
        Array("{\"model\":\"\(provider.model)\",\"messages\":[]}".utf8)
    }

    static func streamingChat() -> OpenAIUpstreamRequest {
        var request = Self.chat
        request.stream = true
        return request
    }

    @Test
    func nonStreamCallSendsCredentialsAndParsesUsage() async throws {
        let seen = Box<ReceivedRequest?>(nil)
        let server = try TestHTTPServer { connection in
            while let request = connection.readRequest() {
                seen.set(request)
                connection.respond(body: Self.completion)
            }
        }
        defer { server.close() }
        let provider = Self.provider(server, headers: ["X-Extra": "extra"])
        let response = try await withTestClient { client in
            try await OpenAIUpstreamTransport(client: client).send(Self.chat, to: provider)
        }
        #expect(response.status == 200)
        #expect(response.usage == TokenUsage(promptTokens: 5, completionTokens: 1))
        #expect(response.errorCode == nil)
        #expect(!response.settlesLater)
        guard case .complete(let body) = response.body else {
            Issue.record("expected a complete body")
            return
        }
        #expect(String(decoding: body, as: UTF8.self) == Self.completion)
        let received = try #require(seen.get)
        #expect(received.path == "/v1/chat/completions")
        #expect(received.header("authorization") == "Bearer sk-test-secret")
        #expect(received.header("content-type") == "application/json")
        #expect(received.header("x-extra") == "extra")
        #expect(received.header("expect") == nil)
        #expect(String(decoding: received.body, as: UTF8.self) == #"{"model":"upstream-model","messages":[]}"#)
    }

    @Test(arguments: [
        (400, #"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#, "context_length_exceeded"),
        (429, #"{"error":{"message":"slow down","type":"rate_limit_exceeded","code":null}}"#, "rate_limit_exceeded"),
        (500, #"{"error":{"code":500,"message":"boom"}}"#, "500"),
        (502, "<html>bad gateway</html>", nil),
    ])
    func errorBodyYieldsItsCode(status: Int, body: String, code: String?) async throws {
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil { connection.respond(status: status, body: body) }
        }
        defer { server.close() }
        let provider = Self.provider(server)
        let (buffered, streamed) = try await withTestClient { client in
            let transport = OpenAIUpstreamTransport(client: client)
            return (try await transport.send(Self.chat, to: provider), try await transport.send(Self.streamingChat(), to: provider))
        }
        for response in [buffered, streamed] {
            #expect(response.status == status)
            #expect(response.errorCode == code)
            #expect(response.usage == nil)
            #expect(!response.settlesLater)
            guard case .complete(let bytes) = response.body else {
                Issue.record("expected a complete body")
                continue
            }
            #expect(String(decoding: bytes, as: UTF8.self) == body)
        }
    }

    @Test
    func streamReturnsAfterTheFirstEventAndSettlesLater() async throws {
        let returned = Signal()
        let serverWaited = Box<Bool?>(nil)
        let server = try TestHTTPServer { connection in
            guard let request = connection.readRequest() else { return }
            guard request.header("accept") == "text/event-stream" else {
                connection.respond(status: 400, body: "{}")
                return
            }
            connection.startEventStream()
            connection.writeChunk(": processing\n\n")
            connection.writeChunk("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
            serverWaited.set(returned.wait(timeout: .seconds(5)))
            connection.writeChunk("data: {not json\n\n")
            connection.writeChunk("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n")
            connection.endChunks()
        }
        defer { server.close() }
        let provider = Self.provider(server)
        let (settlesLater, events, end) = try await withTestClient { client in
            let response = try await OpenAIUpstreamTransport(client: client).send(Self.streamingChat(), to: provider)
            returned.fire()
            guard case .events(let stream) = response.body else { throw UpstreamError(.other, message: "not a stream") }
            var iterator = stream.makeAsyncIterator()
            var events: [SSEEvent] = []
            while let event = try await iterator.next() { events.append(event) }
            return (response.settlesLater, events, iterator.end)
        }
        #expect(settlesLater)
        #expect(serverWaited.get == true, "the transport waited for more than the first event")
        #expect(events.count == 4)
        #expect(events.first?.data == #"{"choices":[{"delta":{"content":"a"}}]}"#)
        #expect(events[1].data == "{not json")
        #expect(OpenAIResponseInspector.usage(in: events[2].data.utf8) == TokenUsage(promptTokens: 7, completionTokens: 2))
        #expect(events.last?.isDone == true)
        #expect(end == .done)
    }

    @Test
    func streamClosedWithoutDoneIsReported() async throws {
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.startEventStream()
            connection.writeChunk("data: {\"a\":1}\n\ndata: {\"a\":2}\n\n")
            connection.endChunks()
        }
        defer { server.close() }
        let provider = Self.provider(server)
        let (count, end) = try await withTestClient { client in
            let response = try await OpenAIUpstreamTransport(client: client).send(Self.streamingChat(), to: provider)
            guard case .events(let stream) = response.body else { throw UpstreamError(.other, message: "not a stream") }
            var iterator = stream.makeAsyncIterator()
            var count = 0
            while try await iterator.next() != nil { count += 1 }
            return (count, iterator.end)
        }
        #expect(count == 2)
        #expect(end == .closedWithoutDone)
    }

    @Test
    func streamWithoutFirstEventFailsWithFirstTokenTimeout() async throws {
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.startEventStream()
            _ = connection.waitForPeerClose(timeout: .seconds(3))
        }
        defer { server.close() }
        var provider = Self.provider(server)
        provider.timeToFirstTokenTimeout = .milliseconds(300)
        let (error, elapsed) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in
                try await OpenAIUpstreamTransport(client: client).send(Self.streamingChat(), to: provider)
            }
        }
        #expect(error?.kind == .firstTokenTimeout)
        #expect(elapsed <= .milliseconds(1500), "well before the 15 s default: \(elapsed)")
    }

    @Test
    func streamClosedBeforeAnyEventIsAnInvalidResponse() async throws {
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.startEventStream()
            connection.writeChunk(": just a comment\n\n")
            connection.endChunks()
        }
        defer { server.close() }
        let provider = Self.provider(server)
        let (error, _) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in
                try await OpenAIUpstreamTransport(client: client).send(Self.streamingChat(), to: provider)
            }
        }
        #expect(error?.kind == .invalidResponse)
    }

    @Test
    func errorsNeverContainTheAPIKey() async throws {
        let port = try Sockets.refusedPort()
        let secret = "sk-very-secret-key"
        let provider = Provider(name: "p", baseURL: "http://127.0.0.1:\(port)/\(secret)", apiKey: secret, model: "m")
        let (error, _) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in try await OpenAIUpstreamTransport(client: client).send(Self.chat, to: provider) }
        }
        #expect(error?.kind == .connectionRefused)
        #expect(error?.message.contains(secret) == false)
        #expect(error?.description.contains(secret) == false)
        let redacted = OpenAIUpstreamTransport.redacting(secret, in: UpstreamError(.other, message: "failed for /\(secret)/x"))
        #expect(redacted.message == "failed for /<redacted>/x")
        let plain = Provider(name: "p", baseURL: "http://127.0.0.1:\(port)/v1", apiKey: secret, model: "m")
        let request = OpenAIUpstreamTransport.makeHTTPRequest(Self.chat, provider: plain)
        #expect(!request.description.contains(secret))
        #expect(!String(describing: plain).contains(secret))
    }

    @Test
    func providerHeadersReplaceDefaults() {
        let provider = Provider(
            name: "azure", baseURL: "https://x.example/openai//", apiKey: "k", model: "m", headers: ["api-key": "k", "Authorization": "Custom"])
        let request = OpenAIUpstreamTransport.makeHTTPRequest(Self.chat, provider: provider)
        #expect(request.url == "https://x.example/openai/chat/completions")
        #expect(request.headers.fields.filter { $0.name.lowercased() == "authorization" }.map(\.value) == ["Custom"])
        #expect(request.headers["api-key"] == "k")
        #expect(request.timeouts == UpstreamTimeouts(provider: provider))
    }
}

struct OpenAIResponseInspectorTests {
    @Test
    func readsUsage() {
        let body = #"{"id":"x","choices":[{"message":{"content":"a \"quoted\" \\ \u00e9 \ud83c\udf89"}}],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}"#
        #expect(OpenAIResponseInspector.usage(in: Array(body.utf8)) == TokenUsage(promptTokens: 12, completionTokens: 34))
    }

    @Test(arguments: ["", "not json", "{\"usage\":null}", "{\"usage\":{\"completion_tokens\":1}}", "{\"usage\":{\"prompt_tokens\":1", "[]"])
    func noUsageInOtherBodies(_ body: String) {
        #expect(OpenAIResponseInspector.usage(in: Array(body.utf8)) == nil)
    }

    @Test
    func readsErrorCodesFromObjectsAndArrays() {
        #expect(OpenAIResponseInspector.errorCode(in: Array(#"{"error":{"code":"content_policy_violation"}}"#.utf8)) == "content_policy_violation")
        #expect(OpenAIResponseInspector.errorCode(in: Array(#"[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}]"#.utf8)) == "429")
        #expect(OpenAIResponseInspector.errorCode(in: Array(#"{"error":{"type":"server_error","code":""}}"#.utf8)) == "server_error")
        #expect(OpenAIResponseInspector.errorCode(in: Array(#"{"error":"plain"}"#.utf8)) == nil)
    }
}
