public import MultiplexerCore

/// The body of a streamed upstream response, chunk by chunk as libcurl receives them, with back-pressure:
/// when the consumer falls behind by ``CurlClient/Configuration/streamBufferBytes`` the transfer pauses
/// instead of buffering more.
///
/// Iterate it once (a single consumer). Cancelling the consuming task, or dropping the stream and its
/// iterator before the end, aborts the transfer and closes its connection.
public struct UpstreamByteStream: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    public typealias Failure = UpstreamError

    private let consumer: Consumer

    init(storage: ByteStreamStorage) {
        self.consumer = Consumer(storage: storage)
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: self.consumer)
    }

    /// Reads chunks of the stream.
    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        public typealias Element = [UInt8]
        public typealias Failure = UpstreamError

        fileprivate let consumer: Consumer

        /// The next chunk, or `nil` at the end of the body.
        public mutating func next() async throws(UpstreamError) -> [UInt8]? {
            try await self.consumer.storage.next().get()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(UpstreamError) -> [UInt8]? {
            try await self.consumer.storage.next().get()
        }

        /// Aborts the transfer from outside the consuming task: a pending or later ``next()`` throws
        /// `cancelled`. Any copy of the iterator cancels the same transfer.
        public func cancel() {
            self.consumer.storage.consumerCancelled()
        }
    }

    /// Reads the whole rest of the body, or its first `limit` bytes (then the transfer is aborted).
    ///
    /// - Parameter limit: the most bytes to return.
    public func collect(upTo limit: Int) async throws(UpstreamError) -> [UInt8] {
        var bytes: [UInt8] = []
        var iterator = self.makeAsyncIterator()
        while bytes.count < limit, let chunk = try await iterator.next() {
            bytes.append(contentsOf: chunk.prefix(limit - bytes.count))
        }
        if bytes.count >= limit { self.consumer.storage.consumerCancelled() }
        return bytes
    }

    /// Bytes received but not yet consumed.
    package var bufferedByteCount: Int { self.consumer.storage.bufferedByteCount }
    /// The most bytes that were ever received but not yet consumed.
    package var peakBufferedByteCount: Int { self.consumer.storage.peakBufferedByteCount }
    /// The back-pressure bound: the transfer pauses once this many bytes wait.
    package var highWaterMark: Int { self.consumer.storage.highWaterMark }

    /// Held by the stream and its iterators only; when the last of them goes away before the end of the
    /// body, the transfer is aborted.
    fileprivate final class Consumer: Sendable {
        let storage: ByteStreamStorage
        init(storage: ByteStreamStorage) {
            self.storage = storage
        }
        deinit {
            self.storage.consumerDropped()
        }
    }
}

extension ByteStreamStorage {
    /// Nobody can read the stream any more: abort the transfer unless it already ended.
    func consumerDropped() {
        self.consumerCancelled()
    }
}
