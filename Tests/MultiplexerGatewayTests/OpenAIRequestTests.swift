@testable import MultiplexerGateway
import MultiplexerCore
import Testing

struct OpenAIRequestTests {
    static func request(_ op: String, _ body: String) throws -> OpenAIRequest {
        try OpenAIRequest(operation: op, body: Array(body.utf8))
    }

    static func rejection(_ op: String, _ body: String) -> OpenAIError? {
        do {
            _ = try Self.request(op, body)
            return nil
        } catch {
            return error as? OpenAIError
        }
    }

    @Test func rewritesOnlyTheModel() throws {
        let body = #"{ "temperature": 0.70, "model" : "gpt-4o-mini", "messages": [{"role":"user","content":"hi"}], "x_custom": {"keep": [1,2]} }"#
        let r = try Self.request("chat/completions", body)
        #expect(r.model == "gpt-4o-mini" && !r.stream)
        let out = String(decoding: r.upstreamBody(model: "llama-3.3-70b", includeUsage: false), as: UTF8.self)
        #expect(out == #"{ "temperature": 0.70, "model" : "llama-3.3-70b", "messages": [{"role":"user","content":"hi"}], "x_custom": {"keep": [1,2]} }"#)
    }

    @Test func insertsAModelWhenThereIsNone() throws {
        let r = try Self.request("chat/completions", #"{"messages":[{"role":"user","content":"x"}]}"#)
        #expect(String(decoding: r.upstreamBody(model: "m\"q", includeUsage: false), as: UTF8.self) == #"{"model":"m\"q","messages":[{"role":"user","content":"x"}]}"#)
    }

    @Test func streamsAskForUsage() throws {
        let plain = try Self.request("chat/completions", #"{"model":"a","stream":true,"messages":[{"role":"user","content":"x"}]}"#)
        #expect(plain.stream && !plain.clientWantsUsage)
        let out = try JSONParser.parse(plain.upstreamBody(model: "b", includeUsage: true)).value
        #expect(out["stream_options"]?["include_usage"] == .bool(true) && out["model"] == .string("b"))
        let merged = try Self.request("chat/completions", #"{"model":"a","stream":true,"stream_options":{"other":1},"messages":[{"role":"user","content":"x"}]}"#)
        let out2 = try JSONParser.parse(merged.upstreamBody(model: "b", includeUsage: true)).value
        #expect(out2["stream_options"] == .object(["other": .number(1), "include_usage": .bool(true)]))
        let wants = try Self.request("chat/completions", #"{"model":"a","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#)
        #expect(wants.clientWantsUsage)
    }

    @Test(arguments: [
        ("chat/completions", "not json", nil as String?),
        ("chat/completions", "[1,2]", nil),
        ("chat/completions", #"{"model": 5, "messages": []}"#, "model"),
        ("chat/completions", #"{"model": "m"}"#, "messages"),
        ("chat/completions", #"{"model": "m", "messages": []}"#, "messages"),
        ("chat/completions", #"{"model": "m", "messages": ["hi"]}"#, "messages[0]"),
        ("chat/completions", #"{"model": "m", "messages": [{"role":"user"}], "stream": "yes"}"#, "stream"),
        ("chat/completions", #"{"model": "m", "messages": [{"role":"user"}], "max_tokens": -1}"#, "max_tokens"),
        ("chat/completions", #"{"model": "m", "messages": [{"role":"user"}], "max_tokens": 1.5}"#, "max_tokens"),
        ("chat/completions", #"{"model": "m", "messages": [{"role":"user"}], "n": 0}"#, "n"),
        ("embeddings", #"{"model": "m"}"#, "input"),
        ("embeddings", #"{"model": "m", "input": 3}"#, "input"),
        ("completions", #"{"model": "m"}"#, "prompt"),
    ])
    func badRequestsNameTheParameter(_ op: String, _ body: String, _ param: String?) {
        let e = Self.rejection(op, body)
        #expect(e?.status == 400 && e?.type == "invalid_request_error" && e?.param == param)
    }

    @Test func errorsAreOpenAIShaped() throws {
        let e = OpenAIError.rateLimited("slow \"down\"", retryAfter: .milliseconds(1500))
        let v = try JSONParser.parse(Array(e.json.utf8)).value
        #expect(v["error"]?["message"] == .string("slow \"down\"") && v["error"]?["type"] == .string("rate_limit_error"))
        #expect(v["error"]?["code"] == .string("rate_limit_exceeded") && v["error"]?["param"] == .null)
        #expect(e.headers.first { $0.0 == "Retry-After" }?.1 == "2")
    }

    @Test func sha256MatchesKnownDigests() {
        #expect(KeyDigest.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(KeyDigest.hex(Array("test".utf8)) == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
        #expect(KeyDigest.hex(Array(String(repeating: "a", count: 1000).utf8)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test func keysAreMatchedByDigest() {
        let auth = KeyAuthenticator(keys: [
            GatewayConfiguration.Key(name: "a", secret: .plain("secret-key-a")),
            GatewayConfiguration.Key(name: "b", secret: .sha256(KeyDigest.hex(Array("secret-key-b".utf8)))),
        ])
        #expect(auth.authenticate("secret-key-a")?.name == "a")
        #expect(auth.authenticate("secret-key-b")?.name == "b")
        #expect(auth.authenticate("secret-key-c") == nil)
        #expect(KeyAuthenticator.presentedKey(authorization: "Bearer  abc ", apiKey: nil) == "abc")
        #expect(KeyAuthenticator.presentedKey(authorization: "bearer abc", apiKey: nil) == "abc")
        #expect(KeyAuthenticator.presentedKey(authorization: " BeArEr \tkéy-1 ", apiKey: nil) == "kéy-1")
        #expect(KeyAuthenticator.presentedKey(authorization: "Bearer\tabc", apiKey: nil) == nil)
        #expect(KeyAuthenticator.presentedKey(authorization: "Bearer   ", apiKey: "xyz") == "xyz")
        #expect(KeyAuthenticator.presentedKey(authorization: "Basic abc", apiKey: nil) == nil)
        #expect(KeyAuthenticator.presentedKey(authorization: nil, apiKey: "xyz") == "xyz")
        #expect(KeyAuthenticator.presentedKey(authorization: "Basic abc", apiKey: nil) == nil)
    }
}
