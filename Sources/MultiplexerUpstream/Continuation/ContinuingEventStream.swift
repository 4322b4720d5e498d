public import MultiplexerCore

/// The events of a served stream, continued on the next provider when it breaks mid-way — the one
/// implementation the gateway's relay and the library's streams share (ARCHITECTURE §3 step 7).
///
/// Iterate it from one task. It yields the events to relay: the first attempt's as they came, then a
/// continuation's rewritten by ``StreamContinuationState`` (same `id` and `created`, no second `role`
/// delta, usage summed over the attempts). When the current attempt breaks (a reset, a protocol error,
/// an idle timeout, an oversized event, an in-band `{"error": …}` event) after the stream relayed text,
/// it settles that attempt by what it relayed, asks the ``StreamContinuer`` for a continuation and goes
/// on reading it; only when no continuation can be had does ``next()`` throw, and the caller ends the
/// stream with `upstream_stream_error`.
///
/// The caller settles the end: ``settle(_:)`` with ``End/completed`` after `[DONE]` (or a clean close),
/// ``End/broken`` after ``next()`` threw, ``End/abandoned`` when the client went away.
public struct ContinuingEventStream: Sendable {
    /// One step of the stream.
    public enum Item: Sendable {
        /// An event to relay; `usageOnly` when it carries only the usage (forwarded if the client asked).
        case event(SSEEvent, usageOnly: Bool)
        /// The stream is complete (`[DONE]`, or a clean close without it).
        case end
    }

    /// How the caller ended the stream.
    public enum End: Sendable, Hashable {
        case completed
        case broken
        case abandoned
    }

    /// The current attempt's reservation (renewed and cancelled from outside through it).
    public let reservation: StreamReservation
    private var iterator: SSEEventStream.AsyncIterator
    private var state: StreamContinuationState
    private let continuer: StreamContinuer?
    /// The prompt estimate of the current attempt (what a break charges besides the relayed text).
    private var promptTokens: Int
    /// Attempts made so far for the request (the first route's, then the continuations').
    private var attemptsSoFar: Int
    /// Providers whose streams broke.
    private var broken: Set<String> = []
    /// A break seen while draining buffered events, handled by the next ``next()``.
    private var pendingBreak: UpstreamError?
    /// The charge of the attempt that broke, once computed.
    private var brokenCharge: TokenUsage?
    /// The upstream attempts of the continuations, in order (for logs and metrics).
    public private(set) var continuationAttempts: [AttemptRecord] = []
    /// The providers that served the stream, in order (one unless it was continued).
    public private(set) var providers: [String]

    /// - Parameters:
    ///   - events: the first attempt's events.
    ///   - reservation: the first attempt's reservation.
    ///   - operation: the path after `/v1/`.
    ///   - choices: the request's `n`.
    ///   - declaresTools: the request offers tools (never continued).
    ///   - promptTokens: the request's prompt estimate.
    ///   - attempts: the attempts the first route made.
    ///   - continuer: routes continuations; `nil` never continues.
    public init(
        events: SSEEventStream, reservation: StreamReservation, operation: String, choices: Int, declaresTools: Bool, promptTokens: Int,
        attempts: Int, continuer: StreamContinuer?
    ) {
        self.iterator = events.makeAsyncIterator()
        self.reservation = reservation
        self.state = StreamContinuationState(operation: operation, choices: choices, declaresTools: declaresTools)
        self.continuer = self.state.eligible ? continuer : nil
        self.promptTokens = promptTokens
        self.attemptsSoFar = attempts
        self.providers = [reservation.provider.name]
    }

    /// Whether the stream moved to a continuation.
    public var continued: Bool { self.state.attempt > 0 }

    /// The request's usage so far (summed over its attempts; `nil` while none was reported or charged).
    public var usage: TokenUsage? { self.state.totalUsage }

    /// The next event if one is already buffered, without waiting; `nil` when ``next()`` must be awaited.
    public mutating func nextIfBuffered() -> Item? {
        while self.pendingBreak == nil, let event = self.iterator.nextIfBuffered() {
            if event.isDone { return .end }
            switch self.state.take(event) {
            case .relay(let e, let usageOnly): return .event(e, usageOnly: usageOnly)
            case .drop: continue
            case .error(let data): self.pendingBreak = Self.inBandError(data)
            }
        }
        return nil
    }

    /// The next item, waiting for it.
    ///
    /// - Throws: the break of the last attempt when no continuation could be had (or the stream is not
    ///   continuable); `cancelled` when the transfer was cancelled.
    public mutating func next() async throws(UpstreamError) -> Item {
        while true {
            if let failure = self.pendingBreak {
                self.pendingBreak = nil
                try await self.continueAfter(failure)
                continue
            }
            if let item = self.nextIfBuffered() { return item }
            if self.pendingBreak != nil { continue }
            let event: SSEEvent?
            do {
                event = try await self.iterator.next()
            } catch {
                try await self.continueAfter(error)
                continue
            }
            guard let event, !event.isDone else { return .end }
            switch self.state.take(event) {
            case .relay(let e, let usageOnly): return .event(e, usageOnly: usageOnly)
            case .drop: continue
            case .error(let data): self.pendingBreak = Self.inBandError(data)
            }
        }
    }

    /// Settles the current attempt as the caller ended the stream (nothing if it is settled already).
    public mutating func settle(_ end: End) async {
        switch end {
        case .completed:
            await self.reservation.settle(.success(usage: self.state.reported))
        case .broken:
            guard !self.reservation.isSettled else { return }
            // A stream whose text is not tracked (not continuable) keeps its whole reservation: what it
            // relayed is not known.
            await self.reservation.settle(.broken(usage: self.state.eligible ? self.charge() : nil))
        case .abandoned:
            await self.reservation.settle(.abandoned)
        }
    }

    /// What the current attempt is charged if it broke now.
    private mutating func charge() -> TokenUsage {
        if let c = self.brokenCharge { return c }
        let c = self.state.broke(promptTokens: self.promptTokens)
        self.brokenCharge = c
        return c
    }

    /// Continues after `failure`, or throws it.
    private mutating func continueAfter(_ failure: UpstreamError) async throws(UpstreamError) {
        guard failure.kind != .cancelled, let continuer = self.continuer, !self.reservation.isCancelled else { throw failure }
        let charged = self.charge()
        guard self.state.continuable else { throw failure }
        // The attempt that broke is settled by what it relayed; its request is counted when the stream ends.
        let provider = self.reservation.provider
        guard let pending = self.reservation.claim() else { throw failure }
        await pending.withoutModelEvent().settle(.broken(usage: charged))
        self.broken.insert(provider.name)

        let routed: (RouteResult<OpenAIUpstreamBody>, RequestCost)
        do {
            routed = try await continuer.route(
                prefill: self.state.text, completionTokens: self.state.earlier?.completionTokens ?? 0, attemptsSoFar: self.attemptsSoFar,
                excluded: self.broken)
        } catch {
            await pending.record(ModelEvent(group: continuer.group.name))
            throw error is CancellationError ? UpstreamError(.cancelled, message: "cancelled") : failure
        }
        let (result, cost) = routed
        self.attemptsSoFar += result.attempts.count
        self.continuationAttempts += result.attempts
        guard case .served(let served, let next) = result.outcome, let next else { throw failure }
        guard case .events(let events) = served.response.body else {
            await next.settle(.broken())
            throw failure
        }
        guard self.reservation.replace(pending: next.markedContinued(), provider: served.provider, events: events) else {
            await next.settle(.abandoned)
            throw UpstreamError(.cancelled, message: "cancelled")
        }
        self.iterator = events.makeAsyncIterator()
        self.promptTokens = cost.promptTokens
        self.brokenCharge = nil
        self.state.beginContinuation()
        self.providers.append(served.provider.name)
    }

    private static func inBandError(_ data: String) -> UpstreamError {
        let message = (try? JSONParser.parse(Array(data.utf8)))?.value["error"]?["message"]?.stringValue ?? "an error event"
        return UpstreamError(.invalidResponse, message: "The provider ended the stream with an error: \(message.prefix(200))")
    }
}
