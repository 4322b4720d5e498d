public import MultiplexerCore

/// What a streamed chat completion has relayed so far, and how the events of its continuations are
/// rewritten so that the client sees one stream (ARCHITECTURE §3 step 7). No I/O: the
/// ``ContinuingEventStream`` feeds it every upstream event and asks it what to relay.
///
/// - The first attempt's events are relayed byte for byte. They are only *kept* (the `data` strings, no
///   parsing), and parsed once if the stream breaks: the happy path costs an array append per event.
/// - A continuation's events are rewritten: the first attempt's `id` and `created`, no `role` delta (a
///   chunk that carried nothing else is dropped), each chunk's `model` as the provider sent it, and the
///   usage (a usage-only chunk, or usage on any chunk) replaced by the sum over every attempt.
/// - Tool-call deltas, a choice other than index 0, and `n > 1` make the stream not continuable.
public struct StreamContinuationState: Sendable {
    /// What to do with one upstream event.
    public enum Step: Sendable, Hashable {
        /// Relay this event (`usageOnly`: it carries only the usage, forwarded if the client asked).
        case relay(SSEEvent, usageOnly: Bool)
        /// Relay nothing (a continuation's `role` delta).
        case drop
        /// An in-band error event (`data: {"error": …}`) on a continuable stream: a break, not an answer.
        case error(String)
    }

    /// Whether the request may be continued at all: `chat/completions` with `n` ≤ 1 that declares no tools.
    public let eligible: Bool
    /// 0 for the first attempt, then one more per continuation.
    public private(set) var attempt = 0
    /// The first attempt's events, kept unparsed until it breaks.
    private var kept: [String] = []
    /// The text relayed by the attempts before the current one, and — once the first attempt broke — by
    /// the current one so far.
    public private(set) var text = ""
    /// Bytes of text the current attempt relayed (known for the first attempt once it broke).
    private var attemptTextBytes = 0
    private var firstID: JSONValue?
    private var firstCreated: JSONValue?
    /// A tool-call delta or a second choice was relayed: the answer cannot be continued as text.
    public private(set) var notText = false
    /// The usage the current attempt reported (its final chunk).
    public private(set) var reported: TokenUsage?
    /// What the attempts that broke are charged: their reported usage, else the estimate of their prompt and
    /// of the text they relayed.
    public private(set) var earlier: TokenUsage?

    /// - Parameters:
    ///   - operation: the path after `/v1/`.
    ///   - choices: the request's `n`.
    ///   - declaresTools: the request offers `tools` (or `functions`): its answer may be a tool call, which a
    ///     text prefill cannot continue, so it is never continued.
    public init(operation: String, choices: Int, declaresTools: Bool = false) {
        self.eligible = operation == "chat/completions" && choices <= 1 && !declaresTools
    }

    /// Whether a break now can be continued.
    public var continuable: Bool { self.eligible && !self.notText }

    /// The usage of the whole request so far: the attempts that broke plus what the current one reported.
    public var totalUsage: TokenUsage? {
        guard let e = self.earlier else { return self.reported }
        guard let r = self.reported else { return e }
        return TokenUsage(promptTokens: e.promptTokens + r.promptTokens, completionTokens: e.completionTokens + r.completionTokens)
    }

    /// Takes one upstream event (not `[DONE]`) of the current attempt.
    public mutating func take(_ event: SSEEvent) -> Step {
        if self.attempt == 0 {
            if self.eligible, Self.isErrorEvent(event.data) { return .error(event.data) }
            var usageOnly = false
            if let u = StreamUsage.usage(in: event.data, previous: self.reported) {
                self.reported = u.usage
                usageOnly = u.usageOnly
            }
            if self.eligible && !usageOnly { self.kept.append(event.data) }
            return .relay(event, usageOnly: usageOnly)
        }
        if Self.isErrorEvent(event.data) { return .error(event.data) }
        guard let doc = try? JSONParser.parse(Array(event.data.utf8)), case .object(var chunk) = doc.value else {
            // Not JSON: relayed as it came, never a reason to abort.
            return .relay(event, usageOnly: false)
        }
        if let id = self.firstID { chunk["id"] = id }
        if let created = self.firstCreated { chunk["created"] = created }
        var usageOnly = false
        if let u = chunk["usage"].flatMap(OpenAIResponseInspector.usage(from:)) {
            self.reported = u
            usageOnly = chunk["choices"]?.arrayValue?.isEmpty ?? true
            if let total = self.totalUsage, case .object(var usage) = chunk["usage"] ?? .null {
                usage["prompt_tokens"] = .number(Double(total.promptTokens))
                usage["completion_tokens"] = .number(Double(total.completionTokens))
                usage["total_tokens"] = .number(Double(total.totalTokens))
                chunk["usage"] = .object(usage)
            }
        }
        var droppedRole = false
        if case .array(var choices)? = chunk["choices"] {
            for (i, choice) in choices.enumerated() {
                guard case .object(var c) = choice else { continue }
                if (c["index"]?.intValue ?? 0) != 0 { self.notText = true }
                guard case .object(var delta)? = c["delta"] else { continue }
                if delta.removeValue(forKey: "role") != nil { droppedRole = true }
                if delta["tool_calls"].map({ $0 != .null }) ?? false || delta["function_call"].map({ $0 != .null }) ?? false { self.notText = true }
                if case .string(let s)? = delta["content"] {
                    self.text += s
                    self.attemptTextBytes += s.utf8.count
                }
                c["delta"] = .object(delta)
                choices[i] = .object(c)
            }
            chunk["choices"] = .array(choices)
            if droppedRole, chunk["usage"] == nil || chunk["usage"] == .null, Self.carriesNothing(choices) { return .drop }
        }
        return .relay(SSEEvent(event: event.event, data: JSONValue.object(chunk).jsonText, id: event.id), usageOnly: usageOnly)
    }

    /// The current attempt broke: returns what it is charged (its reported usage, else `promptTokens` and
    /// the estimate of the text it relayed). Call once per attempt, before ``beginContinuation()``.
    public mutating func broke(promptTokens: Int) -> TokenUsage {
        if self.attempt == 0 { self.parseKept() }
        let charged =
            self.reported ?? TokenUsage(promptTokens: promptTokens, completionTokens: TokenEstimator.tokens(forCharacters: self.attemptTextBytes))
        let e = self.earlier ?? TokenUsage(promptTokens: 0, completionTokens: 0)
        self.earlier = TokenUsage(promptTokens: e.promptTokens + charged.promptTokens, completionTokens: e.completionTokens + charged.completionTokens)
        self.reported = nil
        self.attemptTextBytes = 0
        return charged
    }

    /// A continuation was admitted: its events are rewritten from now on.
    public mutating func beginContinuation() {
        self.attempt += 1
        self.reported = nil
        self.attemptTextBytes = 0
    }

    /// Recovers the text, `id` and `created` of the first attempt from its kept events.
    private mutating func parseKept() {
        for data in self.kept {
            guard let m = JSONParser.members(["id", "created", "choices"], in: Array(data.utf8)) else { continue }
            if self.firstID == nil, let id = m["id"], id != .null { self.firstID = id }
            if self.firstCreated == nil, let c = m["created"], c != .null { self.firstCreated = c }
            for choice in m["choices"]?.arrayValue ?? [] {
                if (choice["index"]?.intValue ?? 0) != 0 { self.notText = true }
                let delta = choice["delta"]
                if delta?["tool_calls"].map({ $0 != .null }) ?? false || delta?["function_call"].map({ $0 != .null }) ?? false { self.notText = true }
                if case .string(let s)? = delta?["content"] {
                    self.text += s
                    self.attemptTextBytes += s.utf8.count
                }
            }
        }
        self.kept = []
    }

    /// Whether every choice's delta holds nothing but nulls and empty strings, with no finish reason.
    private static func carriesNothing(_ choices: [JSONValue]) -> Bool {
        choices.allSatisfy { c in
            guard c["finish_reason"] == nil || c["finish_reason"] == .null else { return false }
            guard case .object(let d)? = c["delta"] else { return true }
            return d.values.allSatisfy { $0 == .null || $0 == .string("") }
        }
    }

    /// `data: {"error": …}` — what OpenAI-compatible servers send when they fail mid-stream.
    static func isErrorEvent(_ data: String) -> Bool {
        let u = data.utf8
        return u.starts(with: #"{"error""#.utf8) || u.starts(with: #"{ "error""#.utf8)
    }
}
