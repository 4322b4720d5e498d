import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A request as the test server read it.
struct ReceivedRequest: Sendable {
    var method: String
    var path: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// A tiny HTTP/1.1 server over POSIX sockets on 127.0.0.1, with full control of the bytes on the wire: one
/// thread accepts, one thread per connection runs `handler`, which reads requests and writes whatever it
/// likes (responses, partial responses, nothing, a reset). It counts accepted connections.
final class TestHTTPServer: Sendable {
    let port: UInt16
    private let listener: Int32
    private let state = SharedState()

    private final class SharedState: Sendable {
        private let mutex = Mutex(State())
        func withLock<R>(_ body: (inout State) -> R) -> R { self.mutex.withLock { body(&$0) } }
    }

    fileprivate struct State {
        var accepted = 0
        var open: Set<Int32> = []
        var closed = false
        var listenerClosed = false
    }

    init(handler: @escaping @Sendable (TestConnection) -> Void) throws {
        let (fd, port) = try Sockets.listen(backlog: 512)
        self.listener = fd
        self.port = port
        // Only the accept thread closes the listener, and only a connection's own thread closes that
        // connection, so that no fd number is closed twice (tests run in parallel and reuse fd numbers).
        let state = self.state
        let thread = Thread {
            defer {
                state.withLock { state in
                    state.listenerClosed = true
                    Glibc.close(fd)
                }
            }
            while !state.withLock({ $0.closed }) {
                let client = accept(fd, nil, nil)
                guard client >= 0 else {
                    if errno == EINTR { continue }
                    return
                }
                let admitted = state.withLock { state -> Bool in
                    guard !state.closed else { return false }
                    state.accepted += 1
                    state.open.insert(client)
                    return true
                }
                guard admitted else {
                    Glibc.close(client)
                    return
                }
                Sockets.setNoDelay(client)
                let worker = Thread {
                    handler(TestConnection(fd: client))
                    state.withLock { _ = $0.open.remove(client) }
                    Glibc.close(client)
                }
                worker.start()
            }
        }
        thread.start()
    }

    /// Connections accepted so far.
    var acceptedConnections: Int { self.state.withLock { $0.accepted } }

    /// The base URL, `http://127.0.0.1:<port>`.
    var baseURL: String { "http://127.0.0.1:\(self.port)" }

    /// Stops accepting and closes every open connection.
    func close() {
        // Shut down (which wakes blocked accept/recv calls) while holding the lock, so that no fd is
        // closed by its owner in between.
        self.state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            if !state.listenerClosed { Glibc.shutdown(self.listener, Int32(SHUT_RDWR)) }
            for fd in state.open { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    deinit {
        self.close()
    }
}

/// One accepted connection, used by its handler thread only.
final class TestConnection: @unchecked Sendable {
    // @unchecked Sendable: it is handed to one handler thread once and used there only.
    let fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) {
        self.fd = fd
    }

    /// The next request on the connection, or `nil` when the client closed it.
    func readRequest() -> ReceivedRequest? {
        var headerEnd: Int?
        while headerEnd == nil {
            headerEnd = Self.find([13, 10, 13, 10], in: self.buffer)
            if headerEnd == nil, !self.fill() { return nil }
        }
        let head = String(decoding: self.buffer[..<headerEnd!], as: UTF8.self)
        self.buffer.removeFirst(headerEnd! + 4)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        let headers = lines.compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var request = ReceivedRequest(
            method: requestLine.count > 0 ? String(requestLine[0]) : "", path: requestLine.count > 1 ? String(requestLine[1]) : "",
            headers: headers, body: [])
        let length = Int(request.header("content-length") ?? "0") ?? 0
        while self.buffer.count < length {
            if !self.fill() { return nil }
        }
        request.body = Array(self.buffer[..<length])
        self.buffer.removeFirst(length)
        return request
    }

    /// Writes all of `bytes`; `false` when the peer is gone.
    @discardableResult
    func write(_ bytes: some Collection<UInt8>) -> Bool {
        let array = Array(bytes)
        var offset = 0
        while offset < array.count {
            let n = array.withUnsafeBytes { raw in
                send(self.fd, raw.baseAddress! + offset, array.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    @discardableResult
    func write(_ text: String) -> Bool {
        self.write(Array(text.utf8))
    }

    /// Writes a whole response with a `Content-Length`.
    @discardableResult
    func respond(status: Int = 200, headers: [String: String] = ["Content-Type": "application/json"], body: String) -> Bool {
        var head = "HTTP/1.1 \(status) X\r\n"
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(body.utf8.count)\r\n\r\n"
        return self.write(head + body)
    }

    /// Writes the head of an event stream (chunked).
    @discardableResult
    func startEventStream(status: Int = 200) -> Bool {
        self.write("HTTP/1.1 \(status) OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    }

    /// Writes one chunk of a chunked body.
    @discardableResult
    func writeChunk(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return self.write("\(String(bytes.count, radix: 16))\r\n" + text + "\r\n")
    }

    /// Ends a chunked body.
    @discardableResult
    func endChunks() -> Bool {
        self.write("0\r\n\r\n")
    }

    /// Closes the connection with a TCP reset (SO_LINGER 0).
    func reset() {
        var linger = linger(l_onoff: 1, l_linger: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        Glibc.shutdown(self.fd, Int32(SHUT_RDWR))
    }

    /// Waits until the client closes the connection; `true` if it did within `timeout`.
    func waitForPeerClose(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var scratch = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            var pfd = pollfd(fd: self.fd, events: Int16(POLLIN | 0x2000), revents: 0)
            let left = max(1, Int32(ContinuousClock.now.duration(to: deadline).components.seconds * 1000 + 1))
            let ready = poll(&pfd, 1, min(left, 50))
            if ready < 0 && errno != EINTR { return true }
            if ready > 0 {
                let n = recv(self.fd, &scratch, scratch.count, 0)
                if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) { return true }
            }
        }
        return false
    }

    /// Sets the kernel send buffer (to make back-pressure reach the server sooner).
    func setSendBuffer(_ bytes: Int32) {
        var value = bytes
        setsockopt(self.fd, SOL_SOCKET, SO_SNDBUF, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(self.fd, &chunk, chunk.count, 0)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            self.buffer.append(contentsOf: chunk[..<n])
            return true
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }
}

/// Socket helpers.
enum Sockets {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A listening TCP socket on 127.0.0.1 and an ephemeral port.
    static func listen(backlog: Int32) throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            Glibc.close(fd)
            throw Failure(description: "bind/listen: \(errno)")
        }
        return (fd, Self.localPort(fd))
    }

    /// A port on 127.0.0.1 where nothing listens (bound, then closed).
    static func refusedPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw Failure(description: "bind: \(errno)") }
        let port = Self.localPort(fd)
        Glibc.close(fd)
        return port
    }

    /// A listener whose accept queue is full and never drained: further connection attempts hang in the
    /// TCP handshake (the kernel drops their SYNs), which is how a connect timeout looks on loopback.
    static func blackhole() throws -> (port: UInt16, fds: [Int32]) {
        let (listener, port) = try Self.listen(backlog: 0)
        var fds = [listener]
        for _ in 0..<4 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            var address = Self.loopback(port: port)
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            fds.append(fd)
        }
        usleep(50_000)
        return (port, fds)
    }

    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private static func localPort(_ fd: Int32) -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }
}

/// A flag one thread sets and another waits for, with a timeout.
final class Signal: Sendable {
    private let condition = NSCondition()
    private let flag = Mutex(false)

    func fire() {
        self.condition.lock()
        self.flag.withLock { $0 = true }
        self.condition.broadcast()
        self.condition.unlock()
    }

    /// `true` if fired within `timeout`.
    func wait(timeout: Duration) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        self.condition.lock()
        defer { self.condition.unlock() }
        while !self.flag.withLock({ $0 }) {
            if !self.condition.wait(until: deadline) { return self.flag.withLock { $0 } }
        }
        return true
    }

    var isFired: Bool { self.flag.withLock { $0 } }
}

extension Duration {
    var seconds: Double {
        Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
    }
}
