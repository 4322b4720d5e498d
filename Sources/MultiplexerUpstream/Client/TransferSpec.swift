import MultiplexerCore
import Synchronization

typealias TransferID = UInt64

/// What callers hand to the loop thread.
enum LoopCommand: Sendable {
    /// Start a transfer.
    case submit(TransferSpec)
    /// Abort a transfer (ignored when it already ended).
    case cancel(TransferID)
    /// A stream's consumer drained its buffer: unpause the transfer.
    case resume(TransferID)
}

/// Status and headers of a streamed response.
struct StreamHead: Sendable {
    var status: Int
    var headers: UpstreamHeaders
}

/// Where a transfer's result goes.
enum Delivery: Sendable {
    /// The whole response, once.
    case buffered(CheckedContinuation<Result<UpstreamHTTPResponse, UpstreamError>, Never>)
    /// The head once, then the body through the storage.
    case streaming(CheckedContinuation<Result<StreamHead, UpstreamError>, Never>, ByteStreamStorage)
}

/// Everything the loop thread needs to run one transfer. Plain values only: the loop thread creates the C
/// state (easy handle, header list) from it.
struct TransferSpec: Sendable {
    let id: TransferID
    let request: UpstreamHTTPRequest
    /// `Name: value` lines; may contain credentials, never logged.
    let headerLines: [String]
    let submittedAt: ContinuousClock.Instant
    let delivery: Delivery

    /// Fails a transfer that never started.
    func fail(_ error: UpstreamError) {
        switch self.delivery {
        case .buffered(let continuation):
            continuation.resume(returning: .failure(error))
        case .streaming(let continuation, let storage):
            storage.finish(error)
            continuation.resume(returning: .failure(error))
        }
    }
}

/// Orders one call's submission and cancellation.
///
/// A task may be cancelled before its transfer was submitted (then it is never submitted), while it runs
/// (then the cancel command is queued strictly after the submit command, so the loop always knows the
/// transfer), or after it ended (then the loop ignores the unknown id).
final class TransferToken: Sendable {
    private enum Phase {
        case idle, submitted, cancelled
    }

    let id: TransferID
    private let phase = Mutex<Phase>(.idle)

    init(id: TransferID) {
        self.id = id
    }

    /// Submits `spec` unless the call was cancelled first; fails it when the client is stopped.
    func submit(_ spec: TransferSpec, to client: CurlClient) {
        let outcome = self.phase.withLock { phase -> (error: UpstreamError?, wake: Bool) in
            guard phase == .idle else {
                return (UpstreamError(.cancelled, message: "the call was cancelled"), false)
            }
            // Enqueue while holding this lock so a concurrent cancel() queues behind the submission.
            let (accepted, wake) = client.enqueue(.submit(spec))
            guard accepted else {
                return (UpstreamError(.cancelled, message: "the upstream client is shut down"), false)
            }
            phase = .submitted
            return (nil, wake)
        }
        if let error = outcome.error {
            spec.fail(error)
        } else if outcome.wake {
            client.multi.wakeup()
        }
    }

    /// The calling task was cancelled.
    func cancel(on client: CurlClient) {
        let (unsubmitted, wake) = self.phase.withLock { phase -> (TransferSpec?, Bool) in
            switch phase {
            case .idle:
                phase = .cancelled
                return (nil, false)
            case .submitted:
                phase = .cancelled
                return client.cancel(self.id)
            case .cancelled:
                return (nil, false)
            }
        }
        unsubmitted?.fail(UpstreamError(.cancelled, message: "the call was cancelled"))
        if wake { client.multi.wakeup() }
    }
}
