import Foundation
import HTTPTypes
import Hummingbird
import MultiplexerCore
import NIOCore
import Synchronization

/// Serves one request to the mock provider.
struct MockHandler: Sendable {
    let state: MockProviderState
    var config: MockProvider.Configuration { self.state.configuration }

    func handle(_ request: Request, context: MockContext) async throws -> Response {
        // In flight from here until the answer has been written (or the connection is gone).
        let ticket = self.state.arrive(
            method: request.method.rawValue, path: request.uri.description, authority: request.head.authority, headers: request.headers)
        var req = request
        let body = try await req.collectBody(upTo: 64 << 20)
        let bytes = Array(body.readableBytesView)
        self.state.recordBody(bytes)
        let dialect = self.state.dialect
        guard let doc = try? JSONParser.parse(bytes) else {
            self.state.countFailure()
            return Self.ending(
                ticket, MockProvider.json(.badRequest, #"{"error":{"message":"invalid JSON","type":"invalid_request_error","code":null}}"#))
        }
        let v = doc.value
        let operation = context.parameters.getCatchAll().joined(separator: "/")
        let model = v["model"]?.stringValue ?? "mock-model"
        let stream = v["stream"] == .bool(true) && operation != "embeddings"
        let wantsUsage = v["stream_options"]?["include_usage"] == .bool(true)
        let mode = self.state.mode
        let announces = self.config.announcesLimits
        let limitHeaders = { announces ? dialect.rateLimitHeaders(self.state.rateLimits()) : HTTPFields() }

        switch mode {
        case .error500, .error503:
            self.state.countFailure()
            let code = mode == .error500 ? 500 : 503
            return Self.ending(
                ticket, MockProvider.json(.init(code: code), #"{"error":{"message":"mock failure","type":"server_error","code":null}}"#, headers: limitHeaders()))
        case .overloaded:
            self.state.countFailure()
            return Self.ending(
                ticket,
                MockProvider.json(.init(code: 529), #"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, headers: limitHeaders()))
        case .unauthorized:
            self.state.countFailure()
            // A careless provider that echoes the credential: the gateway must never relay this.
            let auth = request.headers[.authorization] ?? ""
            return Self.ending(
                ticket,
                MockProvider.json(
                    .unauthorized, #"{"error":{"message":"Incorrect API key provided: \#(auth)","type":"invalid_request_error","code":"invalid_api_key"}}"#))
        case .badRequest:
            self.state.countFailure()
            return Self.ending(
                ticket,
                MockProvider.json(
                    .badRequest, #"{"error":{"message":"mock bad request","type":"invalid_request_error","param":"messages","code":null}}"#,
                    headers: limitHeaders()))
        case .notFound:
            self.state.countFailure()
            return Self.ending(
                ticket,
                MockProvider.json(
                    .notFound, #"{"error":{"message":"The model \#(model) does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
                    headers: limitHeaders()))
        case .rateLimited:
            let seconds = self.state.countForced429()
            return Self.ending(ticket, dialect.rateLimited(wait: .seconds(seconds), snapshot: self.state.rateLimits(), message: "mock rate limit"))
        case .hang:
            self.state.countFailure()
            try await Task.sleep(for: .seconds(3600))
            return Self.ending(ticket, MockProvider.json(.ok, "{}"))
        case .reset:
            self.state.countFailure()
            try await context.channel.close(mode: .all)
            throw CancellationError()
        case .ok, .exhausted, .streamCut, .streamStall, .commentsOnly, .blankKeepalive, .trickleBytes, .endlessLine, .invalidJSON200, .empty200,
            .noChoices200:
            break
        }
        if self.config.failRate > 0, Double.random(in: 0..<1) < self.config.failRate {
            self.state.countFailure()
            return Self.ending(
                ticket,
                MockProvider.json(.internalServerError, #"{"error":{"message":"mock random failure","type":"server_error","code":null}}"#, headers: limitHeaders()))
        }

        // An assistant prefill (a chat request ending with an assistant message): continued after its words,
        // or refused like a provider that does not support it.
        var skip = 0
        if operation == "chat/completions", let last = v["messages"]?.arrayValue?.last, last["role"]?.stringValue == "assistant" {
            let text = last["content"]?.stringValue ?? ""
            guard self.state.acceptsPrefill else {
                self.state.recordPrefill(text, refused: true)
                return Self.ending(
                    ticket,
                    MockProvider.json(
                        .badRequest,
                        #"{"error":{"message":"This model does not support assistant message prefill: the last message must be from the user.","type":"invalid_request_error","param":"messages","code":"invalid_prefill"}}"#,
                        headers: limitHeaders()))
            }
            self.state.recordPrefill(text, refused: false)
            skip = text.split(whereSeparator: \.isWhitespace).count
        }
        // What this request costs: the prompt (4 characters a token, rounded down — never more than a
        // gateway estimates) plus the completion it will get (less the prefilled words).
        let promptTokens = Self.promptCharacters(v, operation: operation) / 4
        let maxTokens = v["max_completion_tokens"]?.intValue ?? v["max_tokens"]?.intValue
        let completion = operation == "embeddings" ? 0 : max(0, min(maxTokens ?? self.config.completionTokens, self.config.completionTokens - skip))
        let usage = TokenUsage(promptTokens: promptTokens, completionTokens: completion)
        switch self.state.admit(tokens: usage.totalTokens) {
        case .limited(let wait):
            return Self.ending(ticket, dialect.rateLimited(wait: wait, snapshot: self.state.rateLimits(), message: "Rate limit reached (strict mock limit)"))
        case .serve:
            break
        }
        let answer = Answer(
            id: "mock-\(UInt32.random(in: 0...UInt32.max))", created: Int(Date().timeIntervalSince1970), model: model, operation: operation,
            usage: usage, wantsUsage: wantsUsage, inputCount: max(1, v["input"]?.arrayValue?.count ?? 1), skip: skip)
        var headers = announces ? dialect.rateLimitHeaders(self.state.rateLimits(exhausted: mode == .exhausted)) : HTTPFields()
        // Served, or (broken-body modes) failed, once the answer has ended.
        let outcome = ServingSlot(state: self.state, usage: usage, served: !mode.breaksBody)

        if stream {
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-cache"
            return Response(status: .ok, headers: headers, body: self.streamBody(mode, answer, ticket: ticket, outcome: outcome))
        }
        headers[.contentType] = "application/json"
        switch mode {
        case .commentsOnly, .blankKeepalive:
            // A provider's whitespace keep-alive: the headers at once, then blanks forever.
            let blank = ByteBuffer(string: mode == .commentsOnly ? " " : "\n")
            let interval = self.config.keepAliveInterval
            return Response(
                status: .ok, headers: headers,
                body: Self.body(ticket, outcome) { writer in
                    while true {
                        try await writer.write(blank)
                        try await Task.sleep(for: interval)
                    }
                })
        default:
            break
        }
        // The headers come when the whole answer is ready.
        if self.config.latency > .zero { try await Task.sleep(for: self.config.latency) }
        switch mode {
        case .trickleBytes:
            let bytes = Array(answer.json.utf8)
            let interval = self.config.trickleInterval
            return Response(
                status: .ok, headers: headers,
                body: Self.body(ticket, outcome) { writer in try await Self.trickle(bytes, every: interval, to: &writer) })
        case .endlessLine:
            return Response(
                status: .ok, headers: headers,
                body: Self.body(ticket, outcome) { writer in try await Self.endless(prefix: #"{"id":""#, to: &writer) })
        case .invalidJSON200:
            return Self.ending(ticket, Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: #"{"id": this is not JSON"#))), settling: outcome)
        case .empty200:
            return Self.ending(ticket, Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer())), settling: outcome)
        case .noChoices200:
            return Self.ending(ticket, Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: answer.jsonWithoutChoices))), settling: outcome)
        default:
            return Self.ending(ticket, Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: answer.json))), settling: outcome)
        }
    }

    /// A stream's body: the headers are already out; the first event comes after the latency.
    func streamBody(_ mode: MockProvider.Mode, _ answer: Answer, ticket: InFlightTicket, outcome: ServingSlot) -> ResponseBody {
        let latency = self.config.latency
        let interval = self.config.tokenInterval
        let chunks = max(1, self.config.streamChunks)
        switch mode {
        case .commentsOnly, .blankKeepalive:
            let line = ByteBuffer(string: mode == .commentsOnly ? ": keep-alive\n\n" : "\n")
            let every = self.config.keepAliveInterval
            return Self.body(ticket, outcome) { writer in
                while true {
                    try await writer.write(line)
                    try await Task.sleep(for: every)
                }
            }
        case .trickleBytes:
            let bytes = Array(answer.events(chunks: chunks).joined().utf8)
            let every = self.config.trickleInterval
            return Self.body(ticket, outcome) { writer in
                if latency > .zero { try await Task.sleep(for: latency) }
                try await Self.trickle(bytes, every: every, to: &writer)
            }
        case .endlessLine:
            return Self.body(ticket, outcome) { writer in
                if latency > .zero { try await Task.sleep(for: latency) }
                try await Self.endless(prefix: "data: ", to: &writer)
            }
        case .empty200:
            return Self.body(ticket, outcome) { _ in
                if latency > .zero { try await Task.sleep(for: latency) }
            }
        case .invalidJSON200, .noChoices200:
            let events = mode == .invalidJSON200 ? Array(repeating: "data: {\"id\": this is not JSON\n\n", count: chunks) : answer.chunksWithoutChoices(chunks)
            return Self.body(ticket, outcome) { writer in
                if latency > .zero { try await Task.sleep(for: latency) }
                for (i, e) in events.enumerated() {
                    if i > 0, interval > .zero { try await Task.sleep(for: interval) }
                    try await writer.write(ByteBuffer(string: e))
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            }
        default:
            // The role delta goes out with the first content event; a stream-cut or stream-stall answer breaks
            // before content event `breakAt` (before anything when it is 0).
            let content = answer.contentEvents(chunks: chunks)
            let tail = answer.tailEvents.joined()
            let role = answer.roleEvent
            let breakAt = mode == .streamCut || mode == .streamStall ? (self.state.breakAfter ?? (chunks == 1 ? 0 : chunks / 2 + 1)) : Int.max
            return Self.body(ticket, outcome) { writer in
                if latency > .zero { try await Task.sleep(for: latency) }
                for (i, event) in content.enumerated() {
                    if i > 0, interval > .zero { try await Task.sleep(for: interval) }
                    if i == breakAt {
                        if mode == .streamCut { throw CancellationError() }
                        try await Task.sleep(for: .seconds(3600))
                    }
                    try await writer.write(ByteBuffer(string: i == 0 ? role + event : event))
                }
                if content.isEmpty { try await writer.write(ByteBuffer(string: role)) }
                try await writer.write(ByteBuffer(string: tail))
            }
        }
    }

    /// Writes `bytes` one at a time, `every` apart.
    static func trickle(_ bytes: [UInt8], every: Duration, to writer: inout any ResponseBodyWriter) async throws {
        for b in bytes {
            try await writer.write(ByteBuffer(bytes: [b]))
            try await Task.sleep(for: every)
        }
    }

    /// The most bytes an `endless-line` answer sends.
    static let endlessLimit = 256 << 20

    /// Writes `prefix`, then `x`s without a newline, 16 KiB a write, until the client goes away (or
    /// ``endlessLimit`` bytes are out). Each write waits for the connection to take it (back-pressure), so
    /// nothing piles up in the mock.
    static func endless(prefix: String, to writer: inout any ResponseBodyWriter) async throws {
        try await writer.write(ByteBuffer(string: prefix))
        let block = ByteBuffer(repeating: UInt8(ascii: "x"), count: 16 << 10)
        // Bounded, so that an answer whose client went away unseen cannot run forever: 256 MiB is far beyond
        // any limit a client should accept.
        var sent = 0
        while sent < Self.endlessLimit {
            try Task.checkCancellation()
            try await writer.write(block)
            sent += block.readableBytes
        }
    }

    /// A body that ends the request's time in flight, and settles its serving slot, when it has been written
    /// (or has failed to be).
    static func body(_ ticket: InFlightTicket, _ outcome: ServingSlot?, _ write: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void)
        -> ResponseBody
    {
        ResponseBody { writer in
            var completed = false
            defer {
                outcome?.settle(completed: completed)
                ticket.end()
            }
            try await write(&writer)
            try await writer.finish(nil)
            completed = true
        }
    }

    /// `response`, a fixed answer, handed to the server: the request's time in flight ends (and `outcome` settles)
    /// now. Ending it only once the bytes are written would race a client that sends its next request as soon as it
    /// has read this answer, and make two requests look concurrent that never were.
    static func ending(_ ticket: InFlightTicket, _ response: Response, settling outcome: ServingSlot? = nil) -> Response {
        outcome?.settle(completed: true)
        ticket.end()
        return response
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

/// Settles an admitted request's serving slot once (served only if it was meant to be and its answer was all
/// written), also when the body is dropped unwritten.
final class ServingSlot: Sendable {
    private let state: MockProviderState
    private let usage: TokenUsage
    private let served: Bool
    private let settled = Atomic<Bool>(false)

    init(state: MockProviderState, usage: TokenUsage, served: Bool) {
        self.state = state
        self.usage = usage
        self.served = served
    }

    func settle(completed: Bool) {
        guard !self.settled.exchange(true, ordering: .relaxed) else { return }
        let ok = completed && self.served
        self.state.finished(served: ok, usage: ok ? self.usage : nil)
    }

    deinit { self.settle(completed: false) }
}
