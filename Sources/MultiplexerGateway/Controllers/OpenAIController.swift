import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MultiplexerCore
import MultiplexerRedis
import MultiplexerUpstream
import NIOCore
import Prometheus
import Tracing

/// The OpenAI-compatible routes: every `POST /v1/<operation>` is routed over the model's providers, and
/// `GET /v1/models` lists the model groups.
struct OpenAIController: Sendable {
    let gateway: Gateway

    func addRoutes(to router: Hummingbird.Router<GatewayRequestContext>) {
        router.post("/v1/**") { request, context in
            await self.route(request, context: context)
        }
        router.get("/v1/models") { request, context in
            self.models(request)
        }
        router.get("/v1/models/**") { request, context in
            self.model(request, id: context.parameters.getCatchAll().joined(separator: "/"))
        }
    }

    /// The request id and client key of a model listing, or the 401 when keys are configured and none matches.
    private func listingAccess(_ request: Request) -> (requestID: String, key: GatewayConfiguration.Key?, refusal: Response?) {
        let requestID = ClientHeaders(request.headers).requestID ?? self.gateway.nextRequestID()
        let g = self.gateway.snapshot
        guard self.gateway.keysEnabled(g) else { return (requestID, nil, nil) }
        guard let k = self.authenticate(request, keys: g.keys) else { return (requestID, nil, Self.error(.invalidAPIKey(), requestID: requestID)) }
        return (requestID, k, nil)
    }

    // MARK: GET /v1/models/{id}

    /// One model object; `{id}` may hold `/` (`meta-llama/Llama-3.3-70B`); an alias answers with its own id.
    func model(_ request: Request, id: String) -> Response {
        let (requestID, key, refusal) = self.listingAccess(request)
        if let refusal { return refusal }
        guard id.utf8.count <= OpenAIRequest.maxModelBytes,
            let g = self.gateway.table.groups.first(where: { $0.name == id || $0.aliases.contains(id) }),
            key?.models.map({ $0.contains(g.name) }) ?? true
        else { return Self.error(.modelNotFound(id.utf8.count <= OpenAIRequest.maxModelBytes ? id : nil), requestID: requestID) }
        var out = "{\"id\":"
        JSONValue.writeString(id, into: &out)
        out += ",\"object\":\"model\",\"created\":0,\"owned_by\":\"multiplexer\"}"
        return Self.json(status: .ok, out, requestID: requestID)
    }

    // MARK: GET /v1/models

    func models(_ request: Request) -> Response {
        let (requestID, key, refusal) = self.listingAccess(request)
        if let refusal { return refusal }
        var out = "{\"object\":\"list\",\"data\":["
        var first = true
        for g in self.gateway.table.groups where key?.models.map({ $0.contains(g.name) }) ?? true {
            for id in [g.name] + g.aliases {
                if !first { out += "," }
                first = false
                out += "{\"id\":"
                JSONValue.writeString(id, into: &out)
                out += ",\"object\":\"model\",\"created\":0,\"owned_by\":\"multiplexer\"}"
            }
        }
        out += "]}"
        return Self.json(status: .ok, out, requestID: requestID)
    }

    // MARK: POST /v1/**

    func route(_ request: Request, context: GatewayRequestContext) async -> Response {
        let started = ContinuousClock.now
        // A sane client `x-request-id` is the request's id (the client vouches for its uniqueness).
        let client = ClientHeaders(request.headers)
        let requestID = client.requestID ?? self.gateway.nextRequestID()
        let operation = context.parameters.getCatchAll().joined(separator: "/")
        self.gateway.metrics.inFlight.increment()
        let span = self.gateway.tracer.map { self.serverSpan($0, request: request, operation: operation) }
        // A client that goes away while the request waits (for a slot, for the provider's headers) cancels it.
        let (handled, clientGone) = await ClientWatch.run(context.channel) { () -> (Response, RequestLog) in
            var log = RequestLog(requestID: requestID, operation: operation, started: started)
            log.span = span
            guard let span else {
                let response = await self.serve(request, operation: operation, requestID: requestID, client: client, connection: context.channel, log: &log)
                return (response, log)
            }
            // The admission and attempt spans are the server span's children.
            let response = await InstrumentationContext.withValue(span.context) {
                await self.serve(request, operation: operation, requestID: requestID, client: client, connection: context.channel, log: &log)
            }
            return (response, log)
        }
        let (response, log) = handled
        if !log.deferred {
            self.gateway.metrics.inFlight.decrement()
            self.finish(log, status: clientGone ? 499 : Int(response.status.code))
        }
        return response
    }

    /// Per-request facts for the log line and metrics.
    struct RequestLog: Sendable {
        var requestID: String
        var operation: String
        var started: ContinuousClock.Instant
        var model = "-"
        var group = "-"
        var provider = "-"
        var attempts = 0
        var tokens: TokenUsage?
        var key: String?
        var fallback = false
        /// A stream continued mid-way (ARCHITECTURE §3 step 7): every provider that served it, in order,
        /// and whether the continuation completed it.
        var providers: [String] = []
        var continued = false
        /// A stream logs when it ends.
        var deferred = false
        /// A stream's time from the request to its first event written to the client.
        var timeToFirstToken: Duration?
        /// The model id the serving provider answered with.
        var responseModel: String?
        /// The request's server span (tracing on), ended with the request.
        var span: (any Span)?
    }

    /// The request's `server` span, named by method and route, continuing the client's `traceparent`.
    func serverSpan(_ tracer: any Tracer, request: Request, operation: String) -> any Span {
        var context = InstrumentationContext.topLevel
        tracer.extract(request.headers, into: &context, using: HTTPFieldsExtractor())
        let known = PathRules.routed.contains(operation) || self.gateway.configuration.server.passthrough.contains(operation)
        let route = known ? "/v1/" + operation : "/v1/*"
        let span = tracer.startSpan("POST " + route, context: context, ofKind: .server)
        span.attributes["http.request.method"] = "POST"
        span.attributes["http.route"] = route
        if known { span.attributes["gen_ai.operation.name"] = OpenAIUpstreamTransport.operationName(path: operation) }
        return span
    }

    func finish(_ log: RequestLog, status: Int) {
        let latency = log.started.duration(to: .now)
        self.gateway.metrics.request(model: log.group, provider: log.provider, status: status)
        if log.fallback { self.gateway.metrics.fallback(model: log.group) }
        if let span = log.span { Self.end(span, log, status: status) }
        guard self.gateway.logger.logLevel <= .info else { return }
        if self.gateway.jsonLogs {
            self.gateway.logger.info("request", metadata: Self.requestMetadata(log, status: status, latency: latency))
        } else {
            self.gateway.logger.info("\(Self.requestLine(log, status: status, latency: latency))")
        }
    }

    /// Ends the server span with what the request came to (never a prompt, an answer or a key).
    static func end(_ span: any Span, _ log: RequestLog, status: Int) {
        span.attributes["http.response.status_code"] = status
        span.attributes["multiplexer.request_id"] = log.requestID
        if log.group != "-" { span.attributes["gen_ai.request.model"] = log.group }
        if let m = log.responseModel { span.attributes["gen_ai.response.model"] = m }
        if log.provider != "-" { span.attributes["gen_ai.provider.name"] = log.provider }
        if let t = log.tokens {
            span.attributes["gen_ai.usage.input_tokens"] = t.promptTokens
            span.attributes["gen_ai.usage.output_tokens"] = t.completionTokens
        }
        if let ttft = log.timeToFirstToken { span.attributes["gen_ai.server.time_to_first_token"] = ttft.seconds }
        span.attributes["multiplexer.attempts"] = log.attempts
        if let k = log.key { span.attributes["multiplexer.key"] = k }
        if log.fallback { span.attributes["multiplexer.fallback"] = true }
        if log.providers.count > 1 { span.attributes["multiplexer.continued"] = log.continued }
        if status >= 500 { span.setStatus(SpanStatus(code: .error, message: "HTTP \(status)")) }
        span.end()
    }

    /// The request line's fields as log metadata (`server.log_format: json`): the same names as the text line.
    static func requestMetadata(_ log: RequestLog, status: Int, latency: Duration) -> Logger.Metadata {
        var m: Logger.Metadata = [
            "request.id": .string(log.requestID), "gen_ai.request.model": .string(log.model), "gateway.model_group": .string(log.group),
            "gateway.provider": .string(log.provider), "gateway.attempts": .stringConvertible(log.attempts),
            "http.response.status_code": .stringConvertible(status), "duration_ms": .stringConvertible(latency.millisecondsRoundedUp),
            "gateway.operation": .string(log.operation),
        ]
        if let t = log.tokens {
            m["gen_ai.usage.input_tokens"] = .stringConvertible(t.promptTokens)
            m["gen_ai.usage.output_tokens"] = .stringConvertible(t.completionTokens)
        }
        if let ttft = log.timeToFirstToken { m["ttft_ms"] = .stringConvertible(ttft.millisecondsRoundedUp) }
        if let k = log.key { m["gateway.key"] = .string(k) }
        if log.providers.count > 1 {
            m["gateway.providers"] = .string(log.providers.joined(separator: ","))
            m["gateway.continued"] = .stringConvertible(log.continued ? 1 : 0)
        }
        return m
    }

    /// The request's log line: `request` and `name=value` fields in a fixed order (those of the README's log
    /// contract), built directly — no metadata dictionary to hash, merge and sort on the request path. A value
    /// with a blank, a control character, `"` or `=` (a client's model name can hold anything) is written as a
    /// JSON string, so one request is always one line and its fields cannot be forged.
    static func requestLine(_ log: RequestLog, status: Int, latency: Duration) -> String {
        var line = "request"
        line.reserveCapacity(256)
        func field(_ name: String, _ value: String) {
            line += " "
            line += name
            line += "="
            if value.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "=") }) && !value.isEmpty {
                line += value
            } else {
                JSONValue.writeString(value, into: &line)
            }
        }
        field("request.id", log.requestID)
        field("gen_ai.request.model", log.model)
        field("gateway.model_group", log.group)
        field("gateway.provider", log.provider)
        field("gateway.attempts", String(log.attempts))
        field("http.response.status_code", String(status))
        field("duration_ms", String(latency.millisecondsRoundedUp))
        field("gateway.operation", log.operation)
        if let t = log.tokens {
            field("gen_ai.usage.input_tokens", String(t.promptTokens))
            field("gen_ai.usage.output_tokens", String(t.completionTokens))
        }
        if let ttft = log.timeToFirstToken { field("ttft_ms", String(ttft.millisecondsRoundedUp)) }
        if let k = log.key { field("gateway.key", k) }
        if log.providers.count > 1 {
            field("gateway.providers", log.providers.joined(separator: ","))
            field("gateway.continued", log.continued ? "1" : "0")
        }
        return line
    }

    /// 400 `request_too_large_for_limits` when the request's reservation exceeds a limit on every candidate
    /// (or its client key's token limit): it could wait forever and never be admitted.
    func neverAdmitted(_ parsed: OpenAIRequest, group: ModelGroup, key: GatewayConfiguration.Key?, table: RoutingTable) -> OpenAIError? {
        let members = group.primary + group.fallback
        guard !members.isEmpty else { return nil }
        var smallest = Int.max
        for m in members {
            guard let p = table.providers[m.provider] else { continue }
            let tokens = parsed.cost.tokens(on: p)
            smallest = min(smallest, tokens)
            let l = p.limits
            let cost = p.maximumCost(of: parsed.cost)
            let kl = key?.limits
            let exceeds =
                (l.tpm.map { tokens > $0 } ?? false) || (l.tpd.map { tokens > $0 } ?? false) || (l.rpm.map { $0 < 1 } ?? false)
                || (l.rpd.map { $0 < 1 } ?? false) || (l.maxConcurrent.map { $0 < 1 } ?? false) || (kl?.tpm.map { tokens > $0 } ?? false)
                || (l.dailyBudgetMicroUSD.map { cost > $0 } ?? false) || (kl?.dailyBudgetMicroUSD.map { cost > $0 } ?? false)
                || (kl?.monthlyBudgetMicroUSD.map { cost > $0 } ?? false)
            if !exceeds { return nil }
        }
        return OpenAIError(
            status: 400,
            message: "The request reserves \(smallest) tokens (prompt + max_tokens), more than a token limit or a budget of every provider of '\(group.name)' (or of your key) allows; lower max_tokens or shorten the prompt.",
            type: "invalid_request_error", code: "request_too_large_for_limits", param: "max_tokens")
    }

    /// Reads a client's `traceparent` / `tracestate` for the tracer.
    struct HTTPFieldsExtractor: Extractor {
        func extract(key: String, from fields: HTTPFields) -> String? {
            HTTPField.Name(key).flatMap { fields[$0] }
        }
    }

    static let apiKeyHeader = HTTPField.Name("api-key")!
    static let xAPIKeyHeader = HTTPField.Name("x-api-key")!

    private func authenticate(_ request: Request, keys: KeyAuthenticator) -> GatewayConfiguration.Key? {
        guard
            let presented = KeyAuthenticator.presentedKey(
                authorization: request.headers[.authorization], apiKey: request.headers[Self.apiKeyHeader],
                xAPIKey: request.headers[Self.xAPIKeyHeader])
        else { return nil }
        return self.gateway.authenticate(presented, keys: keys)
    }

    private func serve(
        _ request: Request, operation: String, requestID: String, client: ClientHeaders, connection: (any Channel)?, log: inout RequestLog
    ) async -> Response {
        // One configuration serves the request from here to its end, whatever is reloaded meanwhile.
        let g = self.gateway.snapshot
        // Authentication
        var key: GatewayConfiguration.Key?
        if self.gateway.keysEnabled(g) {
            guard let k = self.authenticate(request, keys: g.keys) else { return Self.error(.invalidAPIKey(), requestID: requestID) }
            key = k
            log.key = k.name
        }
        // Path rules, then the operations this gateway routes: nothing else reaches a provider with its key.
        let rawPath = request.uri.description.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        if let why = PathRules.refusal(rawPath: rawPath) {
            return Self.error(.invalidRequest("The request path has \(why); it is refused.", param: nil, code: "invalid_path"), requestID: requestID)
        }
        guard PathRules.routed.contains(operation) || g.configuration.server.passthrough.contains(operation) else {
            return Self.error(.unknownRoute(method: "POST", path: "/v1/" + operation), requestID: requestID)
        }
        // Body
        if let ct = request.headers[.contentType], !ct.lowercased().hasPrefix("application/json") {
            return Self.error(.invalidRequest("Content-Type must be application/json, got '\(ct.prefix(100))'.", param: nil), requestID: requestID)
        }
        let limit = g.configuration.server.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            return Self.error(.tooLarge(limit: limit), requestID: requestID)
        }
        var req = request
        let buffer: ByteBuffer
        do {
            buffer = try await req.collectBody(upTo: limit)
        } catch {
            return Self.error(.tooLarge(limit: limit), requestID: requestID)
        }
        let parsed: OpenAIRequest
        do {
            parsed = try OpenAIRequest(operation: operation, body: Array(buffer.readableBytesView))
        } catch {
            return Self.error(error, requestID: requestID)
        }
        log.model = parsed.model ?? "-"
        // Model group and allow-list
        guard let group = g.table.group(forModel: parsed.model) else {
            return Self.error(.modelNotFound(parsed.model), requestID: requestID)
        }
        log.group = group.name
        if let key, let allowed = key.models, !allowed.contains(group.name) {
            return Self.error(.modelNotAllowed(parsed.model ?? group.name), requestID: requestID)
        }
        // A request no candidate could ever admit gets a 400, not a 429 whose Retry-After never comes true.
        if let e = self.neverAdmitted(parsed, group: group, key: key, table: g.table) { return Self.error(e, requestID: requestID) }
        // Route
        var upstream = OpenAIUpstreamRequest(path: operation, stream: parsed.stream) { provider in
            parsed.upstreamBody(model: provider.model, includeUsage: parsed.stream)
        }
        upstream.forwardedHeaders = client.forwarded
        upstream.accountHeaders = client.account
        let result: RouteResult<OpenAIUpstreamBody>
        do {
            result = try await g.router.route(upstream, group: group, cost: parsed.cost, key: key?.clientKey, via: self.gateway.transport)
        } catch is CancellationError {
            return Self.error(.upstream(status: 503, "The request was cancelled.", code: "cancelled"), requestID: requestID)
        } catch {
            self.gateway.logger.warning("quota store unavailable", metadata: ["request.id": .string(requestID), "error": .string("\(error)")])
            return Self.error(
                .upstream(status: 503, "The gateway cannot reach its quota store. Retry shortly.", code: "service_unavailable"), requestID: requestID)
        }
        log.attempts = result.attempts.count
        for a in result.attempts {
            if a.outcome != .success { self.gateway.recentErrors.record(provider: a.provider, what: a.summary) }
            let cooldown: (String, Duration)?
            switch a.outcome {
            case .rateLimited(let d): cooldown = ("rate_limited", d)
            case .unauthorized(let d): cooldown = ("unauthorized", d)
            default: cooldown = a.exhaustedCooldown.map { ("exhausted", $0) }
            }
            if let (reason, d) = cooldown {
                self.gateway.logger.warning(
                    "provider cooling down",
                    metadata: [
                        "gateway.provider": .string(a.provider), "gateway.cooldown.reason": .string(reason),
                        "gateway.cooldown_ms": .stringConvertible(d.millisecondsRoundedUp), "http.response.status_code": .string(a.status.map(String.init) ?? "-"),
                        "request.id": .string(requestID),
                    ])
            }
        }
        var headers = Self.baseHeaders(requestID: requestID)
        headers[Self.attemptsHeader] = String(result.attempts.count)
        if let key { Self.addKeyLimitHeaders(&headers, key: key) }

        switch result.outcome {
        case .served(let served, let pending):
            if let r = served.reservation.keyRemainingRequests { headers[HTTPField.Name("x-ratelimit-remaining-requests")!] = String(r) }
            if let t = served.reservation.keyRemainingTokens { headers[HTTPField.Name("x-ratelimit-remaining-tokens")!] = String(t) }
            if let key, let remaining = Self.budgetRemaining(key.limits, served.reservation) {
                headers[Self.budgetRemainingHeader] = Self.usd(remaining)
            }
            log.provider = served.provider.name
            log.fallback = served.tier == .fallback
            headers[Self.providerHeader] = served.provider.name
            log.tokens = served.response.usage
            log.responseModel = served.response.model
            switch served.response.body {
            case .complete(let bytes):
                headers[.contentType] = served.response.headers["content-type"] ?? "application/json"
                if let pending { await pending.settle(.success(usage: served.response.usage)) }
                return Response(status: .init(code: served.response.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            case .events(let events):
                guard let pending else { return Self.error(.upstream(status: 502, "The provider's stream could not be read."), requestID: requestID) }
                log.deferred = true
                let continuer = StreamContinuer(
                    router: g.router, request: upstream, group: group, cost: parsed.cost, key: key?.clientKey, transport: self.gateway.transport)
                let relay = StreamRelay(
                    controller: self, log: log, clientWantsUsage: parsed.clientWantsUsage, connection: connection, operation: operation,
                    choices: parsed.cost.choices, declaresTools: parsed.declaresTools, promptTokens: parsed.cost.promptTokens, attempts: result.attempts.count, continuer: continuer)
                return relay.response(events: events, pending: pending, provider: served.provider, headers: headers)
            }
        case .clientError(let response, let provider):
            log.provider = provider.name
            headers[Self.providerHeader] = provider.name
            headers[.contentType] = response.headers["content-type"] ?? "application/json"
            let body: [UInt8]
            switch response.body {
            case .complete(let b): body = b
            case .events: body = []
            }
            if Self.mayLeakSecret(body, provider: provider) {
                let e = OpenAIError(status: response.status, message: "The provider rejected the request (HTTP \(response.status)).", type: "invalid_request_error", code: response.errorCode)
                return Self.error(e, requestID: requestID, headers: headers)
            }
            return Response(status: .init(code: response.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
        case .exhausted(let retryAfter, _):
            return Self.error(
                .rateLimited("Every provider for '\(group.name)' is at its rate limit or cooling down. Retry after the time in Retry-After.", retryAfter: retryAfter ?? .seconds(1)),
                requestID: requestID, headers: headers)
        case .keyOverBudget(let period, let retryAfter):
            return Self.error(.insufficientQuota(period, retryAfter: retryAfter), requestID: requestID, headers: headers)
        case .keyLimited(let retryAfter):
            if key?.limits.rpm != nil { headers[HTTPField.Name("x-ratelimit-remaining-requests")!] = "0" }
            return Self.error(
                .rateLimited("Rate limit reached for your API key. Retry after the time in Retry-After.", retryAfter: retryAfter ?? .seconds(60)),
                requestID: requestID, headers: headers)
        case .upstreamFailed(let last):
            log.provider = last.provider
            if last.error == .invalidResponse {
                // A response that is not what the operation returns (a 2xx with a non-JSON, empty or
                // shapeless body, or one that is not valid HTTP): never relayed as a success.
                let what =
                    last.status.map { "answered HTTP \($0) with a body that is not a valid '\(operation)' response" } ?? "sent an invalid response"
                return Self.error(
                    .upstream(status: 502, "No provider could serve the request; the last one \(what).", code: "invalid_upstream_response"),
                    requestID: requestID, headers: headers)
            }
            let status: Int
            if last.error.map({ UpstreamError($0).isTimeout }) ?? false {
                status = 504
            } else if last.status == 503 {
                status = 503
            } else {
                status = 502
            }
            let what = last.status.map { "answered HTTP \($0)" } ?? "failed (\(last.error?.rawValue ?? "error"))"
            return Self.error(
                .upstream(status: status, "No provider could serve the request; the last one \(what).", code: status == 504 ? "upstream_timeout" : "upstream_error"),
                requestID: requestID, headers: headers)
        case .contextTooLarge:
            return Self.error(
                .invalidRequest("The request is larger than the context window of every provider of '\(group.name)'.", param: "messages", code: "context_length_exceeded"),
                requestID: requestID, headers: headers)
        case .cancelled:
            return Self.error(.upstream(status: 503, "The request was cancelled.", code: "cancelled"), requestID: requestID, headers: headers)
        }
    }

    // MARK: Helpers

    static let providerHeader = HTTPField.Name("x-multiplexer-provider")!
    static let budgetRemainingHeader = HTTPField.Name("x-multiplexer-budget-remaining-usd")!

    /// What is left of a key's budgets after this request's reservation (its highest possible cost): the
    /// smaller of the daily and the monthly remainder, in micro-USD; `nil` for a key without a budget.
    static func budgetRemaining(_ limits: KeyLimits, _ r: Reservation) -> Int64? {
        var left: Int64?
        if let d = limits.dailyBudgetMicroUSD, let spent = r.keySpentToday { left = max(0, d - spent) }
        if let m = limits.monthlyBudgetMicroUSD, let spent = r.keySpentThisMonth { left = min(left ?? .max, max(0, m - spent)) }
        return left
    }

    /// Micro-USD as a USD amount with six decimals.
    static func usd(_ micro: Int64) -> String {
        let whole = micro / 1_000_000, frac = micro % 1_000_000
        let f = String(frac)
        return "\(whole).\(String(repeating: "0", count: 6 - f.count))\(f)"
    }
    static let attemptsHeader = HTTPField.Name("x-multiplexer-attempts")!
    static let requestIDHeader = HTTPField.Name("x-request-id")!

    /// Every response carries its request id and attempt count (0 when it ended before any upstream call);
    /// `x-multiplexer-provider` is added when a provider answered.
    static func baseHeaders(requestID: String) -> HTTPFields {
        var h = HTTPFields()
        h[Self.requestIDHeader] = requestID
        h[Self.attemptsHeader] = "0"
        return h
    }

    static func addKeyLimitHeaders(_ h: inout HTTPFields, key: GatewayConfiguration.Key) {
        if let rpm = key.limits.rpm { h[HTTPField.Name("x-ratelimit-limit-requests")!] = String(rpm) }
        if let tpm = key.limits.tpm { h[HTTPField.Name("x-ratelimit-limit-tokens")!] = String(tpm) }
    }

    /// Whether an upstream error body might echo the provider's credential.
    static func mayLeakSecret(_ body: [UInt8], provider: Provider) -> Bool {
        guard provider.apiKey.utf8.count >= 4 else { return false }
        let needle = Array(provider.apiKey.utf8)
        return body.count >= needle.count && (0...(body.count - needle.count)).contains { i in body[i..<(i + needle.count)].elementsEqual(needle) }
    }

    static func json(status: HTTPResponse.Status, _ text: String, requestID: String, headers: HTTPFields? = nil) -> Response {
        var h = headers ?? Self.baseHeaders(requestID: requestID)
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func error(_ e: OpenAIError, requestID: String, headers: HTTPFields? = nil) -> Response {
        var h = headers ?? Self.baseHeaders(requestID: requestID)
        for (name, value) in e.headers { h[HTTPField.Name(name)!] = value }
        return Self.json(status: .init(code: e.status), e.json, requestID: requestID, headers: h)
    }
}
