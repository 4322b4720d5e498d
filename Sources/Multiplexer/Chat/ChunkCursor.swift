import MultiplexerCore
import MultiplexerUpstream
import Synchronization

/// Reads a served stream one chunk per call (the producer of the `AsyncThrowingStream` the library hands
/// out) and settles its reservation exactly once: with the usage when it ends, as a failure when it breaks,
/// or — when the consumer drops it unfinished — through the multiplexer's job queue from `deinit`.
///
/// `AsyncThrowingStream(unfolding:)` calls ``next()`` one call at a time; the iterator is taken out of the
/// lock for the await and put back after, so no lock is held across an await.
final class ChunkCursor: Sendable {
    private struct State {
        var iterator: SSEEventStream.AsyncIterator?
        var usage: TokenUsage?
    }

    private let state: Mutex<State>
    /// Settles once and renews (the owner the gateway's relay uses too).
    private let owner: ReservationOwner
    private let entry: Multiplexer.Entry
    private let includeUsage: Bool
    private let jobSink: AsyncStream<Multiplexer.Job>.Continuation
    private let keeper: LeaseKeeper
    private let keeperToken: UInt64

    /// The stream's lease is renewed by `keeper` from now until it settles, whatever the consumer reads.
    init(
        events: SSEEventStream, pending: PendingSettlement, entry: Multiplexer.Entry, includeUsage: Bool,
        jobSink: AsyncStream<Multiplexer.Job>.Continuation, keeper: LeaseKeeper
    ) {
        self.state = Mutex(State(iterator: events.makeAsyncIterator()))
        self.owner = ReservationOwner(pending) { pending in jobSink.yield(.settle(pending, .abandoned)) }
        self.entry = entry
        self.includeUsage = includeUsage
        self.jobSink = jobSink
        self.keeper = keeper
        self.keeperToken = keeper.register(self.owner)
    }

    deinit {
        self.keeper.unregister(self.keeperToken)
        // Dropped before its end: the reservation is released by run()'s job loop (no await in deinit).
        if let pending = self.owner.claim() { self.jobSink.yield(.settle(pending, .abandoned)) }
    }

    private func settle(_ result: SettlementResult) async {
        self.state.withLock { $0.iterator = nil }
        self.keeper.unregister(self.keeperToken)
        await self.owner.settle(result)
    }

    private func broken(_ message: String, underlying: (any Error)? = nil) -> MultiplexerError {
        MultiplexerError(
            .serviceUnavailable, "The stream from model '\(self.entry.name)' at \(self.entry.endpoint.baseURL) \(message)", modelName: self.entry.name,
            endpoint: self.entry.endpoint.baseURL, underlyingError: underlying)
    }

    /// The next chunk, `nil` at the end.
    func next() async throws -> ChatCompletionChunk? {
        while true {
            guard var iterator = self.state.withLock({ s in s.iterator.take() }) else { return nil }
            let event: SSEEvent?
            do {
                event = try await iterator.next()
            } catch {
                if error.kind == .cancelled {
                    await self.settle(.abandoned)
                    throw CancellationError()
                }
                await self.settle(.broken)
                throw self.broken("broke before it finished (\(error.kind.rawValue)).", underlying: error)
            }
            guard let event, !event.isDone else {
                // [DONE], or a clean close without it: complete either way.
                let usage = self.state.withLock { $0.usage }
                await self.settle(.success(usage: usage))
                return nil
            }
            self.state.withLock { $0.iterator = iterator }

            // An event that is not JSON (a comment, a keep-alive) is skipped, never a reason to abort.
            guard let document = try? JSONParser.parse(Array(event.data.utf8)) else { continue }
            if let error = document.value["error"] {
                await self.settle(.broken)
                throw self.broken("ended with an error: \(error["message"]?.stringValue ?? error.jsonText)")
            }
            var chunk: ChatCompletionChunk
            do {
                chunk = try ChatCompletionChunk(json: document.value)
            } catch {
                await self.settle(.broken)
                throw MultiplexerError(
                    .invalidResponse, "Invalid chunk from model '\(self.entry.name)': \(error.message)", modelName: self.entry.name,
                    endpoint: self.entry.endpoint.baseURL)
            }
            if let u = chunk.usage {
                self.state.withLock { $0.usage = TokenUsage(promptTokens: u.promptTokens, completionTokens: u.completionTokens) }
                if chunk.choices.isEmpty && !self.includeUsage { continue }
            }
            chunk.servedBy = self.entry.name
            return chunk
        }
    }
}
