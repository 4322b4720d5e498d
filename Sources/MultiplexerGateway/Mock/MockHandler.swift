import Foundation
import HTTPTypes
import Hummingbird
import MultiplexerCore
import NIOCore

/// Serves one request to the mock provider.
struct MockHandler: Sendable {
    let state: MockProviderState
    var config: MockProvider.Configuration { self.state.configuration }

    func handle(_ request: Request, context: MockContext) async throws -> Response {
        var req = request
        let body = try await req.collectBody(upTo: 64 << 20)
        let bytes = Array(body.readableBytesView)
        guard let doc = try? JSONParser.parse(bytes) else {
            return MockProvider.json(.badRequest, #"{"error":{"message":"invalid JSON","type":"invalid_request_error","code":null}}"#)
        }
        let v = doc.value
        let operation = context.parameters.getCatchAll().joined(separator: "/")
        let model = v["model"]?.stringValue ?? "mock-model"
        let stream = v["stream"] == .bool(true)
        let wantsUsage = v["stream_options"]?["include_usage"] == .bool(true)

        switch self.state.mode {
        case .error500, .error503:
            self.state.countFailure()
            let code = self.state.mode == .error500 ? 500 : 503
            return MockProvider.json(.init(code: code), #"{"error":{"message":"mock failure","type":"server_error","code":null}}"#)
        case .unauthorized:
            self.state.countFailure()
            // A careless provider that echoes the credential: the gateway must never relay this.
            let auth = request.headers[.authorization] ?? ""
            return MockProvider.json(.unauthorized, #"{"error":{"message":"Incorrect API key provided: \#(auth)","type":"invalid_request_error","code":"invalid_api_key"}}"#)
        case .badRequest:
            self.state.countFailure()
            return MockProvider.json(.badRequest, #"{"error":{"message":"mock bad request","type":"invalid_request_error","param":"messages","code":null}}"#)
        case .notFound:
            self.state.countFailure()
            return MockProvider.json(.notFound, #"{"error":{"message":"The model \#(model) does not exist","type":"invalid_request_error","code":"model_not_found"}}"#)
        case .rateLimited:
            let ra = self.state.countForced429()
            var h = HTTPFields()
            h[.retryAfter] = String(ra)
            return MockProvider.json(.tooManyRequests, #"{"error":{"message":"mock rate limit","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#, headers: h)
        case .hang:
            self.state.countFailure()
            try await Task.sleep(for: .seconds(3600))
            return MockProvider.json(.ok, "{}")
        case .reset:
            self.state.countFailure()
            try await context.channel.close(mode: .all)
            throw CancellationError()
        case .ok, .streamCut, .streamStall:
            break
        }
        if self.config.failRate > 0, Double.random(in: 0..<1) < self.config.failRate {
            self.state.countFailure()
            return MockProvider.json(.internalServerError, #"{"error":{"message":"mock random failure","type":"server_error","code":null}}"#)
        }

        // What this request costs: the prompt (4 characters a token, rounded down — never more than a
        // gateway estimates) plus the completion it will get.
        let promptTokens = Self.promptCharacters(v, operation: operation) / 4
        let maxTokens = v["max_completion_tokens"]?.intValue ?? v["max_tokens"]?.intValue
        let completion = operation == "embeddings" ? 0 : min(maxTokens ?? self.config.completionTokens, self.config.completionTokens)
        let usage = TokenUsage(promptTokens: promptTokens, completionTokens: completion)
        switch self.state.admit(tokens: usage.totalTokens) {
        case .limited(let ra):
            var h = HTTPFields()
            h[.retryAfter] = String(ra)
            return MockProvider.json(
                .tooManyRequests, #"{"error":{"message":"Rate limit reached (strict mock limit)","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#, headers: h)
        case .serve:
            break
        }
        if self.config.latency > .zero { try? await Task.sleep(for: self.config.latency) }
        let id = "mock-\(UInt32.random(in: 0...UInt32.max))"
        let created = Int(Date().timeIntervalSince1970)
        let modelJSON: String = {
            var m = ""
            JSONValue.writeString(model, into: &m)
            return m
        }()
        let usageJSON = "{\"prompt_tokens\":\(usage.promptTokens),\"completion_tokens\":\(usage.completionTokens),\"total_tokens\":\(usage.totalTokens)}"

        if stream && operation != "embeddings" {
            let mode = self.state.mode
            let chunks = max(1, self.config.streamChunks)
            let delay = self.config.chunkDelay
            let state = self.state
            var h = HTTPFields()
            h[.contentType] = "text/event-stream"
            return Response(status: .ok, headers: h, body: ResponseBody { writer in
                var served = false
                defer { state.finished(served: served, usage: served ? usage : nil) }
                for i in 0..<chunks {
                    if i == chunks / 2 + 1 || chunks == 1 && i == 0 {
                        if mode == .streamCut { throw CancellationError() }
                        if mode == .streamStall { try await Task.sleep(for: .seconds(3600)) }
                    }
                    let piece = i == 0 ? "tok" : " tok"
                    let chunk = "{\"id\":\"\(id)\",\"object\":\"chat.completion.chunk\",\"created\":\(created),\"model\":\(modelJSON),\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(piece)\"},\"finish_reason\":null}]}"
                    try await writer.write(ByteBuffer(string: "data: \(chunk)\n\n"))
                    if delay > .zero { try await Task.sleep(for: delay) }
                }
                try await writer.write(ByteBuffer(string: "data: {\"id\":\"\(id)\",\"object\":\"chat.completion.chunk\",\"created\":\(created),\"model\":\(modelJSON),\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"))
                if wantsUsage {
                    try await writer.write(ByteBuffer(string: "data: {\"id\":\"\(id)\",\"object\":\"chat.completion.chunk\",\"created\":\(created),\"model\":\(modelJSON),\"choices\":[],\"usage\":\(usageJSON)}\n\n"))
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                served = true
                try await writer.finish(nil)
            })
        }
        defer { self.state.finished(served: true, usage: usage) }
        let text = Array(repeating: "tok", count: completion).joined(separator: " ")
        switch operation {
        case "embeddings":
            let n = max(1, v["input"]?.arrayValue?.count ?? 1)
            let data = (0..<n).map { "{\"object\":\"embedding\",\"index\":\($0),\"embedding\":[0.1,0.2,0.3,0.4]}" }.joined(separator: ",")
            return MockProvider.json(.ok, "{\"object\":\"list\",\"data\":[\(data)],\"model\":\(modelJSON),\"usage\":{\"prompt_tokens\":\(usage.promptTokens),\"total_tokens\":\(usage.promptTokens)}}")
        case "completions":
            return MockProvider.json(.ok, "{\"id\":\"\(id)\",\"object\":\"text_completion\",\"created\":\(created),\"model\":\(modelJSON),\"choices\":[{\"text\":\"\(text)\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":\(usageJSON)}")
        default:
            return MockProvider.json(.ok, "{\"id\":\"\(id)\",\"object\":\"chat.completion\",\"created\":\(created),\"model\":\(modelJSON),\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"\(text)\"},\"finish_reason\":\"stop\"}],\"usage\":\(usageJSON)}")
        }
    }

    /// Characters of the prompt text: message contents, a completions prompt, or an embeddings input.
    static func promptCharacters(_ v: JSONValue, operation: String) -> Int {
        func chars(_ x: JSONValue?) -> Int {
            switch x {
            case .string(let s)?: return s.utf8.count
            case .array(let a)?: return a.reduce(0) { $0 + chars($1["text"] ?? $1) }
            default: return 0
            }
        }
        switch operation {
        case "embeddings": return chars(v["input"])
        case "completions": return chars(v["prompt"])
        default: return v["messages"]?.arrayValue?.reduce(0) { $0 + chars($1["content"]) } ?? 0
        }
    }
}
