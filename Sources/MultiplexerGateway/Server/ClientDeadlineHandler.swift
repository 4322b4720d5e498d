import Logging
import NIOCore
import NIOHTTPTypes
import Prometheus

/// Closes client connections that hold the gateway without sending a request (ARCHITECTURE §4):
///
/// - `header_timeout_seconds`: a request head must be complete this long after the connection's accept (the
///   first request) or after the first byte of the next request arrived (keep-alive). A slowloris client that
///   trickles a header byte a second gets `408` and the connection closed; a connection that sent nothing
///   since its accept is closed without a response.
/// - `header_timeout_seconds` between two reads of a request body: a body that stops arriving is abandoned
///   and the connection closed (the gateway routes a request only once its body is complete, so nothing was
///   reserved or sent upstream).
/// - `idle_timeout_seconds`: a keep-alive connection on which no byte of a next request arrives this long
///   after the previous response's end is closed.
///
/// While a request is routed and its response written, no timer of this handler runs: a slow provider is
/// bounded by the provider's timeouts, a client that stops reading by `client_write_timeout_seconds`.
///
/// The handler sits after the HTTP decoder (it sees request heads and ends and the response's end); a
/// ``RawBytes`` companion it installs at the front of the pipeline tells it when bytes arrive. Both are used
/// only on the channel's event loop. One timer per connection, rescheduled lazily: it is moved only when a
/// deadline comes earlier than the one it was set for, so a request costs at most one reschedule.
final class ClientDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    enum Reason: Int {
        case header = 0, body = 1, idle = 2
    }

    private let headerTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let metrics: GatewayMetrics
    private let logger: Logger

    /// When the head being waited for started: the accept, or the first byte after an idle period; nil when no
    /// head is awaited (a request is in progress, or the connection is idle).
    private var headStart: NIODeadline?
    /// Whether a byte arrived since `headStart`.
    private var headBytes = false
    /// When the connection became idle (the previous exchange ended), while it is.
    private var idleSince: NIODeadline?
    /// The request body is still arriving; `lastRead` is when its last bytes came.
    private var receivingBody = false
    private var lastRead = NIODeadline.now()
    /// Request heads received whose response has not ended.
    private var pendingResponses = 0
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var context: ChannelHandlerContext?
    private var raw: RawBytes?
    private var counted = false

    init(headerTimeout: Duration, idleTimeout: Duration, metrics: GatewayMetrics, logger: Logger) {
        self.headerTimeout = Self.timeAmount(headerTimeout)
        self.idleTimeout = Self.timeAmount(idleTimeout)
        self.metrics = metrics
        self.logger = logger
    }

    static func timeAmount(_ d: Duration) -> TimeAmount {
        .nanoseconds(d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let raw = RawBytes(owner: self)
        self.raw = raw
        do {
            try context.pipeline.syncOperations.addHandler(raw, position: .first)
        } catch {
            // Only when the channel is already closing; nothing to time then.
            return
        }
        if context.channel.isActive { self.start() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.stop()
        self.context = nil
        self.raw?.detach()
        self.raw = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.start()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.stop()
        context.fireChannelInactive()
    }

    private func start() {
        guard !self.counted else { return }
        self.counted = true
        self.metrics.clientConnections.increment()
        self.headStart = .now()
        self.arm()
    }

    private func stop() {
        if self.counted {
            self.counted = false
            self.metrics.clientConnections.decrement()
        }
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = nil
    }

    // MARK: Events

    /// From ``RawBytes``: bytes arrived (before the decoder sees them).
    fileprivate func bytesArrived() {
        if self.receivingBody {
            self.lastRead = .now()
        } else if self.headStart == nil {
            // The first byte of a next request: the idle period is over, the head's clock starts.
            self.headStart = .now()
            self.headBytes = true
            self.idleSince = nil
            self.arm()
        } else {
            self.headBytes = true
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head:
            self.headStart = nil
            self.headBytes = false
            self.idleSince = nil
            self.receivingBody = true
            self.lastRead = .now()
            self.pendingResponses += 1
            self.arm()
        case .body:
            break
        case .end:
            self.receivingBody = false
            self.becomeIdleIfDone()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data) {
            self.pendingResponses = max(0, self.pendingResponses - 1)
            self.becomeIdleIfDone()
        }
        context.write(data, promise: promise)
    }

    private func becomeIdleIfDone() {
        guard !self.receivingBody, self.pendingResponses == 0, self.headStart == nil else { return }
        self.idleSince = .now()
        self.arm()
    }

    // MARK: The timer

    /// The deadline the connection's current state sets, and what it is for.
    private func deadline() -> (NIODeadline, Reason)? {
        if self.receivingBody { return (self.lastRead + self.headerTimeout, .body) }
        if self.pendingResponses > 0 { return nil }
        if let start = self.headStart { return (start + self.headerTimeout, .header) }
        if let idle = self.idleSince { return (idle + self.idleTimeout, .idle) }
        return nil
    }

    /// Makes sure the timer fires no later than the current deadline.
    private func arm() {
        guard let context = self.context, let (deadline, _) = self.deadline() else { return }
        if let set = self.timerDeadline, set <= deadline { return }
        self.timer?.cancel()
        self.timerDeadline = deadline
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.fired()
        }
    }

    private func fired() {
        self.timer = nil
        self.timerDeadline = nil
        guard let (deadline, reason) = self.deadline() else { return }
        guard NIODeadline.now() >= deadline else {
            self.arm()
            return
        }
        self.expire(reason)
    }

    private func expire(_ reason: Reason) {
        guard let context = self.context else { return }
        self.metrics.clientTimeouts[reason.rawValue].increment()
        let peer = context.channel.remoteAddress?.description ?? "?"
        switch reason {
        case .header:
            self.logger.info("client connection closed: request head not complete in time", metadata: ["peer": .string(peer)])
            if self.headBytes, let raw = self.raw {
                raw.answerTimeoutAndClose()
                return
            }
        case .body:
            self.logger.info("client connection closed: request body stopped arriving", metadata: ["peer": .string(peer)])
        case .idle:
            self.logger.debug("client connection closed: idle keep-alive", metadata: ["peer": .string(peer)])
        }
        context.close(promise: nil)
    }

    /// The front of the pipeline: reports arriving bytes to its owner, and writes the raw `408` of a head that
    /// did not complete (the HTTP encoder has no response in progress then, and the decoder's state is moot
    /// because the connection closes).
    final class RawBytes: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer

        /// Strong, the cycle broken when either handler leaves the pipeline.
        private var owner: ClientDeadlineHandler?
        private var context: ChannelHandlerContext?

        init(owner: ClientDeadlineHandler) {
            self.owner = owner
        }

        func detach() {
            self.owner = nil
        }

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            self.context = nil
            self.owner = nil
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.owner?.bytesArrived()
            context.fireChannelRead(data)
        }

        func answerTimeoutAndClose() {
            guard let context = self.context else { return }
            let body = #"{"error":{"message":"The request head was not received in time.","type":"invalid_request_error","param":null,"code":"request_timeout"}}"#
            var buffer = context.channel.allocator.buffer(capacity: 200 + body.utf8.count)
            buffer.writeString(
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n")
            buffer.writeString(body)
            context.writeAndFlush(NIOAny(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
