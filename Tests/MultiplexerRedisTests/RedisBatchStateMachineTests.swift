import Testing
@testable import MultiplexerRedis

/// The redirect/retry decisions of one pipelined batch, without Redis or sockets: each test plays the
/// replies a server would send and checks where each command goes next, what the router learns, when the
/// worker pauses and which result each caller gets.
struct RedisBatchStateMachineTests {
    typealias Machine = RedisBatchStateMachine
    static let here = RedisAddress(host: "10.0.0.1", port: 6379)
    static let other = RedisAddress(host: "10.0.0.2", port: 6380)
    let start = ContinuousClock.now

    func machine(_ scripts: [Bool], timeout: Duration = .seconds(1)) -> Machine {
        Machine(isScript: scripts, now: self.start, redirectTimeout: timeout)
    }

    func value(_ r: Result<RedisValue, RedisError>?) -> RedisValue? {
        if case .success(let v)? = r { return v }
        return nil
    }

    @Test func plainRepliesAreTheAnswersInOneRound() {
        var m = self.machine([false, false])
        let round = m.startRound()!
        #expect(round.count == 1 && round[0].target == nil && round[0].attempts.map(\.index) == [0, 1])
        #expect(m.received(.status("OK"), for: round[0].attempts[0], from: Self.here) == nil)
        #expect(m.received(.error("ERR wrong type"), for: round[0].attempts[1], from: Self.here) == nil, "an error reply is an answer")
        #expect(m.endRound(now: self.start) == nil)
        #expect(m.startRound() == nil)
        #expect(self.value(m.results[0]) == .status("OK") && self.value(m.results[1]) == .error("ERR wrong type"))
        #expect(m.counters == .init())
    }

    @Test func noScriptLoadsOnceThenTheSecondNoScriptIsTheAnswer() {
        var m = self.machine([true, false])
        var round = m.startRound()!
        _ = m.received(.error("NOSCRIPT No matching script"), for: round[0].attempts[0], from: Self.here)
        _ = m.received(.error("NOSCRIPT not a script command"), for: round[0].attempts[1], from: Self.here)
        #expect(m.endRound(now: self.start) == nil, "no pause for a script load")
        round = m.startRound()!
        #expect(round[0].attempts == [.init(index: 0, ask: nil, loadScript: true)], "only the script is re-sent, after SCRIPT LOAD")
        _ = m.received(.error("NOSCRIPT still"), for: round[0].attempts[0], from: Self.here)
        #expect(m.endRound(now: self.start) == nil && m.startRound() == nil)
        #expect(self.value(m.results[0]) == .error("NOSCRIPT still") && self.value(m.results[1]) == .error("NOSCRIPT not a script command"))
        #expect(m.counters.redirects == 1)
    }

    @Test func movedTellsTheRouterAndAskGoesToItsTargetWithOrderKept() {
        var m = self.machine([false, false, false])
        var round = m.startRound()!
        let a = round[0].attempts
        #expect(m.received(.error("MOVED 12 10.0.0.2:6380"), for: a[0], from: Self.here) == .moved(to: Self.other))
        #expect(m.received(.error("ASK 12 :6381"), for: a[1], from: Self.here) == nil)
        #expect(m.received(.integer(3), for: a[2], from: Self.here) == nil)
        #expect(m.endRound(now: self.start) == nil, "a first redirection is followed at once")
        round = m.startRound()!
        #expect(round.map(\.target) == [nil, RedisAddress(host: "10.0.0.1", port: 6381)], "primary first; an empty ASK host is the answering node's")
        #expect(round[0].attempts.map(\.index) == [0] && round[1].attempts.map(\.index) == [1])
        _ = m.received(.integer(1), for: round[0].attempts[0], from: Self.other)
        _ = m.received(.integer(2), for: round[1].attempts[0], from: Self.here)
        #expect(m.endRound(now: self.start) == nil && m.startRound() == nil)
        #expect(m.results.map(self.value) == [.integer(1), .integer(2), .integer(3)])
        #expect(m.counters == .init(failures: 0, redirects: 2, moved: 1, asked: 1, readOnly: 0, retried: 0))
    }

    @Test func readOnlyDemotesAndTryAgainPausesDoublingUpTo50ms() {
        var m = self.machine([false], timeout: .seconds(10))
        var round = m.startRound()!
        #expect(m.received(.error("READONLY You can't write against a read only replica."), for: round[0].attempts[0], from: Self.here) == .demoted)
        #expect(m.endRound(now: self.start) == nil)
        var pauses: [Duration] = []
        for _ in 0..<7 {
            round = m.startRound()!
            _ = m.received(.error("TRYAGAIN Multiple keys request during rehashing of slot"), for: round[0].attempts[0], from: Self.here)
            pauses.append(m.endRound(now: self.start) ?? .zero)
        }
        #expect(pauses == [2, 4, 8, 16, 32, 50, 50].map { .milliseconds($0) })
        round = m.startRound()!
        _ = m.received(.status("OK"), for: round[0].attempts[0], from: Self.here)
        #expect(m.endRound(now: self.start) == nil && m.startRound() == nil)
        #expect(self.value(m.results[0]) == .status("OK") && m.counters.readOnly == 1 && m.counters.retried == 7)
    }

    @Test func redirectionsBackAndForthPauseFromTheThirdRoundAndFailAsUnavailableAtTheDeadline() {
        var m = self.machine([false], timeout: .milliseconds(100))
        var pauses: [Duration?] = []
        var now = self.start
        while let round = m.startRound() {
            let to = pauses.count.isMultiple(of: 2) ? "10.0.0.2:6380" : "10.0.0.1:6379"
            _ = m.received(.error("MOVED 7 \(to)"), for: round[0].attempts[0], from: Self.here)
            now += .milliseconds(30)
            pauses.append(m.endRound(now: now))
        }
        #expect(pauses == [nil, nil, .milliseconds(2), nil], "rounds 1-2 at once, then paused; the 4th is past the deadline")
        guard case .failure(let e)? = m.results[0] else {
            Issue.record("expected a failure")
            return
        }
        #expect(e.code == .unavailable && e.message.contains("MOVED 7"), "refused, never executed: unavailable, with the last refusal")
        #expect(m.counters.failures == 1 && m.counters.moved == 4)
    }

    @Test func aBrokenPipelineFailsOnlyTheCommandsWithoutAReply() {
        var m = self.machine([false, false, false])
        let round = m.startRound()!
        let a = round[0].attempts
        _ = m.received(.integer(1), for: a[0], from: Self.here)
        m.failed(a.dropFirst(1), RedisError(.timeout, "read timed out"))
        #expect(m.endRound(now: self.start) == nil && m.startRound() == nil)
        #expect(self.value(m.results[0]) == .integer(1))
        for i in 1...2 {
            guard case .failure(let e)? = m.results[i] else {
                Issue.record("command \(i) must fail")
                continue
            }
            #expect(e.code == .timeout, "maybe executed: the caller learns the outcome is unknown")
        }
        #expect(m.counters.failures == 2)
    }
}
