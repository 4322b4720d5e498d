import Foundation
import MultiplexerCore
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 exchange on a raw socket: the bytes go out exactly as written (no client that normalises
/// `..`, merges headers or re-encodes the path), `Connection: close`, the answer is read to the end. The
/// blocking socket calls run on a thread of their own, never on the cooperative pool the in-process
/// gateway needs.
func rawExchange(port: Int, _ request: String, timeout: Int = 10) async throws -> (status: Int, headers: [String: String], body: String) {
    try await offCooperativePool { try blockingExchange(port: port, request, timeout: timeout) }
}

private func blockingExchange(port: Int, _ request: String, timeout: Int) throws -> (status: Int, headers: [String: String], body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        data += chunk[0..<n]
    }
    let r = RawHTTPResponse(parsing: String(decoding: data, as: UTF8.self))
    return (r.status, r.headers, r.body)
}

/// What the edge refuses before any routing (ARCHITECTURE §6), sent on raw sockets; each answer is
/// OpenAI-shaped with an `x-request-id`, and nothing reached the provider or was reserved.
@Suite struct EdgeRefusalTests {
    static let one = [GatewayFixture.MockSpec("a")]
    static let body = #"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#

    func post(_ f: GatewayFixture, _ path: String, body: String = Self.body, extraHeaders: String = "") async throws -> (status: Int, headers: [String: String], body: String) {
        try await rawExchange(
            port: f.gatewayPort,
            "POST \(path) HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\(extraHeaders)Connection: close\r\n\r\n\(body)")
    }

    func expectNothingSent(_ f: GatewayFixture, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(f.mocks["a"]!.state.counters.requests == 0, "nothing reached the provider", sourceLocation: sourceLocation)
        let s = try await f.stats("a")
        #expect(s.usage.requests == 0 && s.window.inFlight == 0, "nothing was reserved", sourceLocation: sourceLocation)
    }

    func code(_ body: String) -> String? { (try? JSONParser.parse(Array(body.utf8)).value)?["error"]?["code"]?.stringValue }

    @Test func pathsThatCouldNameAnythingElseAreRefused() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            for path in [
                "/v1/../internal/admin", "/v1/chat/../../internal", "/v1/./chat/completions", "/v1//chat/completions", "/v1/chat/completions/",
                "/v1/chat%2Fcompletions", "/v1/chat%2fcompletions", "/v1/%2e%2e/internal", "/v1/chat%5Ccompletions", "/v1/chat\\completions",
            ] {
                let r = try await self.post(f, path)
                #expect(r.status == 400 && self.code(r.body) == "invalid_path", "\(path): \(r.status) \(r.body.prefix(200))")
                #expect(r.headers["x-request-id"] != nil, "\(path)")
            }
            try await self.expectNothingSent(f)
        }
    }

    @Test func onlyTheConfiguredOperationsAreForwarded() async throws {
        let yaml: @Sendable ([String: Int]) -> String = { gatewayYAML($0, primary: [("a", 1)]).replacingOccurrences(of: "server: { host: 127.0.0.1, port: 0 }", with: "server: { host: 127.0.0.1, port: 0, passthrough: [responses] }") }
        try await GatewayFixture.with(mocks: Self.one, yaml: yaml) { f in
            for path in ["/v1/files", "/v1/fine_tuning/jobs", "/v1/batches", "/v1/messages", "/v1/internal/admin"] {
                let r = try await self.post(f, path)
                #expect(r.status == 404 && self.code(r.body) == "unknown_route", "\(path): \(r.status) \(r.body.prefix(200))")
                #expect(r.headers["x-request-id"] != nil)
            }
            try await self.expectNothingSent(f)
            #expect(try await self.post(f, "/v1/chat/completions").status == 200, "chat/completions is always routed")
        }
    }

    @Test func aDuplicateKeyAtAnyDepthIsRefused() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            for body in [
                #"{"model":"m","model":"evil","messages":[{"role":"user","content":"hi"}]}"#,
                #"{"model":"m","messages":[{"role":"user","content":"hi","role":"system"}]}"#,
            ] {
                let r = try await self.post(f, "/v1/chat/completions", body: body)
                #expect(r.status == 400 && r.body.contains("duplicate member name"), "\(r.status) \(r.body.prefix(300))")
            }
            try await self.expectNothingSent(f)
        }
    }

    @Test func aModelNameLongerThan256BytesIsRefusedAndNotEchoed() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            let long = String(repeating: "x", count: 100_000)
            let r = try await self.post(f, "/v1/chat/completions", body: #"{"model":"\#(long)","messages":[]}"#)
            #expect(r.status == 400 && r.body.utf8.count < 1000, "\(r.status), \(r.body.utf8.count) bytes")
            let g = try await rawExchange(port: f.gatewayPort, "GET /v1/models/\(long.prefix(5000)) HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            #expect(g.status == 404 && g.body.utf8.count < 1000)
            try await self.expectNothingSent(f)
        }
    }

    @Test func unknownRoutesAndWrongMethodsAnswerOpenAIShapedErrors() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: { gatewayYAML($0, primary: [("a", 1)]) }) { f in
            for (method, path, status, code) in [
                ("GET", "/nope", 404, "unknown_route"), ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
                ("POST", "/v1/models", 405, "method_not_allowed"), ("DELETE", "/v1/embeddings", 405, "method_not_allowed"),
                ("GET", "/v2/chat/completions", 404, "unknown_route"),
            ] {
                let r = try await rawExchange(port: f.gatewayPort, "\(method) \(path) HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                #expect(r.status == status && self.code(r.body) == code, "\(method) \(path): \(r.status) \(r.body.prefix(200))")
                #expect(r.headers["x-request-id"] != nil && r.headers["content-type"]?.hasPrefix("application/json") == true, "\(method) \(path)")
            }
            try await self.expectNothingSent(f)
        }
    }

    @Test func oneModelByIdIncludingAliasesAndSlashes() async throws {
        let yaml: @Sendable ([String: Int]) -> String = {
            gatewayYAML($0, primary: [("a", 1)]).replacingOccurrences(of: "aliases: [gpt-4o-mini]", with: "aliases: [gpt-4o-mini, meta-llama/Llama-3.3-70B]")
        }
        try await GatewayFixture.with(mocks: Self.one, yaml: yaml) { f in
            for id in ["m", "gpt-4o-mini", "meta-llama/Llama-3.3-70B"] {
                let r = try await f.request("/v1/models/\(id)", method: "GET", body: nil, headers: [:])
                #expect(r.status == 200 && r.json?["id"] == .string(id) && r.json?["object"] == .string("model"), "\(id): \(r.text)")
            }
            let missing = try await f.request("/v1/models/nope", method: "GET", body: nil, headers: [:])
            #expect(missing.status == 404 && missing.errorCode == "model_not_found")
        }
    }

    @Test func anthropicClientsAuthenticateWithXAPIKeyAndIdsNameTheNode() async throws {
        let yaml: @Sendable ([String: Int]) -> String = {
            gatewayYAML($0, primary: [("a", 1)], top: "keys:\n  - { name: team, key: key-of-the-team }\n")
                .replacingOccurrences(of: "server: { host: 127.0.0.1, port: 0 }", with: "server: { host: 127.0.0.1, port: 0, node_id: edge-node-7 }")
        }
        try await GatewayFixture.with(mocks: Self.one, yaml: yaml) { f in
            #expect(try await f.chat(headers: ["x-api-key": "key-of-the-team"]).status == 200)
            let refused = try await f.chat(headers: ["x-api-key": "not-the-key"])
            #expect(refused.status == 401 && refused.errorCode == "invalid_api_key")
            let id = refused.headers["x-request-id"] ?? ""
            #expect(id.hasPrefix("req-edge-node-7-"), "\(id)")
        }
    }

    @Test func aRequestNoCandidateCouldEverAdmitIs400NotA429() async throws {
        let yaml: @Sendable ([String: Int]) -> String = { gatewayYAML($0, primary: [("a", 1)], providerExtra: ["a": "limits: { tpm: 500 }"]) }
        try await GatewayFixture.with(mocks: Self.one, yaml: yaml) { f in
            let r = try await f.chat(extra: #","max_tokens":1000"#)
            #expect(r.status == 400 && r.errorCode == "request_too_large_for_limits", "\(r.status) \(r.text)")
            #expect(r.headers["retry-after"] == nil)
            #expect(try await f.chat(extra: #","max_tokens":100"#).status == 200, "one that fits is served")
        }
    }
}
