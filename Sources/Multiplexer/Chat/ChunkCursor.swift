import MultiplexerCore
import MultiplexerUpstream
import Synchronization

/// Reads a served stream one chunk per call (the producer of the `AsyncThrowingStream` the library hands
/// out) through the ``ContinuingEventStream`` the gateway's relay uses too: a stream that breaks mid-way is
/// continued on the next model that accepts a prefill, and each attempt's reservation is settled exactly
/// once — with the usage when the stream ends, by what it relayed when it breaks, or, when the consumer drops
/// the stream unfinished, through the multiplexer's job queue from `deinit`.
///
/// `AsyncThrowingStream(unfolding:)` calls ``next()`` one call at a time; the stream is taken out of the
/// lock for the await and put back after, so no lock is held across an await.
final class ChunkCursor: Sendable {
    private let state: Mutex<ContinuingEventStream?>
    /// The current attempt's reservation (renewed by `keeper`, whatever the consumer reads).
    private let reservation: StreamReservation
    private let entries: [String: Multiplexer.Entry]
    private let firstEntry: Multiplexer.Entry
    private let includeUsage: Bool
    private let jobSink: AsyncStream<Multiplexer.Job>.Continuation
    private let keeper: LeaseKeeper
    private let keeperToken: UInt64

    /// The stream's lease is renewed by `keeper` from now until it settles, whatever the consumer reads.
    init(
        served: Dispatched, events: SSEEventStream, pending: PendingSettlement, includeUsage: Bool, jobSink: AsyncStream<Multiplexer.Job>.Continuation,
        keeper: LeaseKeeper
    ) {
        let reservation = StreamReservation(pending: pending, provider: served.entry.provider, events: events) { pending in
            jobSink.yield(.settle(pending, .abandoned))
        }
        self.reservation = reservation
        self.state = Mutex(
            ContinuingEventStream(
                events: events, reservation: reservation, operation: "chat/completions", choices: served.cost.choices, declaresTools: served.declaresTools,
                promptTokens: served.cost.promptTokens, attempts: served.attempts, continuer: served.continuer))
        self.entries = served.entries
        self.firstEntry = served.entry
        self.includeUsage = includeUsage
        self.jobSink = jobSink
        self.keeper = keeper
        self.keeperToken = keeper.register(reservation)
    }

    deinit {
        self.keeper.unregister(self.keeperToken)
        // Dropped before its end: the reservation is released by run()'s job loop (no await in deinit).
        if let pending = self.reservation.claim() { self.jobSink.yield(.settle(pending, .abandoned)) }
    }

    /// The model serving the current attempt.
    private var entry: Multiplexer.Entry { self.entries[self.reservation.provider.name] ?? self.firstEntry }

    private func end(_ stream: inout ContinuingEventStream, _ how: ContinuingEventStream.End) async {
        self.keeper.unregister(self.keeperToken)
        await stream.settle(how)
    }

    private func broken(_ message: String, underlying: (any Error)? = nil) -> MultiplexerError {
        let entry = self.entry
        return MultiplexerError(
            .serviceUnavailable, "The stream from model '\(entry.name)' at \(entry.endpoint.baseURL) \(message)", modelName: entry.name,
            endpoint: entry.endpoint.baseURL, underlyingError: underlying)
    }

    /// The next chunk, `nil` at the end.
    func next() async throws -> ChatCompletionChunk? {
        guard var stream = self.state.withLock({ s in s.take() }) else { return nil }
        while true {
            let item: ContinuingEventStream.Item
            do {
                item = try await stream.next()
            } catch {
                if error.kind == .cancelled {
                    await self.end(&stream, .abandoned)
                    throw CancellationError()
                }
                await self.end(&stream, .broken)
                throw self.broken("broke before it finished (\(error.kind.rawValue)); no other model could continue it.", underlying: error)
            }
            guard case .event(let event, let usageOnly) = item else {
                // [DONE], or a clean close without it: complete either way.
                await self.end(&stream, .completed)
                return nil
            }
            // An event that is not JSON (a comment, a keep-alive) is skipped, never a reason to abort.
            guard let document = try? JSONParser.parse(Array(event.data.utf8)) else { continue }
            var chunk: ChatCompletionChunk
            do {
                chunk = try ChatCompletionChunk(json: document.value)
            } catch {
                await self.end(&stream, .broken)
                let entry = self.entry
                throw MultiplexerError(
                    .invalidResponse, "Invalid chunk from model '\(entry.name)': \(error.message)", modelName: entry.name, endpoint: entry.endpoint.baseURL)
            }
            if usageOnly && !self.includeUsage { continue }
            chunk.servedBy = self.entry.name
            self.state.withLock { $0 = stream }
            return chunk
        }
    }
}
