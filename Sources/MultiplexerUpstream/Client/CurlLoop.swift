internal import CCurl
import MultiplexerCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The body of the client's dedicated OS thread: owns every easy handle and drives the multi handle.
///
/// One iteration: take the queued commands (submit, cancel, resume), `curl_multi_perform`, deliver finished
/// transfers, fail transfers whose timer expired, then `curl_multi_poll` until socket activity, a libcurl
/// timeout, the next transfer deadline or a `curl_multi_wakeup` from a caller.
///
/// Everything here runs on that one thread; nothing is shared except through ``CurlClient``'s locked queue.
final class CurlLoop {
    private let client: CurlClient
    private let multi: UnsafeMutableRawPointer
    private var transfers: [UnsafeMutableRawPointer: ActiveTransfer] = [:]
    private var transfersByID: [TransferID: ActiveTransfer] = [:]
    private var idleHandles: [EasyHandle] = []
    private var commands: [LoopCommand] = []
    /// Upper bound of one `curl_multi_poll`, so that a missed deadline can never stall the loop for long.
    private static let maxPollMilliseconds = 1000

    private init(client: CurlClient) {
        self.client = client
        self.multi = client.multi.raw
        self.commands.reserveCapacity(64)
    }

    /// Starts the loop on its own thread (`curl-loop`); `whenFinished` is resumed when the loop ended, just
    /// before the thread does (``CurlClient/run()`` then joins it).
    static func startThread(client: CurlClient, whenFinished: CheckedContinuation<Void, Never>) -> DedicatedThread {
        DedicatedThread(name: "curl-loop") {
            CurlLoop(client: client).run()
            whenFinished.resume()
        }
    }

    // MARK: - The loop

    private func run() {
        while true {
            let stopping = self.client.takeCommands(into: &self.commands)
            for command in self.commands {
                switch command {
                case .submit(let spec):
                    if stopping {
                        spec.fail(UpstreamError(.cancelled, message: "the upstream client shut down"))
                    } else {
                        self.start(spec)
                    }
                case .cancel(let id):
                    if let transfer = self.transfersByID[id] {
                        self.end(transfer, UpstreamError(.cancelled, message: "the call was cancelled"))
                    }
                case .resume(let id):
                    if let transfer = self.transfersByID[id], let error = transfer.resume() {
                        self.end(transfer, error)
                    }
                }
            }
            self.commands.removeAll(keepingCapacity: true)
            if stopping {
                self.tearDown()
                return
            }

            var running: Int32 = 0
            let performed = curl_multi_perform(self.multi, &running)
            self.deliverCompleted()
            if performed != CURLM_OK {
                // Out of memory or a broken multi handle: the running transfers cannot progress. Each fails with
                // the reason instead of waiting for a timer; the loop keeps taking new transfers.
                self.failAll(multiError(performed, call: "curl_multi_perform"))
            }
            let now = ContinuousClock.now
            let nextDeadline = self.failExpired(now: now)

            var timeout = Self.maxPollMilliseconds
            var curlTimeout = -1
            if curl_multi_timeout(self.multi, &curlTimeout) != CURLM_OK {
                // libcurl's timer is unknown: poll in short steps so that its timeouts are not missed.
                if !self.transfers.isEmpty { timeout = min(timeout, 10) }
            } else if curlTimeout >= 0 {
                // (-1: libcurl has no timer running; only sockets and our own deadlines wake the loop.)
                timeout = min(timeout, curlTimeout)
            }
            if let nextDeadline {
                timeout = min(timeout, now.duration(to: nextDeadline).wholeMilliseconds)
            }
            if !self.client.loopWillSleep() { timeout = 0 }
            if curl_multi_poll(self.multi, nil, 0, Int32(timeout), nil) != CURLM_OK {
                // A poll that fails returns at once: sleep for the timeout instead, so that a persistent failure
                // cannot spin the thread (callers' wake-ups then wait at most this long).
                usleep(UInt32(max(1, min(timeout, 10))) * 1000)
            }
        }
    }

    /// Ends every running transfer with `error`.
    private func failAll(_ error: UpstreamError) {
        for transfer in Array(self.transfers.values) {
            self.end(transfer, error)
        }
    }

    private func start(_ spec: TransferSpec) {
        let easy: EasyHandle
        let fresh: Bool
        do throws(UpstreamError) {
            if let idle = self.idleHandles.popLast() {
                easy = idle
            } else {
                easy = try EasyHandle()
            }
            // A handle that just completed a POST keeps its options for the next POST with the same TLS
            // settings: that saves a curl_easy_reset and a dozen setopts per request. Anything else starts
            // from a clean handle.
            fresh = !(spec.request.method == "POST" && easy.reusableForPOST == spec.request.tls)
            easy.reusableForPOST = nil
            if fresh { try easy.reset() }
        } catch {
            spec.fail(error)
            return
        }
        let transfer = ActiveTransfer(spec: spec, easy: easy, maxResponseBytes: self.client.configuration.maxResponseBytes)
        do throws(UpstreamError) {
            try transfer.configure(spec, fresh: fresh, configuration: self.client.configuration, readsProxyEnvironment: self.client.readsProxyEnvironment)
            try checkMulti(curl_multi_add_handle(self.multi, easy.raw), call: "curl_multi_add_handle")
        } catch {
            transfer.finish(error)
            self.recycle(easy)
            return
        }
        self.transfers[easy.raw] = transfer
        self.transfersByID[transfer.id] = transfer
    }

    /// Reads the finished transfers and delivers them.
    private func deliverCompleted() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(self.multi, &remaining) {
            // The message is only valid until its handle is removed: copy what is needed first.
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            guard let transfer = self.transfers[handle] else { continue }
            var failure: UpstreamError?
            do throws(UpstreamError) {
                try check(code, call: "transfer", context: transfer.errorContext)
            } catch {
                failure = error
            }
            self.end(transfer, failure)
        }
    }

    /// Fails every transfer whose timer expired; returns the earliest deadline still pending.
    private func failExpired(now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        var earliest: ContinuousClock.Instant?
        var expired: [(ActiveTransfer, UpstreamError)] = []
        for transfer in self.transfers.values {
            if let error = transfer.expiredTimer(at: now) {
                expired.append((transfer, error))
            } else if let (deadline, _) = transfer.nextDeadline() {
                if earliest == nil || deadline < earliest! { earliest = deadline }
            }
        }
        for (transfer, error) in expired {
            self.end(transfer, error)
        }
        return earliest
    }

    /// Takes a transfer out of the multi handle (aborting it if it still runs, which closes its connection),
    /// delivers its result and recycles its easy handle.
    private func end(_ transfer: ActiveTransfer, _ failure: UpstreamError?) {
        let easy = transfer.easy
        let removed = curl_multi_remove_handle(self.multi, easy.raw) == CURLM_OK
        self.count(transfer, now: .now)
        self.transfers[easy.raw] = nil
        self.transfersByID[transfer.id] = nil
        transfer.finish(failure)
        // A handle libcurl would not remove may still belong to the multi handle: never reused, it is freed
        // (`curl_easy_cleanup` detaches a handle from its multi handle first).
        guard removed else { return }
        easy.reusableForPOST = failure == nil ? transfer.reusableTLS : nil
        self.recycle(easy)
    }

    /// Adds what a finished transfer did to the client's statistics: whether it opened a connection, and
    /// how long it waited for one. libcurl 7.88 has no queue-time field, but a transfer that waits for a
    /// connection restarts its per-try clock when it gets one, while its total clock keeps running from the
    /// operation's start. So: the try started `PRETRANSFER_TIME` before the pre-request callback fired, the
    /// operation `TOTAL_TIME` before now, and the wait is the time between the two: ≈ 0 for a transfer that
    /// got its connection at once; a busy loop thread can add a millisecond or so between a transfer's first
    /// steps, so waits under 2 ms are not counted.
    private func count(_ transfer: ActiveTransfer, now: ContinuousClock.Instant) {
        guard let requestStarted = transfer.requestStartedAt else { return }
        let easy = transfer.easy
        let counters = self.client.counters
        counters.transfers.add(1, ordering: .relaxed)
        let connects = easy.longInfo(CURLINFO_NUM_CONNECTS)
        if connects > 0 { counters.connectionsOpened.add(connects, ordering: .relaxed) }
        let tryStarted = requestStarted - .microseconds(easy.offsetInfo(CURLINFO_PRETRANSFER_TIME_T))
        let operationStarted = now - .microseconds(easy.offsetInfo(CURLINFO_TOTAL_TIME_T))
        let wait = operationStarted.duration(to: tryStarted)
        if wait >= .milliseconds(2) {
            let (seconds, attoseconds) = wait.components
            counters.connectionWaits.add(1, ordering: .relaxed)
            counters.connectionWaitMicroseconds.add(Int(seconds) * 1_000_000 + Int(attoseconds / 1_000_000_000_000), ordering: .relaxed)
        }
    }

    private func recycle(_ easy: EasyHandle) {
        guard self.idleHandles.count < self.client.configuration.maxIdleHandles else { return }
        self.idleHandles.append(easy)
    }

    private func tearDown() {
        self.failAll(UpstreamError(.cancelled, message: "the upstream client shut down"))
        self.idleHandles.removeAll()
    }
}

@available(*, unavailable)
extension CurlLoop: Sendable {}
