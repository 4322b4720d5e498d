internal import CCurl
import MultiplexerCore

/// A transfer that runs on the loop thread: its easy handle, what arrived so far, its
/// timers, and where the result goes.
///
/// Confined to the loop thread: libcurl calls its callbacks there (from `curl_multi_perform` and
/// `curl_easy_pause`), with `self` recovered from the callback's user data. The loop keeps it alive while
/// its handle is in the multi handle.
final class ActiveTransfer {
    let id: TransferID
    let easy: EasyHandle
    /// Which phase the transfer is in and which timer runs.
    private var phases: TransferPhases
    private let maxResponseBytes: Int

    private var bufferedContinuation: CheckedContinuation<Result<UpstreamHTTPResponse, UpstreamError>, Never>?
    private var headContinuation: CheckedContinuation<Result<StreamHead, UpstreamError>, Never>?
    private let storage: ByteStreamStorage?

    private(set) var status = 0
    private var headers = UpstreamHeaders()
    var headersComplete: Bool { self.phases.headersComplete }
    private var body: [UInt8] = []
    /// Finds the events of a 2xx `text/event-stream` body; `nil` for any other body.
    private var boundaries: SSEEventBoundaries?
    private let maxEventBytes: Int
    var paused: Bool { self.phases.paused }
    /// When libcurl was about to send the request on a connection (new or reused): the pool statistics
    /// derive the time the transfer waited for a connection from it.
    private(set) var requestStartedAt: ContinuousClock.Instant?
    /// Why a callback aborted the transfer (returned 0), reported instead of libcurl's write error.
    private var abortReason: UpstreamError?

    var isStreaming: Bool { self.phases.isStreaming }

    init(spec: TransferSpec, easy: EasyHandle, maxResponseBytes: Int) {
        self.id = spec.id
        self.easy = easy
        let streaming: Bool
        if case .streaming = spec.delivery { streaming = true } else { streaming = false }
        self.phases = TransferPhases(timeouts: spec.request.timeouts, submittedAt: spec.submittedAt, isStreaming: streaming)
        self.maxResponseBytes = maxResponseBytes
        self.maxEventBytes = spec.request.maxEventBytes
        self.reusableTLS = spec.request.method == "POST" ? spec.request.tls : nil
        switch spec.delivery {
        case .buffered(let continuation):
            self.bufferedContinuation = continuation
            self.storage = nil
        case .streaming(let continuation, let storage):
            self.headContinuation = continuation
            self.storage = storage
        }
    }

    // MARK: - Setup

    /// When set, a completed transfer leaves the easy handle ready for the next `POST` with these TLS
    /// settings without `curl_easy_reset`: a plain `POST` leaves exactly the options the next one sets
    /// again or keeps (the TLS options are set only on a fresh handle).
    let reusableTLS: TLSOptions?

    /// Sets the options of the easy handle for `spec`. A handle fresh from `curl_easy_reset` (`fresh`) first
    /// gets the options every transfer shares; a handle reused right after a `POST` keeps them.
    func configure(_ spec: TransferSpec, fresh: Bool, configuration: CurlClient.Configuration, readsProxyEnvironment: Bool) throws(UpstreamError) {
        let easy = self.easy
        let request = spec.request
        if fresh {
            if !readsProxyEnvironment {
                // An empty proxy disables proxies, including those named in the environment.
                try easy.set(CURLOPT_PROXY, "", call: "CURLOPT_PROXY")
            }
            try easy.set(CURLOPT_PROTOCOLS_STR, "http,https", call: "CURLOPT_PROTOCOLS_STR")
            try easy.set(CURLOPT_NOSIGNAL, 1, call: "CURLOPT_NOSIGNAL")
            try easy.set(CURLOPT_TCP_NODELAY, 1, call: "CURLOPT_TCP_NODELAY")
            try easy.set(CURLOPT_TCP_KEEPALIVE, 1, call: "CURLOPT_TCP_KEEPALIVE")
            try Self.configureTLS(easy, request.tls)
            try easy.set(
                CURLOPT_HEADERFUNCTION,
                callback: { buffer, size, count, userdata in
                    let length = size * count
                    guard let userdata else { return 0 }
                    let transfer = Unmanaged<ActiveTransfer>.fromOpaque(userdata).takeUnretainedValue()
                    transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: buffer, count: length))
                    return length
                }, call: "CURLOPT_HEADERFUNCTION")
            try easy.set(
                CURLOPT_WRITEFUNCTION,
                callback: { buffer, size, count, userdata in
                    guard let userdata else { return 0 }
                    let transfer = Unmanaged<ActiveTransfer>.fromOpaque(userdata).takeUnretainedValue()
                    return transfer.receiveBody(UnsafeRawBufferPointer(start: buffer, count: size * count))
                }, call: "CURLOPT_WRITEFUNCTION")
            try easy.set(
                CURLOPT_PREREQFUNCTION,
                prerequest: { userdata, _, _, _, _ in
                    if let userdata {
                        Unmanaged<ActiveTransfer>.fromOpaque(userdata).takeUnretainedValue().requestStartedAt = .now
                    }
                    return CURL_PREREQFUNC_OK
                }, call: "CURLOPT_PREREQFUNCTION")
        }
        easy.clearErrorMessage()
        try easy.set(CURLOPT_URL, request.url, call: "CURLOPT_URL")
        // Set on every transfer (a reused handle may come from the other scheme). Plain-text connections are
        // HTTP/1.1, one request at a time each: a transfer never waits for a busy connection (no PIPEWAIT), it
        // opens another one, and finished ones are kept alive for reuse. Over TLS, HTTP/2 is offered by ALPN;
        // PIPEWAIT there only makes a transfer wait for a connection still in its handshake to tell whether it
        // multiplexes (instead of opening a second connection at once); once it is known, transfers share
        // it as streams up to the server's stream limit, and a full or HTTP/1.1-only connection never makes
        // one wait. A libcurl without nghttp2 refuses HTTP/2 and keeps HTTP/1.1.
        if configuration.http2 && request.isHTTPS {
            if (try? easy.set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS), call: "CURLOPT_HTTP_VERSION")) == nil {
                try easy.set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1), call: "CURLOPT_HTTP_VERSION")
            }
            try easy.set(CURLOPT_PIPEWAIT, 1, call: "CURLOPT_PIPEWAIT")
        } else {
            try easy.set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1), call: "CURLOPT_HTTP_VERSION")
            try easy.set(CURLOPT_PIPEWAIT, 0, call: "CURLOPT_PIPEWAIT")
        }
        try easy.set(CURLOPT_CONNECTTIMEOUT_MS, max(1, request.timeouts.connect.wholeMilliseconds), call: "CURLOPT_CONNECTTIMEOUT_MS")
        let context = Unmanaged.passUnretained(self).toOpaque()
        try easy.set(CURLOPT_HEADERDATA, pointer: context, call: "CURLOPT_HEADERDATA")
        try easy.set(CURLOPT_WRITEDATA, pointer: context, call: "CURLOPT_WRITEDATA")
        try easy.set(CURLOPT_PREREQDATA, pointer: context, call: "CURLOPT_PREREQDATA")

        try easy.setHeaders(spec.headerLines)

        switch request.method {
        case "GET":
            try easy.set(CURLOPT_HTTPGET, 1, call: "CURLOPT_HTTPGET")
        case "HEAD":
            try easy.set(CURLOPT_NOBODY, 1, call: "CURLOPT_NOBODY")
        default:
            if request.method != "POST" {
                try easy.set(CURLOPT_CUSTOMREQUEST, request.method, call: "CURLOPT_CUSTOMREQUEST")
            }
            // The size first, then COPYPOSTFIELDS copies exactly that many bytes (binary safe).
            try easy.set(CURLOPT_POSTFIELDSIZE_LARGE, offset: Int64(request.body.count), call: "CURLOPT_POSTFIELDSIZE_LARGE")
            if request.body.isEmpty {
                try easy.set(CURLOPT_COPYPOSTFIELDS, "", call: "CURLOPT_COPYPOSTFIELDS")
            } else {
                let code = request.body.withUnsafeBytes { bytes in
                    ccurl_easy_setopt_pointer(easy.raw, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress))
                }
                try check(code, call: "CURLOPT_COPYPOSTFIELDS")
            }
        }
    }

    /// The TLS options of a fresh handle: the system CA store unless `ca_file` replaces it, the client
    /// certificate for mutual TLS, and verification off only when configured so.
    private static func configureTLS(_ easy: EasyHandle, _ tls: TLSOptions) throws(UpstreamError) {
        if let ca = tls.caFile {
            try easy.set(CURLOPT_CAINFO, ca, call: "CURLOPT_CAINFO")
        }
        if let cert = tls.certFile {
            try easy.set(CURLOPT_SSLCERT, cert, call: "CURLOPT_SSLCERT")
            try easy.set(CURLOPT_SSLCERTTYPE, "PEM", call: "CURLOPT_SSLCERTTYPE")
        }
        if let key = tls.keyFile {
            try easy.set(CURLOPT_SSLKEY, key, call: "CURLOPT_SSLKEY")
            try easy.set(CURLOPT_SSLKEYTYPE, "PEM", call: "CURLOPT_SSLKEYTYPE")
        }
        if !tls.verify {
            try easy.set(CURLOPT_SSL_VERIFYPEER, 0, call: "CURLOPT_SSL_VERIFYPEER")
            try easy.set(CURLOPT_SSL_VERIFYHOST, 0, call: "CURLOPT_SSL_VERIFYHOST")
        }
    }

    // MARK: - Callbacks (loop thread)

    private func receiveHeaderLine(_ raw: UnsafeRawBufferPointer) {
        var line = raw[...]
        while let last = line.last, last == 10 || last == 13 { line.removeLast() }
        if line.isEmpty {
            // The blank line ends one response head; 1xx heads are interim and another one follows.
            if self.status >= 100 && self.status < 200 {
                self.status = 0
                self.headers = UpstreamHeaders()
            } else if !self.headersComplete {
                self.phases.headersArrived()
                self.headersDidComplete()
            }
            return
        }
        if self.headersComplete { return }  // trailers
        if line.starts(with: "HTTP/".utf8) {
            self.status = Self.parseStatus(line)
            self.headers = UpstreamHeaders()
            return
        }
        if let first = line.first, first == 32 || first == 9 {
            // obs-fold: continues the previous field
            if var field = self.headers.fields.popLast() {
                field.value += " " + String(decoding: line, as: UTF8.self).trimmingHTTPWhitespace()
                self.headers.fields.append(field)
            }
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        var valueStart = colon + 1
        var valueEnd = line.endIndex
        while valueStart < valueEnd, line[valueStart] == 32 || line[valueStart] == 9 { valueStart += 1 }
        while valueEnd > valueStart, line[valueEnd - 1] == 32 || line[valueEnd - 1] == 9 { valueEnd -= 1 }
        let nameBytes = line[..<colon]
        let valueBytes = line[valueStart..<valueEnd]
        self.headers.add(name: String(decoding: nameBytes, as: UTF8.self), value: String(decoding: valueBytes, as: UTF8.self))
        if self.storage == nil, nameBytes.count == 14, Self.isContentLength(nameBytes), let length = Self.parseLength(valueBytes), length > 0 {
            self.body.reserveCapacity(min(length, self.maxResponseBytes))
        }
    }

    private static func isContentLength(_ name: Slice<UnsafeRawBufferPointer>) -> Bool {
        zip(name, "content-length".utf8).allSatisfy { pair in (pair.0 | 0x20) == pair.1 }
    }

    private static func parseLength(_ digits: Slice<UnsafeRawBufferPointer>) -> Int? {
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var value = 0
        for byte in digits {
            guard byte >= 48 && byte <= 57 else { return nil }
            value = value * 10 + Int(byte - 48)
        }
        return value
    }

    private func headersDidComplete() {
        if self.storage != nil, (200..<300).contains(self.status),
            self.headers["content-type"].map({ $0.utf8.count >= 17 && $0.lowercased().hasPrefix("text/event-stream") }) ?? true
        {
            self.boundaries = SSEEventBoundaries(maxEventBytes: self.maxEventBytes)
        }
        if let continuation = self.headContinuation {
            self.headContinuation = nil
            continuation.resume(returning: .success(StreamHead(status: self.status, headers: self.headers)))
        }
    }

    private func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let storage = self.storage else {
            guard self.body.count + bytes.count <= self.maxResponseBytes else {
                self.abortReason = UpstreamError(.invalidResponse, message: "response body larger than \(self.maxResponseBytes) bytes")
                return 0
            }
            self.body.append(contentsOf: bytes)
            return bytes.count
        }
        if self.boundaries == nil {
            // Not an event stream (an error body): any byte is activity.
            self.phases.eventArrived(at: .now)
        } else {
            let scan = self.boundaries!.scan(bytes)
            if scan.oversized {
                self.abortReason = UpstreamError(.eventTooLarge, message: "a server-sent event larger than \(self.maxEventBytes) bytes")
                return 0
            }
            if scan.events > 0 { self.phases.eventArrived(at: .now) }
        }
        switch storage.offer(bytes) {
        case .accepted:
            return bytes.count
        case .pause:
            self.phases.pause()
            return Int(CURL_WRITEFUNC_PAUSE)
        case .consumerGone:
            self.abortReason = UpstreamError(.cancelled, message: "the stream's consumer went away")
            return 0
        }
    }

    private static func parseStatus(_ line: Slice<UnsafeRawBufferPointer>) -> Int {
        // "HTTP/1.1 200 OK", "HTTP/2 200"
        guard let space = line.firstIndex(of: 32) else { return 0 }
        var status = 0
        var digits = 0
        for byte in line[(space + 1)...] {
            guard byte >= 48 && byte <= 57 else { break }
            status = status * 10 + Int(byte - 48)
            digits += 1
            if digits == 3 { break }
        }
        return digits == 3 ? status : 0
    }

    // MARK: - Control (loop thread)

    /// Unpauses a paused stream (the consumer drained its buffer). libcurl may deliver the held-back data
    /// from inside this call.
    func resume() -> UpstreamError? {
        guard self.phases.resume(at: .now) else { return nil }
        let code = curl_easy_pause(self.easy.raw, CURLPAUSE_CONT)
        do throws(UpstreamError) {
            try check(code, call: "curl_easy_pause")
            return nil
        } catch {
            return error
        }
    }

    /// The timer that has expired at `now`, as the error to fail the transfer with.
    func expiredTimer(at now: ContinuousClock.Instant) -> UpstreamError? {
        self.phases.expired(at: now)
    }

    /// The earliest pending deadline of the transfer's timers.
    func nextDeadline() -> (ContinuousClock.Instant, UpstreamError.Kind)? {
        self.phases.nextDeadline()
    }

    /// Delivers the end of the transfer: `nil` for a complete response, else the error. Call once, after
    /// the handle left the multi handle.
    func finish(_ failure: UpstreamError?) {
        let error = self.abortReason ?? failure
        if let continuation = self.bufferedContinuation {
            self.bufferedContinuation = nil
            if let error {
                continuation.resume(returning: .failure(error))
            } else if !self.headersComplete || self.status == 0 {
                continuation.resume(returning: .failure(UpstreamError(.invalidResponse, message: "no valid HTTP response head")))
            } else {
                let response = UpstreamHTTPResponse(status: self.status, headers: self.headers, body: self.body)
                self.body = []
                continuation.resume(returning: .success(response))
            }
            return
        }
        guard let storage = self.storage else { return }
        if let head = self.headContinuation {
            self.headContinuation = nil
            let error = error ?? UpstreamError(.invalidResponse, message: "no valid HTTP response head")
            storage.finish(error)
            head.resume(returning: .failure(error))
        } else {
            storage.finish(error)
        }
    }

    /// The context ``check(_:call:context:)`` needs to classify a libcurl failure of this transfer.
    var errorContext: CurlErrorContext {
        CurlErrorContext(headersReceived: self.headersComplete, detail: self.easy.errorMessage)
    }
}

@available(*, unavailable)
extension ActiveTransfer: Sendable {}

extension Duration {
    /// Whole milliseconds, rounded up.
    var wholeMilliseconds: Int {
        let (seconds, attoseconds) = self.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        return Int(seconds) * 1000 + Int((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    func trimmingHTTPWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
