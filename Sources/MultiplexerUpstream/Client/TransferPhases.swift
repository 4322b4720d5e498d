import MultiplexerCore

/// The phases of one transfer and the timer each phase runs, without I/O: ``ActiveTransfer`` reports what
/// arrived (headers, a complete event, a pause, a resume) and asks which deadline is next and whether one
/// expired; the loop fails a transfer whose timer expired.
///
/// - Buffered (non-stream) call: one deadline, the whole response within `response`.
/// - Stream, before its headers: `response` for the headers, and `firstByte` for the first complete event.
/// - Stream, before its first complete event: `firstByte` (if set).
/// - Stream, after it: `idle` since the last complete event (or the consumer's resume); none while paused
///   by back-pressure (a slow *client* is not an idle *provider*).
struct TransferPhases {
    let timeouts: UpstreamTimeouts
    let submittedAt: ContinuousClock.Instant
    let isStreaming: Bool
    /// The final (non-1xx) response head has arrived.
    private(set) var headersComplete = false
    /// A complete event arrived (for a body that is not an event stream: any byte).
    private(set) var gotFirstEvent = false
    /// Paused by back-pressure: the consumer's buffer is full.
    private(set) var paused = false
    /// When the last complete event arrived, or the consumer resumed the transfer.
    private var lastActivity: ContinuousClock.Instant

    init(timeouts: UpstreamTimeouts, submittedAt: ContinuousClock.Instant, isStreaming: Bool) {
        self.timeouts = timeouts
        self.submittedAt = submittedAt
        self.isStreaming = isStreaming
        self.lastActivity = submittedAt
    }

    mutating func headersArrived() {
        self.headersComplete = true
    }

    mutating func eventArrived(at now: ContinuousClock.Instant) {
        self.gotFirstEvent = true
        self.lastActivity = now
    }

    mutating func pause() {
        self.paused = true
    }

    /// Returns whether the transfer was paused (and so must be unpaused in libcurl).
    mutating func resume(at now: ContinuousClock.Instant) -> Bool {
        guard self.paused else { return false }
        self.paused = false
        self.lastActivity = now
        return true
    }

    /// The earliest pending deadline and the error kind it raises; `nil` when no timer runs.
    func nextDeadline() -> (ContinuousClock.Instant, UpstreamError.Kind)? {
        guard self.isStreaming else {
            return (self.submittedAt + self.timeouts.response, .timeout)
        }
        var earliest: (ContinuousClock.Instant, UpstreamError.Kind)?
        func consider(_ deadline: ContinuousClock.Instant, _ kind: UpstreamError.Kind) {
            if earliest == nil || deadline < earliest!.0 { earliest = (deadline, kind) }
        }
        if !self.headersComplete {
            consider(self.submittedAt + self.timeouts.response, .timeout)
        }
        if !self.gotFirstEvent, let firstByte = self.timeouts.firstByte {
            consider(self.submittedAt + firstByte, .firstTokenTimeout)
        } else if self.gotFirstEvent, !self.paused, let idle = self.timeouts.idle {
            consider(self.lastActivity + idle, .streamIdleTimeout)
        }
        return earliest
    }

    /// The error of the timer that expired at `now`, if one did.
    func expired(at now: ContinuousClock.Instant) -> UpstreamError? {
        guard let (deadline, kind) = self.nextDeadline(), deadline <= now else { return nil }
        switch kind {
        case .timeout where self.isStreaming:
            return UpstreamError(.timeout, message: "no response headers within \(self.timeouts.response)")
        case .timeout:
            return UpstreamError(.timeout, message: "no complete response within \(self.timeouts.response)")
        case .firstTokenTimeout:
            return UpstreamError(.firstTokenTimeout, message: "no complete event within \(self.timeouts.firstByte ?? .zero)")
        default:
            return UpstreamError(.streamIdleTimeout, message: "no complete event for \(self.timeouts.idle ?? .zero)")
        }
    }
}
