import MultiplexerCore
import Testing

@testable import MultiplexerUpstream

/// The timers of a transfer's phases, on a fixed timeline (no sockets, no waiting).
struct TransferPhasesTests {
    let t0 = ContinuousClock.now
    let timeouts = UpstreamTimeouts(connect: .seconds(1), response: .seconds(30), firstByte: .seconds(5), idle: .seconds(2))

    func at(_ seconds: Double) -> ContinuousClock.Instant { self.t0 + .milliseconds(Int(seconds * 1000)) }

    @Test func aBufferedCallHasOneDeadlineWhateverArrives() {
        var p = TransferPhases(timeouts: self.timeouts, submittedAt: self.t0, isStreaming: false)
        p.headersArrived()
        p.eventArrived(at: self.at(1))
        #expect(p.nextDeadline()?.0 == self.at(30) && p.nextDeadline()?.1 == .timeout)
        #expect(p.expired(at: self.at(29.9)) == nil)
        #expect(p.expired(at: self.at(30))?.kind == .timeout)
    }

    @Test func aStreamWaitsForItsFirstEventThenForEachNext() {
        var p = TransferPhases(timeouts: self.timeouts, submittedAt: self.t0, isStreaming: true)
        #expect(p.nextDeadline()?.0 == self.at(5) && p.nextDeadline()?.1 == .firstTokenTimeout, "first byte before the response bound")
        #expect(p.expired(at: self.at(5))?.kind == .firstTokenTimeout)
        p.headersArrived()
        p.eventArrived(at: self.at(4))
        #expect(p.nextDeadline()?.0 == self.at(6) && p.nextDeadline()?.1 == .streamIdleTimeout)
        p.eventArrived(at: self.at(5.5))
        #expect(p.expired(at: self.at(7)) == nil && p.expired(at: self.at(7.5))?.kind == .streamIdleTimeout)
    }

    @Test func headersThatNeverComeExpireTheResponseBound() {
        var p = TransferPhases(timeouts: UpstreamTimeouts(response: .seconds(3)), submittedAt: self.t0, isStreaming: true)
        #expect(p.nextDeadline()?.0 == self.at(3) && p.expired(at: self.at(3))?.message.contains("headers") == true)
        // An event before the headers cannot happen; the response bound stops once they are in.
        p.headersArrived()
        #expect(p.nextDeadline() == nil, "no first-byte or idle bound configured: no timer")
    }

    @Test func aPausedStreamHasNoIdleTimerAndAResumeRestartsIt() {
        var p = TransferPhases(timeouts: self.timeouts, submittedAt: self.t0, isStreaming: true)
        p.headersArrived()
        p.eventArrived(at: self.at(1))
        p.pause()
        #expect(p.paused && p.nextDeadline() == nil && p.expired(at: self.at(100)) == nil, "a slow client is not an idle provider")
        let resumed = p.resume(at: self.at(50))
        let again = p.resume(at: self.at(51))
        #expect(resumed && !again, "resumed once; not paused any more")
        #expect(p.nextDeadline()?.0 == self.at(52))
    }
}
