import Foundation
import MultiplexerCore
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Raw client connections driven from one blocking thread (never the cooperative pool the in-process gateway
/// needs): many sockets at once, each byte sent when the test says, and the moment the gateway closes each.
final class RawClients: @unchecked Sendable {
    // Safety: every member is used only by the one thread that runs the test's blocking closure.
    struct Connection {
        var fd: Int32
        var opened: ContinuousClock.Instant
        /// When the client first sent bytes on it.
        var sent: ContinuousClock.Instant?
        var received: [UInt8] = []
        /// When bytes last arrived.
        var lastData: ContinuousClock.Instant?
        var closed: ContinuousClock.Instant?
        var text: String { String(decoding: self.received, as: UTF8.self) }
    }

    private(set) var connections: [Connection] = []
    let port: Int

    init(port: Int) {
        self.port = port
    }

    deinit {
        for c in self.connections where c.fd >= 0 { close(c.fd) }
    }

    /// Opens a connection (the kernel completes the handshake even when the gateway does not accept yet).
    @discardableResult
    func open() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(self.port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
        self.connections.append(Connection(fd: fd, opened: .now))
        return self.connections.count - 1
    }

    func send(_ i: Int, _ text: String) {
        let bytes = Array(text.utf8)
        if self.connections[i].sent == nil { self.connections[i].sent = .now }
        _ = bytes.withUnsafeBytes { Glibc.send(self.connections[i].fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Closes connection `i` from the client's side.
    func hangUp(_ i: Int) {
        close(self.connections[i].fd)
        self.connections[i].fd = -1
    }

    func isClosed(_ i: Int) -> Bool { self.connections[i].closed != nil }

    /// Reads whatever arrives on every open connection for `duration`, noting when each is closed by the peer.
    func pump(for duration: Duration) {
        let end = ContinuousClock.now + duration
        while true {
            let left = end - .now
            guard left > .zero else { return }
            let open = self.connections.indices.filter { self.connections[$0].fd >= 0 && self.connections[$0].closed == nil }
            guard !open.isEmpty else {
                Thread.sleep(forTimeInterval: Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18)
                return
            }
            var fds = open.map { pollfd(fd: self.connections[$0].fd, events: Int16(POLLIN), revents: 0) }
            let ms = Int32(min(100, max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            guard poll(&fds, nfds_t(fds.count), ms) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 16384)
            for (k, i) in open.enumerated() where fds[k].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { recv(self.connections[i].fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    self.connections[i].received += chunk[0..<n]
                    self.connections[i].lastData = .now
                } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) {
                    self.connections[i].closed = .now
                }
            }
        }
    }

    /// Pumps until `condition` holds or `timeout` passes; whether it held.
    @discardableResult
    func pump(until condition: (RawClients) -> Bool, timeout: Duration) -> Bool {
        let end = ContinuousClock.now + timeout
        while !condition(self) {
            if ContinuousClock.now >= end { return false }
            self.pump(for: .milliseconds(20))
        }
        return true
    }

    func connection(_ i: Int) -> Connection { self.connections[i] }

    /// Whether connection `i` has received `count` complete responses (each with a `content-length`).
    func responses(_ i: Int) -> [RawHTTPResponse] {
        var rest = Substring(self.connections[i].text)
        var out: [RawHTTPResponse] = []
        while let split = rest.range(of: "\r\n\r\n") {
            let head = rest[..<split.lowerBound]
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            let bodyStart = split.upperBound
            guard rest.distance(from: bodyStart, to: rest.endIndex) >= length else { break }
            let bodyEnd = rest.index(bodyStart, offsetBy: length)
            out.append(RawHTTPResponse(parsing: String(rest[..<bodyEnd])))
            rest = rest[bodyEnd...]
        }
        return out
    }
}

extension Duration {
    var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}

/// `server.header_timeout_seconds`, `idle_timeout_seconds` and `max_connections` (ARCHITECTURE §4) against
/// raw-socket clients that trickle, stall, idle and crowd, while normal traffic is served.
@Suite struct ClientTimeoutTests {
    static let one = [GatewayFixture.MockSpec("a")]

    static func yaml(_ server: String) -> @Sendable ([String: Int]) -> String {
        { gatewayYAML($0, primary: [("a", 1)]).replacingOccurrences(of: "server: { host: 127.0.0.1, port: 0 }", with: "server: { host: 127.0.0.1, port: 0, \(server) }") }
    }

    static let chatHead = "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nX-Padding: \(String(repeating: "p", count: 200))\r\n"

    func metric(_ f: GatewayFixture, _ series: String) async throws -> Double {
        let text = try await f.request("/metrics", method: "GET").text
        return text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }

    @Test func slowlorisConnectionsAreClosedAtTheHeaderTimeoutWhileTrafficIsServed() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: Self.yaml("header_timeout_seconds: 2")) { f in
            let port = f.gatewayPort
            async let attack: [RawClients.Connection] = offCooperativePool {
                let c = RawClients(port: port)
                for _ in 0..<30 { try c.open() }
                // A header byte to every connection each 250 ms: 8 bytes in 2 s, the head never completes.
                let head = Array(Self.chatHead.utf8)
                var sent = 0
                while sent < head.count, !c.pump(until: { c in (0..<30).allSatisfy(c.isClosed) }, timeout: .zero) {
                    for i in 0..<30 where !c.isClosed(i) { c.send(i, String(decoding: [head[sent]], as: UTF8.self)) }
                    sent += 1
                    c.pump(for: .milliseconds(250))
                    if ContinuousClock.now - c.connection(0).opened > .seconds(20) { break }
                }
                return (0..<30).map(c.connection)
            }
            var served = 0
            let start = ContinuousClock.now
            // At least 3 s of traffic (the attack's whole first round), and at least 5 requests.
            while ContinuousClock.now - start < .seconds(3) || (served < 5 && ContinuousClock.now - start < .seconds(20)) {
                let r = try await f.chat()
                #expect(r.status == 200, "normal traffic is served during the attack: \(r.status)")
                if r.status == 200 { served += 1 }
                try await Task.sleep(for: .milliseconds(100))
            }
            for c in try await attack {
                let closed = try #require(c.closed, "every slowloris connection is closed")
                let after = (closed - c.opened).seconds
                #expect(after >= 1.8 && after <= 8, "closed \(after) s after its accept (header timeout 2 s)")
                let r = RawHTTPResponse(parsing: c.text)
                #expect(r.status == 408 && r.body.contains("request_timeout"), "a 408 before the close: \(c.text.prefix(200))")
            }
            #expect(served >= 5)
            #expect(f.mocks["a"]!.state.counters.requests == served, "only the normal requests reached the provider")
            let s = try await f.stats("a")
            #expect(s.usage.requests == served && s.window.inFlight == 0)
            #expect(try await self.metric(f, #"multiplexer_client_connections_closed_total{reason="header_timeout"}"#) == 30)
        }
    }

    @Test func idleKeepAlivesAreClosedAtTheIdleTimeoutAndBusyOnesKept() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: Self.yaml("header_timeout_seconds: 4, idle_timeout_seconds: 1.5")) { f in
            let port = f.gatewayPort
            let n = 500
            let (idle, busy, silent) = try await offCooperativePool { () throws -> ([RawClients.Connection], [RawHTTPResponse], RawClients.Connection) in
                let c = RawClients(port: port)
                for i in 0..<n {
                    try c.open()
                    c.send(i, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
                }
                c.pump(until: { c in (0..<n).allSatisfy { c.responses($0).count == 1 || c.isClosed($0) } }, timeout: .seconds(20))
                // One connection that keeps sending a request every 0.7 s, one that never sends a byte.
                let busy = try c.open()
                let silent = try c.open()
                for round in 0..<6 {
                    c.send(busy, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
                    c.pump(until: { $0.responses(busy).count == round + 1 || $0.isClosed(busy) }, timeout: .seconds(5))
                    c.pump(for: .milliseconds(700))
                }
                c.pump(until: { c in (0..<n).allSatisfy(c.isClosed) && c.isClosed(silent) }, timeout: .seconds(15))
                return ((0..<n).map(c.connection), c.responses(busy), c.connection(silent))
            }
            var early = 0
            var late = 0
            for c in idle {
                #expect(RawHTTPResponse(parsing: c.text).status == 200)
                guard let closed = c.closed, let sent = c.sent else {
                    late += 1
                    continue
                }
                // The response ended after the request was sent, so its idle timeout cannot end sooner.
                if (closed - sent).seconds < 1.4 { early += 1 }
            }
            #expect(early == 0, "no idle connection closed before its idle timeout")
            #expect(late == 0, "every idle keep-alive is closed")
            #expect(busy.count == 6 && busy.allSatisfy { $0.status == 200 }, "a connection used every 0.7 s stays open past 1.5 s: \(busy.count) answers")
            let closed = try #require(silent.closed, "a connection that sends nothing is closed at the header timeout")
            #expect((closed - silent.opened).seconds >= 3.8, "\((closed - silent.opened).seconds) s")
            #expect(silent.received.isEmpty, "without a response")
            #expect(try await self.metric(f, #"multiplexer_client_connections_closed_total{reason="idle_timeout"}"#) >= Double(n))
        }
    }

    @Test func aStalledBodyIsAbandonedAndNothingIsReservedOrSent() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: Self.yaml("header_timeout_seconds: 1.5")) { f in
            let port = f.gatewayPort
            let c = try await offCooperativePool { () throws -> RawClients.Connection in
                let c = RawClients(port: port)
                try c.open()
                c.send(0, Self.chatHead + "Content-Length: 200\r\n\r\n{\"model\":\"m\",")
                c.pump(until: { $0.isClosed(0) }, timeout: .seconds(10))
                return c.connection(0)
            }
            let closed = try #require(c.closed, "the stalled connection is closed")
            #expect((closed - c.opened).seconds >= 1.3 && (closed - c.opened).seconds <= 8)
            #expect(f.mocks["a"]!.state.counters.requests == 0)
            let s = try await f.stats("a")
            #expect(s.usage.requests == 0 && s.window.inFlight == 0)
            #expect(try await self.metric(f, #"multiplexer_client_connections_closed_total{reason="body_timeout"}"#) == 1)
            #expect(try await f.chat().status == 200)
        }
    }

    @Test func aKeepAliveRequestTrickledAfterAPauseGetsTheHeaderTimeoutFromItsFirstByte() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: Self.yaml("header_timeout_seconds: 1.5, idle_timeout_seconds: 5")) { f in
            let port = f.gatewayPort
            let (c, firstByte) = try await offCooperativePool { () throws -> (RawClients.Connection, ContinuousClock.Instant) in
                let c = RawClients(port: port)
                try c.open()
                c.send(0, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
                c.pump(until: { $0.responses(0).count == 1 }, timeout: .seconds(5))
                c.pump(for: .seconds(1))
                let firstByte = ContinuousClock.now
                for byte in Self.chatHead.utf8 {
                    if c.isClosed(0) { break }
                    c.send(0, String(decoding: [byte], as: UTF8.self))
                    c.pump(for: .milliseconds(200))
                    if ContinuousClock.now - firstByte > .seconds(15) { break }
                }
                return (c.connection(0), firstByte)
            }
            let closed = try #require(c.closed)
            let after = (closed - firstByte).seconds
            #expect(after >= 1.3 && after <= 8, "closed \(after) s after the next request's first byte")
            let texts = c.text.components(separatedBy: "HTTP/1.1 ")
            #expect(texts.count == 3 && texts[2].hasPrefix("408"), "200, then 408: \(c.text.prefix(400))")
        }
    }

    @Test func connectionsBeyondTheCapWaitInTheBacklogUntilOneCloses() async throws {
        try await GatewayFixture.with(mocks: Self.one, yaml: Self.yaml("max_connections: 3, header_timeout_seconds: 30, idle_timeout_seconds: 30")) { f in
            let port = f.gatewayPort
            let (waited, served) = try await offCooperativePool { () throws -> (Bool, Bool) in
                let c = RawClients(port: port)
                for i in 0..<3 {
                    try c.open()
                    c.send(i, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
                    c.pump(until: { $0.responses(i).count == 1 }, timeout: .seconds(5))
                }
                let fourth = try c.open()
                c.send(fourth, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
                c.pump(for: .milliseconds(1500))
                let waited = c.connection(fourth).received.isEmpty && !c.isClosed(fourth)
                c.hangUp(0)
                let served = c.pump(until: { $0.responses(fourth).first?.status == 200 }, timeout: .seconds(5))
                for i in 1...3 { c.hangUp(i) }
                return (waited, served)
            }
            #expect(waited, "a fourth connection is not served while three are open")
            #expect(served, "it is served once one of the three closes")
            #expect(try await f.chat().status == 200)
        }
    }
}
