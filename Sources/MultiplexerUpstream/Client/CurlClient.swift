public import MultiplexerCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An HTTP client over libcurl for upstream providers: one dedicated OS thread drives a libcurl multi handle
/// and serves any number of concurrent transfers, buffered or streamed.
///
/// Callers use it from async code: ``execute(_:)`` returns a whole response, ``stream(_:)`` returns the
/// status and headers and then the body as an ``UpstreamByteStream`` with back-pressure. Cancelling the
/// calling task (or dropping a stream before its end) aborts the transfer on the loop thread at once and
/// closes its connection. Connections are kept alive and reused (HTTP/1.1, and HTTP/2 over TLS where the
/// server offers it).
///
/// The client is long-lived: create one per process, call ``run()`` in a task that lives as long as the
/// client is used (a `Service`'s `run()`), and stop it with ``shutdown()`` or by cancelling that task.
/// Calls made before ``run()`` wait for it; calls made after ``shutdown()``, and calls still pending
/// then, fail with ``UpstreamError/Kind/cancelled``. ``withClient(configuration:_:)`` does all of this
/// around a closure.
public final class CurlClient: Sendable {
    /// Tunables of the connection pool and buffers.
    public struct Configuration: Sendable, Hashable {
        /// Idle connections kept open for reuse (`CURLMOPT_MAXCONNECTS`). It must cover the peak number of
        /// concurrent transfers, or connections get closed and reopened under load.
        public var maxCachedConnections: Int
        /// Concurrent connections to one host (`CURLMOPT_MAX_HOST_CONNECTIONS`, 0 = no limit). Transfers
        /// beyond it wait for a free connection (or share one over HTTP/2).
        public var maxConnectionsPerHost: Int
        /// Concurrent connections in all (`CURLMOPT_MAX_TOTAL_CONNECTIONS`, 0 = no limit).
        public var maxTotalConnections: Int
        /// A stream pauses its transfer once this many body bytes wait for the consumer, and resumes when
        /// they are down to half. At most one more libcurl write (16 KiB) is ever buffered on top.
        public var streamBufferBytes: Int
        /// A buffered response larger than this fails with ``UpstreamError/Kind/invalidResponse``.
        public var maxResponseBytes: Int
        /// Offer HTTP/2 over TLS (ALPN); plain-text connections always use HTTP/1.1.
        public var http2: Bool
        /// Easy handles kept for reuse once their transfer ends.
        public var maxIdleHandles: Int
        /// Whether libcurl may use a proxy named by `http_proxy` / `https_proxy` / `all_proxy` (and skip it
        /// per `no_proxy`); `false` always connects directly.
        public var usesProxyEnvironment: Bool

        /// - Parameters:
        ///   - maxCachedConnections: `CURLMOPT_MAXCONNECTS`.
        ///   - maxConnectionsPerHost: `CURLMOPT_MAX_HOST_CONNECTIONS` (0 = no limit).
        ///   - maxTotalConnections: `CURLMOPT_MAX_TOTAL_CONNECTIONS` (0 = no limit).
        ///   - streamBufferBytes: the stream back-pressure bound.
        ///   - maxResponseBytes: the largest buffered response.
        ///   - http2: offer HTTP/2 over TLS.
        ///   - maxIdleHandles: easy handles kept for reuse.
        ///   - usesProxyEnvironment: honour the proxy environment variables.
        public init(
            maxCachedConnections: Int = 256,
            maxConnectionsPerHost: Int = 1024,
            maxTotalConnections: Int = 0,
            streamBufferBytes: Int = 64 * 1024,
            maxResponseBytes: Int = 32 * 1024 * 1024,
            http2: Bool = true,
            maxIdleHandles: Int = 256,
            usesProxyEnvironment: Bool = true
        ) {
            self.maxCachedConnections = maxCachedConnections
            self.maxConnectionsPerHost = maxConnectionsPerHost
            self.maxTotalConnections = maxTotalConnections
            self.streamBufferBytes = streamBufferBytes
            self.maxResponseBytes = maxResponseBytes
            self.http2 = http2
            self.maxIdleHandles = maxIdleHandles
            self.usesProxyEnvironment = usesProxyEnvironment
        }
    }

    /// The configuration the client was created with.
    public let configuration: Configuration
    /// Whether a transfer must let libcurl read the proxy variables: only when proxies are allowed and one
    /// is set. Otherwise every transfer disables proxies outright, which spares libcurl a handful of
    /// `getenv` calls per transfer (the environment is read once, here).
    let readsProxyEnvironment: Bool

    let multi: MultiHandle
    private let state: Mutex<SharedState>
    let counters = Counters()
    private let nextID = Atomic<UInt64>(1)
    private let runCalled = Atomic<Bool>(false)

    /// Creates a client; it serves nothing until ``run()`` is called.
    ///
    /// - Parameter configuration: pool and buffer tunables.
    /// - Throws: ``UpstreamError`` of kind `.other` when libcurl cannot be initialised.
    public init(configuration: Configuration = Configuration()) throws(UpstreamError) {
        try CurlGlobal.initialize()
        self.configuration = configuration
        self.readsProxyEnvironment = configuration.usesProxyEnvironment && Self.proxyEnvironmentIsSet()
        self.multi = try MultiHandle(
            maxCachedConnections: configuration.maxCachedConnections,
            maxConnectionsPerHost: configuration.maxConnectionsPerHost,
            maxTotalConnections: configuration.maxTotalConnections)
        self.state = Mutex(SharedState())
    }

    /// Whether any variable libcurl reads for a proxy is set (non-empty).
    static func proxyEnvironmentIsSet() -> Bool {
        let names = ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
        return names.contains { name in getenv(name).map { $0.pointee != 0 } ?? false }
    }

    // MARK: - Lifecycle

    /// Runs the client's loop thread until ``shutdown()`` is called or the calling task is cancelled, then
    /// waits for the thread to finish (every pending call has failed with `.cancelled` by then).
    ///
    /// Call it once. It does not occupy a Swift concurrency thread while it waits.
    public func run() async {
        let alreadyRunning = self.runCalled.exchange(true, ordering: .relaxed)
        precondition(!alreadyRunning, "CurlClient.run() must be called only once")
        let start = self.state.withLock { state -> Bool in
            guard state.phase == .idle else { return false }
            state.phase = .running
            return true
        }
        guard start else { return }
        let thread = Mutex<DedicatedThread?>(nil)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let started = CurlLoop.startThread(client: self, whenFinished: done)
                thread.withLock { $0 = started }
            }
        } onCancel: {
            self.shutdown()
        }
        // The loop has ended; its thread returns right after resuming us.
        thread.withLock { $0 }?.join()
    }

    /// Stops the client: pending and later calls fail with ``UpstreamError/Kind/cancelled``, the loop
    /// thread closes every connection and ends, and ``run()`` returns. Safe to call more than once, from any
    /// thread.
    public func shutdown() {
        let action = self.state.withLock { state -> ShutdownAction in
            switch state.phase {
            case .idle:
                state.phase = .stopped
                let queued = state.commands
                state.commands = []
                return .failQueued(queued)
            case .running:
                state.phase = .stopping
                // Always wake: the loop may be anywhere in its iteration; a spare wakeup only makes one
                // poll return early.
                return .wakeLoop
            case .stopping, .stopped:
                return .none
            }
        }
        switch action {
        case .failQueued(let commands):
            for case .submit(let spec) in commands {
                spec.fail(UpstreamError(.cancelled, message: "the upstream client shut down"))
            }
        case .wakeLoop:
            self.multi.wakeup()
        case .none:
            break
        }
    }

    /// Creates a client, runs it while `body` runs, and shuts it down afterwards.
    ///
    /// - Parameters:
    ///   - configuration: pool and buffer tunables.
    ///   - body: uses the client.
    /// - Returns: what `body` returns.
    public static func withClient<Result: Sendable>(
        configuration: Configuration = Configuration(),
        isolation: isolated (any Actor)? = #isolation,
        _ body: (CurlClient) async throws -> Result
    ) async throws -> Result {
        let client = try CurlClient(configuration: configuration)
        return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
            group.addTask { await client.run() }
            defer { client.shutdown() }
            return try await body(client)
        }
    }

    // MARK: - Calls

    /// Sends `request` and returns the whole response.
    ///
    /// - Parameter request: the request; its `timeouts.response` bounds the whole call.
    /// - Returns: the status, headers and body of the final response (any status: an HTTP error status is
    ///   a response, not an error).
    /// - Throws: ``UpstreamError`` when no complete response arrived: connect failures, timeouts, resets,
    ///   cancellation of the calling task, shutdown.
    public func execute(_ request: UpstreamHTTPRequest) async throws(UpstreamError) -> UpstreamHTTPResponse {
        let headerLines = try request.headerLines()
        let token = TransferToken(id: self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue)
        let submittedAt = ContinuousClock.now
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<UpstreamHTTPResponse, UpstreamError>, Never>) in
                let spec = TransferSpec(
                    id: token.id, request: request, headerLines: headerLines, submittedAt: submittedAt, delivery: .buffered(continuation))
                token.submit(spec, to: self)
            }
        } onCancel: {
            token.cancel(on: self)
        }
        return try result.get()
    }

    /// Sends `request` and returns as soon as the response headers are in; the body follows as a stream.
    ///
    /// - Parameter request: the request; `timeouts.response` bounds the wait for the headers,
    ///   `timeouts.firstByte` the wait for the first body byte and `timeouts.idle` each silence after it.
    /// - Returns: the status and headers, and the body as an ``UpstreamByteStream``. The body stream fails
    ///   with the first-byte or idle timeout, a broken connection, or `.cancelled`.
    /// - Throws: ``UpstreamError`` when no response headers arrived.
    public func stream(_ request: UpstreamHTTPRequest) async throws(UpstreamError) -> UpstreamStreamingResponse {
        let headerLines = try request.headerLines()
        let token = TransferToken(id: self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue)
        let storage = ByteStreamStorage(id: token.id, client: self, highWaterMark: max(1, self.configuration.streamBufferBytes))
        let submittedAt = ContinuousClock.now
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<StreamHead, UpstreamError>, Never>) in
                let spec = TransferSpec(
                    id: token.id, request: request, headerLines: headerLines, submittedAt: submittedAt,
                    delivery: .streaming(continuation, storage))
                token.submit(spec, to: self)
            }
        } onCancel: {
            token.cancel(on: self)
        }
        let head = try result.get()
        return UpstreamStreamingResponse(status: head.status, headers: head.headers, body: UpstreamByteStream(storage: storage))
    }

    // MARK: - Loop interface

    /// Queues a command for the loop thread. Returns `false` (and queues nothing) once the client is
    /// stopping; `wake` tells the caller to call ``MultiHandle/wakeup()`` (after releasing any lock): only
    /// when the loop sleeps in `curl_multi_poll` and nobody woke it yet, so a busy loop costs no syscall.
    func enqueue(_ command: LoopCommand) -> (accepted: Bool, wake: Bool) {
        self.state.withLock { state in
            switch state.phase {
            case .stopping, .stopped:
                return (false, false)
            case .idle, .running:
                state.commands.append(command)
                guard state.loopSleeps && !state.wakeupPending else { return (true, false) }
                state.wakeupPending = true
                return (true, true)
            }
        }
    }

    /// Cancels transfer `id`: if its submission is still queued it is taken back and returned (the caller
    /// fails it, no transfer starts); otherwise a cancel command is queued (`wake` as in ``enqueue(_:)``).
    func cancel(_ id: TransferID) -> (unsubmitted: TransferSpec?, wake: Bool) {
        self.state.withLock { state in
            if let index = state.commands.firstIndex(where: { if case .submit(let spec) = $0 { spec.id == id } else { false } }),
                case .submit(let spec) = state.commands.remove(at: index)
            {
                return (spec, false)
            }
            switch state.phase {
            case .stopping, .stopped:
                return (nil, false)
            case .idle, .running:
                state.commands.append(.cancel(id))
                guard state.loopSleeps && !state.wakeupPending else { return (nil, false) }
                state.wakeupPending = true
                return (nil, true)
            }
        }
    }

    /// Queues a command that needs no answer (cancel, resume) and wakes the loop.
    func send(_ command: LoopCommand) {
        let (_, wake) = self.enqueue(command)
        if wake { self.multi.wakeup() }
    }

    /// Called by the loop thread: moves the queued commands into `buffer` (an empty array whose capacity
    /// is reused) and tells whether the loop must stop.
    func takeCommands(into buffer: inout [LoopCommand]) -> Bool {
        self.state.withLock { state in
            state.loopSleeps = false
            state.wakeupPending = false
            swap(&state.commands, &buffer)
            if state.phase == .stopping {
                state.phase = .stopped
                return true
            }
            return false
        }
    }

    /// Called by the loop thread before `curl_multi_poll`: returns `false` when commands (or a stop) are
    /// already waiting, so the loop must not sleep; else marks the loop asleep, and callers will wake it.
    func loopWillSleep() -> Bool {
        self.state.withLock { state in
            guard state.commands.isEmpty && state.phase != .stopping else { return false }
            state.loopSleeps = true
            return true
        }
    }
}

extension CurlClient {
    /// What the connection pool did since the client was created.
    public struct Statistics: Sendable, Hashable {
        /// Transfers that reached the server (sent their request), on a new or a reused connection.
        public var transfers: Int
        /// Connections opened (each TCP, and TLS, handshake once).
        public var connectionsOpened: Int
        /// Transfers that waited 2 ms or more for a connection (a pool limit, or an HTTP/2 connection still
        /// in its handshake), and their total wait.
        public var connectionWaits: Int
        public var connectionWaitTime: Duration

        public init(transfers: Int = 0, connectionsOpened: Int = 0, connectionWaits: Int = 0, connectionWaitTime: Duration = .zero) {
            self.transfers = transfers
            self.connectionsOpened = connectionsOpened
            self.connectionWaits = connectionWaits
            self.connectionWaitTime = connectionWaitTime
        }
    }

    /// The pool's counters: read them for metrics (cheap; atomics).
    public var statistics: Statistics {
        Statistics(
            transfers: self.counters.transfers.load(ordering: .relaxed),
            connectionsOpened: self.counters.connectionsOpened.load(ordering: .relaxed),
            connectionWaits: self.counters.connectionWaits.load(ordering: .relaxed),
            connectionWaitTime: .microseconds(self.counters.connectionWaitMicroseconds.load(ordering: .relaxed)))
    }

    /// Written by the loop thread only, read by anyone.
    final class Counters: Sendable {
        let transfers = Atomic<Int>(0)
        let connectionsOpened = Atomic<Int>(0)
        let connectionWaits = Atomic<Int>(0)
        let connectionWaitMicroseconds = Atomic<Int>(0)
    }

    enum Phase {
        case idle, running, stopping, stopped
    }

    struct SharedState {
        var phase: Phase = .idle
        var commands: [LoopCommand] = []
        /// The loop is in (or about to enter) `curl_multi_poll` and needs a wakeup to see new commands.
        var loopSleeps = false
        /// A `curl_multi_wakeup` was sent since the loop went to sleep.
        var wakeupPending = false
    }

    enum ShutdownAction {
        case failQueued([LoopCommand])
        case wakeLoop
        case none
    }
}
