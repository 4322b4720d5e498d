import MultiplexerCore
import Synchronization

/// The bounded buffer between a streamed transfer (producer, on the loop thread) and its consumer task.
///
/// The producer offers each libcurl write. Once ``highWaterMark`` bytes wait, the offer is refused with
/// ``Offer/pause``: the write callback returns `CURL_WRITEFUNC_PAUSE`, libcurl keeps that one chunk and stops
/// reading the socket, and TCP flow control pushes back on the server. When the consumer has drained the
/// buffer to ``lowWaterMark`` it asks the loop to resume the transfer. So at most
/// `highWaterMark + CURL_MAX_WRITE_SIZE` bytes are ever buffered here.
final class ByteStreamStorage: Sendable {
    enum Offer {
        case accepted
        case pause
        case consumerGone
    }

    let id: TransferID
    let highWaterMark: Int
    let lowWaterMark: Int
    private let client: CurlClient
    private let state = Mutex(State())

    private struct State {
        var chunks: [[UInt8]] = []
        var head = 0
        var bufferedBytes = 0
        var peakBufferedBytes = 0
        var producerPaused = false
        var end: UpstreamError??
        var endDelivered = false
        var consumerGone = false
        var waiter: CheckedContinuation<Result<[UInt8]?, UpstreamError>, Never>?

        /// What the consumer gets now, or `nil` if it has to wait; `resume` asks for unpausing the producer.
        mutating func take(lowWaterMark: Int) -> (result: Result<[UInt8]?, UpstreamError>, resume: Bool)? {
            if self.consumerGone {
                return (.failure(UpstreamError(.cancelled, message: "the stream was cancelled")), false)
            }
            if self.head < self.chunks.count {
                let chunk = self.chunks[self.head]
                self.chunks[self.head] = []
                self.head += 1
                if self.head == self.chunks.count {
                    self.chunks.removeAll(keepingCapacity: true)
                    self.head = 0
                }
                self.bufferedBytes -= chunk.count
                var resume = false
                if self.producerPaused && self.bufferedBytes <= lowWaterMark {
                    self.producerPaused = false
                    resume = true
                }
                return (.success(chunk), resume)
            }
            if let end = self.end {
                if self.endDelivered { return (.success(nil), false) }
                self.endDelivered = true
                if let error = end { return (.failure(error), false) }
                return (.success(nil), false)
            }
            return nil
        }
    }

    init(id: TransferID, client: CurlClient, highWaterMark: Int) {
        self.id = id
        self.client = client
        self.highWaterMark = highWaterMark
        self.lowWaterMark = highWaterMark / 2
    }

    // MARK: - Producer (loop thread)

    /// Offers one libcurl write.
    func offer(_ bytes: UnsafeRawBufferPointer) -> Offer {
        let chunk = [UInt8](bytes)
        let (offer, waiter) = self.state.withLock { state -> (Offer, CheckedContinuation<Result<[UInt8]?, UpstreamError>, Never>?) in
            if state.consumerGone || state.end != nil { return (.consumerGone, nil) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (.accepted, waiter)
            }
            if state.bufferedBytes >= self.highWaterMark {
                state.producerPaused = true
                return (.pause, nil)
            }
            state.chunks.append(chunk)
            state.bufferedBytes += chunk.count
            state.peakBufferedBytes = max(state.peakBufferedBytes, state.bufferedBytes)
            return (.accepted, nil)
        }
        waiter?.resume(returning: .success(chunk))
        return offer
    }

    /// Ends the stream: `nil` for a complete body, else the error the consumer gets after the buffered bytes.
    func finish(_ error: UpstreamError?) {
        let waiter = self.state.withLock { state -> CheckedContinuation<Result<[UInt8]?, UpstreamError>, Never>? in
            guard state.end == nil else { return nil }
            state.end = .some(error)
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            state.endDelivered = true
            return waiter
        }
        if let error {
            waiter?.resume(returning: .failure(error))
        } else {
            waiter?.resume(returning: .success(nil))
        }
    }

    // MARK: - Consumer

    /// The next chunk, `nil` at the end of the body.
    func next() async -> Result<[UInt8]?, UpstreamError> {
        if Task.isCancelled {
            self.consumerCancelled()
            return .failure(UpstreamError(.cancelled, message: "the stream was cancelled"))
        }
        if let (result, resume) = self.state.withLock({ $0.take(lowWaterMark: self.lowWaterMark) }) {
            if resume { self.client.send(.resume(self.id)) }
            return result
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<[UInt8]?, UpstreamError>, Never>) in
                let now = self.state.withLock { state -> (result: Result<[UInt8]?, UpstreamError>, resume: Bool)? in
                    if let ready = state.take(lowWaterMark: self.lowWaterMark) { return ready }
                    state.waiter = continuation
                    return nil
                }
                if let (result, resume) = now {
                    if resume { self.client.send(.resume(self.id)) }
                    continuation.resume(returning: result)
                }
            }
        } onCancel: {
            self.consumerCancelled()
        }
    }

    /// The consuming task was cancelled: drop the buffer and abort the transfer.
    func consumerCancelled() {
        let (waiter, abort) = self.state.withLock { state -> (CheckedContinuation<Result<[UInt8]?, UpstreamError>, Never>?, Bool) in
            let alreadyGone = state.consumerGone
            state.consumerGone = true
            state.chunks = []
            state.head = 0
            state.bufferedBytes = 0
            let waiter = state.waiter
            state.waiter = nil
            return (waiter, !alreadyGone && state.end == nil)
        }
        waiter?.resume(returning: .failure(UpstreamError(.cancelled, message: "the stream was cancelled")))
        if abort {
            let (unsubmitted, wake) = self.client.cancel(self.id)
            unsubmitted?.fail(UpstreamError(.cancelled, message: "the stream was cancelled"))
            if wake { self.client.multi.wakeup() }
        }
    }

    /// Bytes waiting for the consumer now.
    var bufferedByteCount: Int { self.state.withLock { $0.bufferedBytes } }
    /// The most bytes that ever waited for the consumer.
    var peakBufferedByteCount: Int { self.state.withLock { $0.peakBufferedBytes } }
}
