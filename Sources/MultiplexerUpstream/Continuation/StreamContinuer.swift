public import MultiplexerCore
public import Tracing

/// Routes the continuation of a chat stream that broke mid-way (ARCHITECTURE §3 step 7): the original
/// request plus one trailing `assistant` message holding exactly the text already relayed, admitted like
/// any attempt (tier discipline, limits, the group's `max_attempts`) on a candidate that accepts a prefill.
public struct StreamContinuer: Sendable {
    /// The request's model group.
    public let group: ModelGroup
    private let request: OpenAIUpstreamRequest
    private let cost: RequestCost
    private let route: @Sendable (OpenAIUpstreamRequest, RequestCost, RouteContinuation) async throws -> RouteResult<OpenAIUpstreamBody>

    /// - Parameters:
    ///   - router: the router that served the first attempt.
    ///   - request: the original upstream request (its body per provider).
    ///   - group: the model group.
    ///   - cost: the original request's cost.
    ///   - key: the client key, if any (its limits apply to the continuation too).
    ///   - transport: the upstream client.
    ///   - context: the span context continuations are traced under (the request's span).
    public init<C: Clock>(
        router: Router<C>, request: OpenAIUpstreamRequest, group: ModelGroup, cost: RequestCost, key: ClientKey?, transport: OpenAIUpstreamTransport,
        context: InstrumentationContext? = InstrumentationContext.current
    ) where C.Duration == Duration {
        self.group = group
        self.request = request
        self.cost = cost
        // A continuation is routed long after the request's handler returned: its spans join the request's
        // trace through the span context given here.
        self.route = { request, cost, continuation in
            try await InstrumentationContext.withValue(context) {
                try await router.route(request, group: group, cost: cost, key: key, continuation: continuation, via: transport)
            }
        }
    }

    /// The request and cost of a continuation that prefills `text`, of which `completionTokens` were
    /// generated already (taken off `max_tokens`, so the whole answer stays within what was asked for).
    func continuation(prefill text: String, completionTokens: Int) -> (OpenAIUpstreamRequest, RequestCost) {
        let maxTokens = self.cost.maxTokens.map { max(1, $0 - completionTokens) }
        var request = self.request
        let original = self.request.body
        request.body = { provider in ContinuationBody.make(from: original(provider), prefill: text, maxTokens: maxTokens) }
        let prompt = self.cost.promptTokens + (text.isEmpty ? 0 : TokenEstimator.tokensPerMessage + TokenEstimator.textTokens(.string(text)))
        return (request, RequestCost(promptTokens: prompt, maxTokens: maxTokens, choices: 1))
    }

    /// Routes the continuation.
    ///
    /// - Throws: what the router throws (the store at admission, cancellation).
    func route(prefill text: String, completionTokens: Int, attemptsSoFar: Int, excluded: Set<String>) async throws -> (RouteResult<OpenAIUpstreamBody>, RequestCost) {
        let (request, cost) = self.continuation(prefill: text, completionTokens: completionTokens)
        let options = RouteContinuation(attemptsSoFar: attemptsSoFar, excluded: excluded, requiresPrefill: !text.isEmpty)
        return (try await self.route(request, cost, options), cost)
    }
}

/// The body of a continuation request, spliced from the original's bytes.
public enum ContinuationBody {
    /// `body` with `{"role":"assistant","content":<prefill>}` appended to `messages` (nothing when `prefill`
    /// is empty: the continuation is then the original request) and `max_tokens` / `max_completion_tokens`
    /// set to `maxTokens`; every other byte unchanged.
    public static func make(from body: [UInt8], prefill: String, maxTokens: Int?) -> [UInt8] {
        guard let doc = try? JSONParser.parse(body) else { return body }
        var edits: [(Range<Int>, [UInt8])] = []
        if !prefill.isEmpty, let m = doc.member("messages"), case .array(let list) = doc.value["messages"] ?? .null {
            var message = list.isEmpty ? "" : ","
            message += "{\"role\":\"assistant\",\"content\":"
            JSONValue.writeString(prefill, into: &message)
            message += "}"
            let close = m.valueRange.upperBound - 1
            edits.append((close..<close, Array(message.utf8)))
        }
        if let maxTokens {
            for name in ["max_tokens", "max_completion_tokens"] {
                if let m = doc.member(name), doc.value[name]?.intValue != nil { edits.append((m.valueRange, Array(String(maxTokens).utf8))) }
            }
        }
        edits.sort { $0.0.lowerBound < $1.0.lowerBound }
        var out: [UInt8] = []
        out.reserveCapacity(body.count + prefill.utf8.count + 64)
        var pos = 0
        for (range, bytes) in edits {
            out += body[pos..<range.lowerBound]
            out += bytes
            pos = range.upperBound
        }
        out += body[pos...]
        return out
    }
}
