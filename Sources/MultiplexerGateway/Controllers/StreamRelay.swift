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
/// - A chat stream that breaks after bytes were sent is continued on the next provider that accepts a
///   prefill (``ContinuingEventStream``, shared with the library); when none can, it ends with
///   `data: {"error": …}` and **no** `[DONE]`, so it is never presented as complete.
/// - A client that goes away ends the relay; dropping the iterator aborts the upstream transfer.
struct StreamRelay: Sendable {
    let controller: OpenAIController
    let log: OpenAIController.RequestLog
    let clientWantsUsage: Bool
    /// The client's connection: the watchdog ends the relay within a second of it closing (a reset while
    /// the provider is silent is otherwise seen only at the next write).
    let connection: (any Channel)?
    /// What the stream is, for its continuation (ARCHITECTURE §3 step 7).
    let operation: String
    let choices: Int
    let declaresTools: Bool
    let promptTokens: Int
    let attempts: Int
    let continuer: StreamContinuer?

    /// Leases of long streams are renewed at most this far apart (and at least three times per lease).
    static let leaseRenewal: Duration = MultiplexerCore.Provider.leaseRenewal

    func response(events: SSEEventStream, pending: PendingSettlement, provider: MultiplexerCore.Provider, headers: HTTPFields) -> Response {
        var h = headers
        h[.contentType] = "text/event-stream"
        h[.cacheControl] = "no-cache"
        let relay = self
        let owner = StreamOwner(pending: pending, provider: provider, events: events, relay: self)
        let stream = ContinuingEventStream(
            events: events, reservation: owner.reservation, operation: self.operation, choices: self.choices, declaresTools: self.declaresTools,
            promptTokens: self.promptTokens,
            attempts: self.attempts, continuer: self.continuer)
        return Response(status: .ok, headers: h, body: ResponseBody { writer in
            try await relay.run(stream: stream, owner: owner, writer: &writer)
        })
    }

    /// Relays the stream while a watchdog beside it renews the lease (while the upstream transfer is open,
    /// whatever the client reads) and drops a client whose connection stopped accepting bytes.
    private func run(stream: ContinuingEventStream, owner: StreamOwner, writer: inout any ResponseBodyWriter) async throws {
        owner.markStarted()
        let gateway = self.controller.gateway
        let writeTimeout = gateway.configuration.server.clientWriteTimeout
        let task = withUnsafeCurrentTask { $0.map(RelayTask.init) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await owner.watch(
                    renewEvery: Self.leaseRenewal, writeTimeout: writeTimeout, task: task,
                    shutdownDeadline: { gateway.state.streamDeadline }, connection: self.connection)
            }
            let outcome = await self.relay(stream: stream, owner: owner, writer: &writer)
            group.cancelAll()
            if let failure = outcome { throw failure }
        }
    }

    /// Relays every event; settles; logs. Returns the error that ended it if the client's connection must
    /// be closed (the client went away, or accepted no bytes for the write timeout).
    private func relay(stream: ContinuingEventStream, owner: StreamOwner, writer: inout any ResponseBodyWriter) async -> (any Error)? {
        var stream = stream
        var end: ContinuingEventStream.End = .abandoned
        var status = 200
        var failure: (any Error)?
        // Events that arrived together (one read from the provider) go out in one write; the buffer is
        // written before the relay waits for more, so no event is ever held back.
        var out = ByteBuffer()
        // When the first event was taken for the client (its time to first token).
        var firstEvent: ContinuousClock.Instant?
        do {
            while true {
                let item: ContinuingEventStream.Item
                if let buffered = stream.nextIfBuffered() {
                    item = buffered
                } else {
                    if out.readableBytes > 0 {
                        try await owner.write(out, to: &writer)
                        out.clear()
                    }
                    do {
                        item = try await stream.next()
                    } catch {
                        // The provider broke mid-stream (reset, idle timeout) and no continuation could finish
                        // it: say so, and never send [DONE]. (A cancelled transfer is the client's doing: the
                        // write below fails the same way.)
                        try Task.checkCancellation()
                        if owner.shuttingDown {
                            // The node is stopping and this stream outlived the deadline: say so, end the
                            // body cleanly (no [DONE]: the answer is incomplete), settle before exit.
                            let e = OpenAIError(
                                status: 503, message: "The server is shutting down; the stream was ended before it finished.",
                                type: "server_error", code: "server_shutting_down")
                            out.writeString("data: \(e.json)\n\n")
                            try await owner.write(out, to: &writer)
                            end = .abandoned
                            status = 503
                            break
                        }
                        let e = OpenAIError.upstream(
                            status: 502, "The provider's stream broke before it finished (\(error.kind.rawValue)).", code: "upstream_stream_error")
                        out.writeString("data: \(e.json)\n\n")
                        try await owner.write(out, to: &writer)
                        end = .broken
                        status = 502
                        break
                    }
                }
                guard case .event(let event, let usageOnly) = item else {
                    out.writeString("data: [DONE]\n\n")
                    try await owner.write(out, to: &writer)
                    end = .completed
                    break
                }
                if usageOnly && !self.clientWantsUsage { continue }
                if !usageOnly && firstEvent == nil { firstEvent = .now }
                Self.frame(event, into: &out)
            }
            // Settled before the response ends: a client that has read the whole stream finds the
            // provider's windows and counters already updated (its next request is admitted on them).
            await stream.settle(end)
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
        await stream.settle(.abandoned)
        self.finish(stream: stream, firstEvent: firstEvent, status: status)
        return failure
    }

    /// The request's log line, metrics and gauges, once per stream.
    func finish(stream: ContinuingEventStream, firstEvent: ContinuousClock.Instant?, status: Int) {
        var log = self.log
        log.tokens = stream.usage
        let gateway = self.controller.gateway
        if let firstEvent { log.timeToFirstToken = log.started.duration(to: firstEvent) }
        for a in stream.continuationAttempts {
            if a.outcome != .success { gateway.recentErrors.record(provider: a.provider, what: a.summary) }
        }
        for p in stream.providers.dropLast() { gateway.recentErrors.record(provider: p, what: "stream broke mid-way; continued elsewhere") }
        if status == 502 { gateway.recentErrors.record(provider: stream.providers.last ?? log.provider, what: "stream broke mid-way") }
        log.attempts += stream.continuationAttempts.count
        if stream.providers.count > 1 || !stream.continuationAttempts.isEmpty {
            log.provider = stream.providers.last ?? log.provider
            log.providers = stream.providers
            log.continued = stream.continued && status == 200
            gateway.metrics.continuation(model: log.group, completed: log.continued)
            if !log.continued {
                gateway.logger.warning(
                    "a broken stream could not be continued",
                    metadata: [
                        "request.id": .string(log.requestID), "gateway.providers": .string(stream.providers.joined(separator: ",")),
                        "gateway.attempts": .stringConvertible(log.attempts),
                    ])
            }
        }
        self.finish(log, status: status)
    }

    /// The log line and gauges of a stream that ended before its body ran.
    func finish(usage: TokenUsage?, status: Int) {
        var log = self.log
        log.tokens = usage
        self.finish(log, status: status)
    }

    private func finish(_ log: OpenAIController.RequestLog, status: Int) {
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

    /// The usage in a chunk (see ``StreamUsage/usage(in:previous:)``).
    static func usage(in data: String, previous: TokenUsage? = nil) -> (usage: TokenUsage, usageOnly: Bool)? {
        StreamUsage.usage(in: data, previous: previous)
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
    /// The current attempt's reservation: settles once per attempt, renews, cancels (shared with the
    /// library's streams; a continued stream moves it to its next attempt).
    let reservation: StreamReservation
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

    init(pending: PendingSettlement, provider: MultiplexerCore.Provider, events: SSEEventStream, relay: StreamRelay) {
        let logger = relay.controller.gateway.logger, requestID = relay.log.requestID
        self.reservation = StreamReservation(pending: pending, provider: provider, events: events) { pending in
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

    /// Runs beside the relay until cancelled: renews the current attempt's lease at most `renewEvery` apart
    /// (and at least three times per lease), cancels `task` when a write has been pending for
    /// `writeTimeout`, and ends the upstream transfer once the node's shutdown deadline has passed, so that
    /// the relay sends `server_shutting_down` and settles.
    func watch(
        renewEvery: Duration, writeTimeout: Duration, task: RelayTask?,
        shutdownDeadline: @Sendable () -> ContinuousClock.Instant?, connection: (any Channel)? = nil
    ) async {
        let tick = min(ClientWatch.interval, writeTimeout / 4)
        let limit = Self.nanoseconds(writeTimeout)
        while !Task.isCancelled {
            do { try await Task.sleep(for: tick) } catch { return }
            let lease = self.reservation.provider.leaseDuration
            await self.reservation.renew(every: min(renewEvery, lease / 3), for: lease)
            if let deadline = shutdownDeadline(), ContinuousClock.now >= deadline, !self.shuttingDown {
                self.state.withLock { $0.shuttingDown = true }
                self.reservation.cancelUpstream()
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
