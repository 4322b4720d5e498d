import HTTPTypes
import Hummingbird
import Logging
import MultiplexerCore
import MultiplexerUpstream
import NIOCore
import Prometheus
import Synchronization

/// Relays a provider's server-sent events to the client as they arrive, and settles the reservation
/// when the stream ends.
///
/// - Each event is written as soon as it is read — events that arrived in one read from the provider in
///   one write, never waiting for a later one; awaiting the write gives back-pressure all the way to the
///   upstream transfer.
/// - Usage comes from the final chunk (the gateway asked upstream for `stream_options.include_usage`);
///   that usage-only chunk is forwarded only if the client asked for it.
/// - A stream that closes cleanly without `[DONE]` is finalised: the gateway sends `data: [DONE]`.
/// - A stream that breaks after bytes were sent ends with `data: {"error": …}` and **no** `[DONE]`, so
///   it is never presented as complete.
/// - A client that goes away ends the relay; dropping the iterator aborts the upstream transfer.
struct StreamRelay: Sendable {
    let controller: OpenAIController
    let log: OpenAIController.RequestLog
    let clientWantsUsage: Bool
    /// The client's connection: the watchdog ends the relay within a second of it closing (a reset while
    /// the provider is silent is otherwise seen only at the next write).
    let connection: (any Channel)?

    /// Leases of long streams are renewed at most this far apart (and at least three times per lease).
    static let leaseRenewal: Duration = MultiplexerCore.Provider.leaseRenewal

    func response(events: SSEEventStream, pending: PendingSettlement, headers: HTTPFields) -> Response {
        var h = headers
        h[.contentType] = "text/event-stream"
        h[.cacheControl] = "no-cache"
        let relay = self
        let owner = StreamOwner(pending: pending, relay: self)
        return Response(status: .ok, headers: h, body: ResponseBody { writer in
            try await relay.run(events: events, owner: owner, writer: &writer)
        })
    }

    /// Relays the stream while a watchdog beside it renews the lease (while the upstream transfer is open,
    /// whatever the client reads) and drops a client whose connection stopped accepting bytes.
    private func run(events: SSEEventStream, owner: StreamOwner, writer: inout any ResponseBodyWriter) async throws {
        owner.markStarted()
        let gateway = self.controller.gateway
        let lease = gateway.table.providers[owner.pending.reservation.provider]?.leaseDuration ?? MultiplexerCore.Provider.lease
        let renewEvery = min(Self.leaseRenewal, lease / 3)
        let writeTimeout = gateway.configuration.server.clientWriteTimeout
        let task = withUnsafeCurrentTask { $0.map(RelayTask.init) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await owner.watch(
                    renewEvery: renewEvery, lease: lease, writeTimeout: writeTimeout, task: task, events: events,
                    shutdownDeadline: { gateway.state.streamDeadline }, connection: self.connection)
            }
            let outcome = await self.relay(events: events, owner: owner, writer: &writer)
            group.cancelAll()
            if let failure = outcome { throw failure }
        }
    }

    /// Relays every event; settles; logs. Returns the error that ended it if the client's connection must
    /// be closed (the client went away, or accepted no bytes for the write timeout).
    private func relay(events: SSEEventStream, owner: StreamOwner, writer: inout any ResponseBodyWriter) async -> (any Error)? {
        var iterator = events.makeAsyncIterator()
        var usage: TokenUsage?
        var result: SettlementResult = .abandoned
        var status = 200
        var failure: (any Error)?
        // Events that arrived together (one read from the provider) go out in one write; the buffer is
        // written before the relay waits for more, so no event is ever held back.
        var out = ByteBuffer()
        do {
            while true {
                let event: SSEEvent?
                if let buffered = iterator.nextIfBuffered() {
                    event = buffered
                } else {
                    if out.readableBytes > 0 {
                        try await owner.write(out, to: &writer)
                        out.clear()
                    }
                    do {
                        event = try await iterator.next()
                    } catch {
                        // The provider broke mid-stream (reset, idle timeout): say so, and never send [DONE].
                        // (A cancelled transfer is the client's doing: the write below fails the same way.)
                        try Task.checkCancellation()
                        if owner.shuttingDown {
                            // The node is stopping and this stream outlived the deadline: say so, end the
                            // body cleanly (no [DONE]: the answer is incomplete), settle before exit.
                            let e = OpenAIError(
                                status: 503, message: "The server is shutting down; the stream was ended before it finished.",
                                type: "server_error", code: "server_shutting_down")
                            out.writeString("data: \(e.json)\n\n")
                            try await owner.write(out, to: &writer)
                            result = .abandoned
                            status = 503
                            break
                        }
                        let e = OpenAIError.upstream(
                            status: 502, "The provider's stream broke before it finished (\(error.kind.rawValue)).", code: "upstream_stream_error")
                        out.writeString("data: \(e.json)\n\n")
                        try await owner.write(out, to: &writer)
                        result = .broken
                        status = 502
                        break
                    }
                }
                guard let event, !event.isDone else {
                    out.writeString("data: [DONE]\n\n")
                    try await owner.write(out, to: &writer)
                    result = .success(usage: usage)
                    break
                }
                if let u = Self.usage(in: event.data, previous: usage) {
                    usage = u.usage
                    if u.usageOnly && !self.clientWantsUsage { continue }
                }
                Self.frame(event, into: &out)
            }
            // Settled before the response ends: a client that has read the whole stream finds the
            // provider's windows and counters already updated (its next request is admitted on them).
            await owner.settle(result)
            try await owner.write(nil, to: &writer)
        } catch {
            // Writing to the client failed (it went away), or it accepted nothing for the write timeout (the
            // watchdog cancelled this task). What was sent is not a complete answer.
            if !owner.isSettled {
                status = owner.timedOut ? 408 : 499
                if owner.timedOut {
                    self.controller.gateway.logger.info(
                        "client write timeout: the client accepted no bytes; disconnected",
                        metadata: ["request.id": .string(self.log.requestID)])
                }
            }
            failure = error
        }
        await owner.settle(.abandoned)
        self.finish(usage: usage, status: status)
        return failure
    }

    /// The request's log line and gauges, once per stream.
    func finish(usage: TokenUsage?, status: Int) {
        var log = self.log
        log.tokens = usage
        self.controller.gateway.metrics.inFlight.decrement()
        self.controller.finish(log, status: status)
    }

    /// Appends `e` in SSE framing: `event:` if named, one `data:` line per line of data, a blank line.
    static func frame(_ e: SSEEvent, into out: inout ByteBuffer) {
        if let name = e.event {
            out.writeString("event: ")
            out.writeString(name)
            out.writeString("\n")
        }
        for line in e.data.split(separator: "\n", omittingEmptySubsequences: false) {
            out.writeString("data: ")
            out.writeSubstring(line)
            out.writeString("\n")
        }
        out.writeString("\n")
    }

    /// The usage in a chunk, and whether the chunk carries nothing else (`choices` empty).
    ///
    /// Besides chat and completions chunks (`usage` with `prompt_tokens`), this reads the usage of the
    /// passthrough streams: `responses` (`response.completed`: `response.usage` with `input_tokens` and
    /// `output_tokens`) and Anthropic's `messages` (`message_start`: `message.usage.input_tokens`; each
    /// `message_delta`: `usage.output_tokens`, the running total — merged with `previous`). Those events
    /// are always forwarded (`usageOnly` is false).
    static func usage(in data: String, previous: TokenUsage? = nil) -> (usage: TokenUsage, usageOnly: Bool)? {
        guard data.contains("\"usage\""), let m = JSONParser.members(["usage", "choices", "type", "response", "message"], in: Array(data.utf8))
        else { return nil }
        switch m["type"]?.stringValue {
        case "response.completed":
            guard let u = m["response"]?["usage"].flatMap(OpenAIResponseInspector.usage(from:)) else { return nil }
            return (u, false)
        case "message_start":
            guard let input = m["message"]?["usage"]?["input_tokens"]?.intValue else { return nil }
            let output = m["message"]?["usage"]?["output_tokens"]?.intValue ?? 0
            return (TokenUsage(promptTokens: input, completionTokens: max(output, previous?.completionTokens ?? 0)), false)
        case "message_delta":
            guard let output = m["usage"]?["output_tokens"]?.intValue else { return nil }
            let input = m["usage"]?["input_tokens"]?.intValue ?? previous?.promptTokens ?? 0
            return (TokenUsage(promptTokens: input, completionTokens: output), false)
        default:
            guard let u = m["usage"].flatMap(OpenAIResponseInspector.usage(from:)) else { return nil }
            return (u, m["choices"]?.arrayValue?.isEmpty ?? true)
        }
    }
}

/// The cancellable handle of the task that relays a stream, for its watchdog (a child of that task).
///
/// Safety (`@unchecked Sendable`): `UnsafeCurrentTask` is only valid while its task runs. The watchdog that
/// holds this is a child task of a group inside that task, cancelled and awaited before the task leaves the
/// group, so the handle never outlives the task; `cancel()` is safe from any thread.
struct RelayTask: @unchecked Sendable {
    let task: UnsafeCurrentTask
    func cancel() { self.task.cancel() }
}

/// The one owner of a stream's reservation, from the moment its response exists to its settlement.
///
/// - ``settle(_:)`` settles exactly once, whichever path ends the stream first.
/// - ``watch(renewEvery:lease:writeTimeout:task:events:shutdownDeadline:connection:)`` renews the in-flight lease
///   while the stream is open (not when the client reads), cancels the relay when a write has made no
///   progress for the write timeout, and ends the upstream transfer at the node's shutdown deadline.
/// - If the response is dropped before its body ever ran (the client reset its connection before the
///   head could be written), `deinit` settles it as abandoned, counts it and logs the request (status 499).
///   A stream whose body ran and still reaches `deinit` unsettled is a bug: it is logged at error.
final class StreamOwner: Sendable {
    /// Settles once and renews (shared with the library's streams).
    let reservation: ReservationOwner
    var pending: PendingSettlement { self.reservation.pending }
    private let relay: StreamRelay
    private struct State {
        var started = false
        var timedOut = false
        var shuttingDown = false
    }
    private let state = Mutex(State())
    /// When the write in progress began (ns on the continuous clock since `origin`), 0 when none is.
    private let writeStarted = Atomic<Int64>(0)
    private let origin = ContinuousClock.now

    init(pending: PendingSettlement, relay: StreamRelay) {
        let logger = relay.controller.gateway.logger, requestID = relay.log.requestID
        self.reservation = ReservationOwner(pending) { pending in
            // StreamOwner's deinit claims it first; reaching this means a path lost the owner unsettled.
            logger.error("a stream's reservation was released unsettled: settling it as abandoned", metadata: ["request.id": .string(requestID)])
            Task { await pending.settle(.abandoned) }
        }
        self.relay = relay
    }

    var isSettled: Bool { self.reservation.isSettled }
    var timedOut: Bool { self.state.withLock { $0.timedOut } }
    /// The watchdog ended the upstream transfer because the node is shutting down.
    var shuttingDown: Bool { self.state.withLock { $0.shuttingDown } }

    func markStarted() { self.state.withLock { $0.started = true } }

    /// Settles the reservation unless it already is.
    func settle(_ result: SettlementResult) async {
        await self.reservation.settle(result)
    }

    /// Writes `buffer` (or finishes the body for `nil`), timing the write for the watchdog.
    func write(_ buffer: ByteBuffer?, to writer: inout any ResponseBodyWriter) async throws {
        self.writeStarted.store(max(1, self.now()), ordering: .relaxed)
        defer { self.writeStarted.store(0, ordering: .relaxed) }
        if let buffer { try await writer.write(buffer) } else { try await writer.finish(nil) }
    }

    private func now() -> Int64 { Self.nanoseconds(self.origin.duration(to: .now)) }

    private static func nanoseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    /// Runs beside the relay until cancelled: renews the lease every `renewEvery`, cancels `task` when a
    /// write has been pending for `writeTimeout`, and ends the upstream transfer (`events`) once the node's
    /// shutdown deadline has passed, so that the relay sends `server_shutting_down` and settles.
    func watch(
        renewEvery: Duration, lease: Duration, writeTimeout: Duration, task: RelayTask?, events: SSEEventStream,
        shutdownDeadline: @Sendable () -> ContinuousClock.Instant?, connection: (any Channel)? = nil
    ) async {
        let tick = min(ClientWatch.interval, writeTimeout / 4)
        let limit = Self.nanoseconds(writeTimeout)
        while !Task.isCancelled {
            do { try await Task.sleep(for: tick) } catch { return }
            await self.reservation.renew(every: renewEvery, for: lease)
            if let deadline = shutdownDeadline(), ContinuousClock.now >= deadline, !self.shuttingDown {
                self.state.withLock { $0.shuttingDown = true }
                events.cancel()
            }
            if let connection, !connection.isActive {
                // The client reset or closed its connection while nothing was being written.
                task?.cancel()
                return
            }
            let started = self.writeStarted.load(ordering: .relaxed)
            if started != 0, self.now() - started >= limit {
                self.state.withLock { $0.timedOut = true }
                task?.cancel()
                return
            }
        }
    }

    deinit {
        let started = self.state.withLock { $0.started }
        guard let pending = self.reservation.claim() else { return }
        let relay = self.relay
        if started {
            relay.controller.gateway.logger.error(
                "a stream's owner was released unsettled: settling it as abandoned", metadata: ["request.id": .string(relay.log.requestID)])
        } else {
            relay.finish(usage: nil, status: 499)
        }
        // deinit cannot await: the settlement runs on its own. The store's settle is idempotent by id and
        // retried by the store when Redis is away, so nothing waits on this task.
        Task { await pending.settle(.abandoned) }
    }
}
