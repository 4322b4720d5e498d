import MultiplexerCore
import MultiplexerUpstream
import Tracing

/// A 2xx answer and the registered model that gave it.
struct Dispatched: Sendable {
    var response: UpstreamResponse<OpenAIUpstreamBody>
    /// Pending for a stream (settled when it ends); `nil` once settled.
    var pending: PendingSettlement?
    var entry: Multiplexer.Entry
    /// Continues a chat stream that breaks mid-way (ARCHITECTURE §3 step 7); `nil` for other calls.
    var continuer: StreamContinuer?
    /// The call's prompt estimate, its `n`, and the attempts the route made.
    var cost: RequestCost
    var attempts: Int
    /// The call offers tools (a stream is then never continued).
    var declaresTools: Bool
    /// Every registered model by name (a continued stream is served by more than one).
    var entries: [String: Multiplexer.Entry]
}

extension Multiplexer {
    /// Routes one call through the core ``MultiplexerCore/Router`` and turns every way it can end other than
    /// a 2xx into a ``MultiplexerError``.
    ///
    /// - Parameters:
    ///   - operation: the path below `/v1/`, e.g. `chat/completions`.
    ///   - body: the request object without `model` (set per provider).
    ///   - stream: whether to ask for server-sent events (then usage is always requested, to settle tokens).
    func dispatch(operation: String, body: JSONValue, stream: Bool) async throws -> Dispatched {
        guard let routing = self.routing else {
            throw MultiplexerError(
                .allModelsExhausted, "No models available in the multiplexer. Register one with addModel(_:weight:modelName:).")
        }
        guard case .object(let members) = body else { throw MultiplexerError(.invalidRequest, "The request must be a JSON object.") }
        let upstream = OpenAIUpstreamRequest(path: operation, stream: stream) { provider in
            var m = members
            m["model"] = .string(provider.model)
            if stream {
                m["stream"] = .bool(true)
                var options: [String: JSONValue] = [:]
                if case .object(let o)? = m["stream_options"] { options = o }
                options["include_usage"] = .bool(true)
                m["stream_options"] = .object(options)
            } else {
                m["stream"] = nil
                m["stream_options"] = nil
            }
            return Array(JSONValue.object(m).jsonText.utf8)
        }
        let cost = TokenEstimator.cost(of: body, operation: operation)
        let result: RouteResult<OpenAIUpstreamBody>
        var callContext = InstrumentationContext.current
        do {
            if let tracer = self.tracer {
                // One span per call, the parent of its admission and attempt spans.
                let span = tracer.startSpan(
                    "\(OpenAIUpstreamTransport.operationName(path: operation)) \(routing.group.name)", context: InstrumentationContext.current ?? .topLevel)
                span.attributes["gen_ai.operation.name"] = OpenAIUpstreamTransport.operationName(path: operation)
                span.attributes["gen_ai.request.model"] = routing.group.name
                defer { span.end() }
                callContext = span.context
                do {
                    result = try await InstrumentationContext.withValue(span.context) {
                        try await routing.router.route(upstream, group: routing.group, cost: cost, key: self.budgetKey, via: self.transport)
                    }
                } catch {
                    span.setStatus(SpanStatus(code: .error, message: "the call could not be routed"))
                    throw error
                }
                span.attributes["multiplexer.attempts"] = result.attempts.count
                if case .served(let served, _) = result.outcome { span.attributes["gen_ai.provider.name"] = served.provider.name }
            } else {
                result = try await routing.router.route(upstream, group: routing.group, cost: cost, key: self.budgetKey, via: self.transport)
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw MultiplexerError(.serviceUnavailable, "The quota store is unreachable (\(error)). Retry shortly.", underlyingError: error)
        }
        let attempts = result.attempts.map {
            MultiplexerError.Attempt(modelName: $0.provider, isFallback: $0.tier == .fallback, statusCode: $0.status, failure: $0.error?.rawValue, latency: $0.latency)
        }
        func entry(_ name: String) -> Entry? { routing.entries[name] }

        switch result.outcome {
        case .served(let served, let pending):
            guard let e = entry(served.provider.name) else {
                await pending?.settle(.abandoned)
                throw MultiplexerError(.unexpected, "Served by an unknown model '\(served.provider.name)'.")
            }
            let continuer =
                stream && operation == "chat/completions"
                ? StreamContinuer(
                    router: routing.router, request: upstream, group: routing.group, cost: cost, key: self.budgetKey, transport: self.transport,
                    context: callContext) : nil
            return Dispatched(
                response: served.response, pending: pending, entry: e, continuer: continuer, cost: cost, attempts: result.attempts.count,
                declaresTools: ["tools", "functions"].contains { (members[$0].map { $0 != .null && $0.arrayValue?.isEmpty != true }) ?? false },
                entries: routing.entries)

        case .clientError(let response, let provider):
            throw Self.clientError(response, entry: entry(provider.name), provider: provider, attempts: attempts)

        case .keyOverBudget(let period, let retryAfter):
            return try Self.fail(MultiplexerError(
                .insufficientQuota, "The multiplexer's \(period == .daily ? "daily" : "monthly") budget is spent. Retry after \(Self.seconds(retryAfter)).",
                retryAfter: retryAfter, attempts: attempts))

        case .exhausted(let retryAfter, _), .keyLimited(let retryAfter):
            let wait = retryAfter.map { " Retry after \(Self.seconds($0))." } ?? ""
            if let last = result.attempts.last, last.outcome.isRateLimited {
                let e = entry(last.provider)
                return try Self.fail(MultiplexerError(
                    .rateLimited,
                    "Rate limit exceeded for model '\(last.provider)' at \(e?.endpoint.baseURL ?? "?") (HTTP \(last.status ?? 429)); "
                        + "every other model is rate limited, cooling down or at a limit.\(wait)",
                    modelName: last.provider, endpoint: e?.endpoint.baseURL, statusCode: last.status, retryAfter: retryAfter, attempts: attempts))
            }
            return try Self.fail(MultiplexerError(
                .allModelsExhausted, "All models are temporarily rate limited, cooling down or at their limits.\(wait)", retryAfter: retryAfter,
                attempts: attempts))

        case .upstreamFailed(let last):
            let e = entry(last.provider)
            let at = "model '\(last.provider)' at \(e?.endpoint.baseURL ?? "?")"
            let how = last.status.map { "HTTP \($0)" } ?? (last.error?.rawValue ?? "error")
            if case .unauthorized = last.outcome {
                return try Self.fail(MultiplexerError(
                    .authentication, "Authentication failed for \(at) (\(how)); no other model could serve the request.", modelName: last.provider,
                    endpoint: e?.endpoint.baseURL, statusCode: last.status, attempts: attempts))
            }
            if last.error == .invalidResponse {
                // A 2xx whose body is not what the operation returns (or a response that is not valid HTTP):
                // the router failed over from it like from any failure, and it was the last one left.
                return try Self.fail(MultiplexerError(
                    .invalidResponse,
                    "Invalid response from \(at) (\(how), not a valid '\(operation)' response); no other model could serve the request.",
                    modelName: last.provider, endpoint: e?.endpoint.baseURL, statusCode: last.status, attempts: attempts))
            }
            return try Self.fail(MultiplexerError(
                .serviceUnavailable, "Service unavailable for \(at) (\(how)); no other model could serve the request.", modelName: last.provider,
                endpoint: e?.endpoint.baseURL, statusCode: last.status, attempts: attempts))

        case .contextTooLarge:
            throw MultiplexerError(.invalidRequest, "The request is larger than the context window of every registered model.", attempts: attempts)

        case .cancelled:
            if Task.isCancelled { throw CancellationError() }
            throw MultiplexerError(
                .serviceUnavailable, "The multiplexer is not running: call run() (or use withMultiplexer) and do not call shutdown() first.",
                attempts: attempts)
        }
    }

    private static func fail(_ error: MultiplexerError) throws -> Dispatched { throw error }

    /// A 4xx the provider answered (other than 401/403/429, which the router handles), as the reference's
    /// error classes: 404 → model not found, 400/413/422 → invalid request, others → unexpected.
    static func clientError(
        _ response: UpstreamResponse<OpenAIUpstreamBody>, entry: Entry?, provider: Provider, attempts: [MultiplexerError.Attempt]
    ) -> MultiplexerError {
        var upstreamMessage: String?
        if case .complete(let bytes) = response.body, let doc = try? JSONParser.parse(bytes) {
            upstreamMessage = doc.value["error"]?["message"]?.stringValue ?? doc.value["error"]?.stringValue ?? doc.value["message"]?.stringValue
        }
        if let m = upstreamMessage, provider.apiKey.utf8.count >= 4 {
            upstreamMessage = m.replacing(provider.apiKey, with: "<redacted>")
        }
        let name = provider.name
        let url = provider.baseURL
        let status = response.status
        let detail = upstreamMessage.map { ": \($0)" } ?? ""
        let (code, message): (MultiplexerError.Code, String) =
            switch status {
            case 404: (.modelNotFound, "Model '\(name)' not found at endpoint \(url) (HTTP 404)\(detail)")
            case 400, 413, 422: (.invalidRequest, "Invalid request for model '\(name)' at \(url) (HTTP \(status))\(detail)")
            default: (.unexpected, "Unexpected error for model \(name): HTTP \(status)\(detail)")
            }
        return MultiplexerError(code, message, modelName: name, endpoint: url, statusCode: status, upstreamMessage: upstreamMessage, attempts: attempts)
    }

    /// `1.5s`, `2s`, `120ms`.
    static func seconds(_ d: Duration) -> String {
        let ms = d.millisecondsRoundedUp
        if ms < 1000 { return "\(ms)ms" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(Double(ms / 100) / 10)s"
    }
}

extension Outcome {
    var isRateLimited: Bool {
        if case .rateLimited = self { return true }
        return false
    }
}
