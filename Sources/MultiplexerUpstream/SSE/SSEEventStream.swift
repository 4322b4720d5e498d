public import MultiplexerCore

/// The events of a streamed upstream response, parsed with ``SSEParser`` as the bytes arrive.
///
/// Iterate it once. The iterator's ``AsyncIterator/end`` tells, after the last event, whether the stream
/// ended with `[DONE]` or closed without it; a broken stream throws its ``UpstreamError`` instead.
public struct SSEEventStream: AsyncSequence, Sendable {
    public typealias Element = SSEEvent
    public typealias Failure = UpstreamError

    private let iterator: AsyncIterator

    /// Parses `bytes`.
    ///
    /// - Parameter bytes: the body of an `text/event-stream` response.
    public init(bytes: UpstreamByteStream) {
        self.iterator = AsyncIterator(bytes: bytes.makeAsyncIterator())
    }

    /// Continues a partly read stream, giving `event` (already read from it) first.
    init(resuming iterator: AsyncIterator, prepending event: SSEEvent) {
        var iterator = iterator
        iterator.pushFront(event)
        self.iterator = iterator
    }

    public func makeAsyncIterator() -> AsyncIterator {
        self.iterator
    }

    /// Aborts the underlying transfer from outside the consuming task: the consumer's pending or next read
    /// throws `cancelled`.
    public func cancel() {
        self.iterator.cancel()
    }

    /// Reads events.
    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        public typealias Element = SSEEvent
        public typealias Failure = UpstreamError

        private var bytes: UpstreamByteStream.AsyncIterator
        private var parser = SSEParser()
        private var pending: [SSEEvent] = []
        private var pendingIndex = 0
        private var finished = false

        /// Aborts the underlying transfer (see ``SSEEventStream/cancel()``).
        public func cancel() {
            self.bytes.cancel()
        }
        /// How the stream ended; `nil` until the iterator returned `nil`.
        public private(set) var end: SSEStreamEnd?

        init(bytes: UpstreamByteStream.AsyncIterator) {
            self.bytes = bytes
        }

        /// Whether a `data: [DONE]` event was read so far.
        public var sawDone: Bool { self.parser.sawDone }

        mutating func pushFront(_ event: SSEEvent) {
            self.pending.replaceSubrange(self.pendingIndex..<self.pendingIndex, with: [event])
        }

        /// The next event if it is already parsed (it arrived in the same bytes as the one before), without
        /// reading more; `nil` when reading would be needed (or the stream ended: ``next()`` tells which).
        /// A relay uses it to write a burst of events in one write, without ever waiting for one.
        public mutating func nextIfBuffered() -> SSEEvent? {
            guard self.pendingIndex < self.pending.count else { return nil }
            let event = self.pending[self.pendingIndex]
            self.pendingIndex += 1
            return event
        }

        /// The next event, or `nil` at the end of the stream (then ``end`` is set).
        public mutating func next() async throws(UpstreamError) -> SSEEvent? {
            while true {
                if let event = self.nextIfBuffered() { return event }
                if self.finished { return nil }
                self.pending.removeAll(keepingCapacity: true)
                self.pendingIndex = 0
                if let chunk = try await self.bytes.next() {
                    self.parser.parse(chunk, into: &self.pending)
                } else {
                    let (events, end) = self.parser.finish()
                    self.pending = events
                    self.end = end
                    self.finished = true
                }
            }
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(UpstreamError) -> SSEEvent? {
            try await self.next()
        }
    }
}
