import MultiplexerCore
import Testing

@testable import MultiplexerUpstream

/// What real providers do that the transport has to judge: 2xx bodies that are not what the operation
/// returns, and the client headers that go along with a request.
struct OpenAIUpstreamRealProviderTests {
    static let chat = #"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#

    // MARK: Is a 2xx body what the operation returns?

    @Test(arguments: [
        ("chat/completions", chat, "application/json", nil),
        ("/chat/completions", chat, nil, nil),
        ("completions", #"{"choices":[{"text":"x"}]}"#, "text/plain", nil),
        ("embeddings", #"{"object":"list","data":[{"embedding":[0.1]}]}"#, "application/json", nil),
        ("chat/completions", "", "application/json", "the body is empty"),
        ("chat/completions", "  \n", "application/json", "the body is empty"),
        ("chat/completions", "<html>Bad gateway</html>", "text/html", "the body is not a JSON object"),
        ("chat/completions", #"{"choices":[{"index":0}"#, "application/json", "the body is not a JSON object"),
        ("chat/completions", #"[{"choices":[]}]"#, "application/json", "the body is not a JSON object"),
        ("chat/completions", #"{"error":{"message":"overloaded"}}"#, "application/json", "the body has no 'choices' array"),
        ("chat/completions", #"{"choices":null}"#, "application/json", "the body has no 'choices' array"),
        ("completions", #"{"id":"x"}"#, "application/json", "the body has no 'choices' array"),
        ("embeddings", #"{"object":"list","choices":[]}"#, "application/json", "the body has no 'data' array"),
        ("embeddings", #"{"data":{}}"#, "application/json", "the body has no 'data' array"),
        ("responses", #"{"id":"resp_1","output":[]}"#, "application/json", nil),
        ("messages", #"{"type":"message","content":[]}"#, "application/json; charset=utf-8", nil),
        ("messages", "upstream error", "application/json", "the body is not a JSON object"),
        ("responses", "", "application/problem+json", "the body is empty"),
        ("audio/speech", "\u{FF}\u{FB}\u{90}binary mp3", "audio/mpeg", nil),
        ("audio/speech", "", "audio/mpeg", nil),
        ("rerank", "no content type at all", nil, nil),
    ] as [(String, String, String?, String?)])
    func twoHundredBodiesAreCheckedAgainstTheOperation(_ operation: String, _ body: String, _ contentType: String?, _ invalid: String?) {
        let r = OpenAIResponseInspector.inspectSuccess(Array(body.utf8), operation: operation, contentType: contentType)
        #expect(r.invalid == invalid)
    }

    @Test func theSamePassReadsTheUsage() {
        let r = OpenAIResponseInspector.inspectSuccess(Array(Self.chat.utf8), operation: "chat/completions", contentType: "application/json")
        #expect(r.usage == TokenUsage(promptTokens: 5, completionTokens: 1) && r.invalid == nil)
        let bad = OpenAIResponseInspector.inspectSuccess(Array(#"{"usage":{"prompt_tokens":5}}"#.utf8), operation: "chat/completions", contentType: nil)
        #expect(bad.invalid != nil, "usage alone is not a completion")
    }

    @Test func aTwoHundredThatIsNotACompletionIsMarkedInvalidAndAnErrorBodyIsNot() async throws {
        let count = Box(0)
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil {
                count.update { $0 += 1 }
                switch count.get {
                case 1: connection.respond(headers: ["Content-Type": "text/html"], body: "<html>maintenance</html>")
                case 2: connection.respond(headers: ["Content-Type": "audio/mpeg"], body: "ID3binary")
                default: connection.respond(status: 503, body: "<html>maintenance</html>")
                }
            }
        }
        defer { server.close() }
        let provider = OpenAIUpstreamTransportTests.provider(server)
        let speech = OpenAIUpstreamRequest(path: "audio/speech", body: Array(#"{"input":"hi"}"#.utf8))
        let (html, audio, error) = try await withTestClient { client in
            let t = OpenAIUpstreamTransport(client: client)
            return (
                try await t.send(OpenAIUpstreamTransportTests.chat, to: provider), try await t.send(speech, to: provider),
                try await t.send(OpenAIUpstreamTransportTests.chat, to: provider)
            )
        }
        #expect(html.status == 200 && html.invalidBody == "the body is not a JSON object" && html.usage == nil)
        #expect(audio.status == 200 && audio.invalidBody == nil, "binary answers are never rejected")
        #expect(error.status == 503 && error.invalidBody == nil, "only a 2xx is judged by its body")
    }

    // MARK: Client headers

    static func provider(forward: Bool = false, headers: [String: String] = [:]) -> Provider {
        Provider(name: "p", baseURL: "https://api.example.com/v1", apiKey: "sk-provider", model: "m", headers: headers, forwardClientHeaders: forward)
    }

    static func request() -> OpenAIUpstreamRequest {
        var r = OpenAIUpstreamRequest(path: "chat/completions", body: Array("{}".utf8))
        r.forwardedHeaders = [
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "vendor=x", "x-request-id": "abc-1",
            "anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024-05-16",
            // None of these may ever pass, whatever a caller puts here.
            "Authorization": "Bearer client-key", "api-key": "client-key", "X-Api-Key": "client-key", "Cookie": "session=1",
            "Content-Type": "text/plain", "Host": "evil.example", "x-injected": "a\r\nX-Evil: 1", "x-nul": "a\u{0}b",
        ]
        r.accountHeaders = ["OpenAI-Organization": "org-client", "OpenAI-Project": "proj-client"]
        return r
    }

    @Test func describingHeadersAreForwardedAndCredentialsNever() {
        let h = OpenAIUpstreamTransport.makeHTTPRequest(Self.request(), provider: Self.provider()).headers
        #expect(h["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        #expect(h["tracestate"] == "vendor=x" && h["x-request-id"] == "abc-1")
        #expect(h["anthropic-version"] == "2023-06-01" && h["anthropic-beta"] == "tools-2024-05-16")
        #expect(h.fields.filter { $0.name.lowercased() == "authorization" }.map(\.value) == ["Bearer sk-provider"])
        #expect(h["api-key"] == nil && h["x-api-key"] == nil && h["cookie"] == nil && h["host"] == nil)
        #expect(h.fields.filter { $0.name.lowercased() == "content-type" }.map(\.value) == ["application/json"])
        #expect(h["x-injected"] == nil && h["x-nul"] == nil && h["x-evil"] == nil)
        #expect(h["openai-organization"] == nil && h["openai-project"] == nil, "account headers need forward_client_headers")
    }

    @Test func accountHeadersReachOnlyProvidersThatForwardThem() {
        let h = OpenAIUpstreamTransport.makeHTTPRequest(Self.request(), provider: Self.provider(forward: true)).headers
        #expect(h["openai-organization"] == "org-client" && h["openai-project"] == "proj-client")
    }

    @Test func providerHeadersWinOverForwardedOnes() {
        let p = Self.provider(forward: true, headers: ["anthropic-version": "2024-01-01", "OpenAI-Organization": "org-provider"])
        let h = OpenAIUpstreamTransport.makeHTTPRequest(Self.request(), provider: p).headers
        #expect(h.fields.filter { $0.name.lowercased() == "anthropic-version" }.map(\.value) == ["2024-01-01"])
        #expect(h.fields.filter { $0.name.lowercased() == "openai-organization" }.map(\.value) == ["org-provider"])
        #expect(h["anthropic-beta"] == "tools-2024-05-16")
    }
}
