import Glibc
import MultiplexerCore
import MultiplexerUpstream
import Testing

/// Each failure and each timeout comes back as its own kind, and each timeout fires within its bound.
/// Serialized so that timing is not disturbed by the other tests of this suite.
@Suite("Upstream error kinds and timeouts", .serialized)
struct UpstreamErrorTaxonomyTests {
    /// Allowed lateness of a timer. The loop wakes for deadlines exactly, but the whole suite runs in
    /// parallel on a 2-core machine; a second of slack still tells a 300 ms bound from the 5 s and 120 s
    /// defaults, which is what these tests are about.
    static let margin: Duration = .milliseconds(1200)

    @Test
    func connectTimeout() async throws {
        let (port, fds) = try Sockets.blackhole()
        defer { fds.forEach { close($0) } }
        let timeouts = UpstreamTimeouts(connect: .milliseconds(300), response: .seconds(5))
        let (error, elapsed) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in
                try await client.execute(UpstreamHTTPRequest(url: "http://127.0.0.1:\(port)/", timeouts: timeouts))
            }
        }
        #expect(error?.kind == .connectTimeout, "\(String(describing: error))")
        #expect(elapsed >= .milliseconds(280) && elapsed <= .milliseconds(300) + Self.margin, "\(elapsed)")
    }

    @Test
    func hungServerTimesOutAWholeCall() async throws {
        let server = try TestHTTPServer { connection in
            _ = connection.readRequest()
            _ = connection.waitForPeerClose(timeout: .seconds(3))
        }
        defer { server.close() }
        let timeouts = UpstreamTimeouts(connect: .seconds(2), response: .milliseconds(300))
        let (error, elapsed) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in try await client.execute(request(server, timeouts: timeouts)) }
        }
        #expect(error?.kind == .timeout)
        #expect(elapsed >= .milliseconds(280) && elapsed <= .milliseconds(300) + Self.margin, "\(elapsed)")
    }

    @Test
    func slowBodyTimesOutAWholeCall() async throws {
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            _ = connection.waitForPeerClose(timeout: .seconds(3))
        }
        defer { server.close() }
        let timeouts = UpstreamTimeouts(connect: .seconds(2), response: .milliseconds(300))
        let (error, elapsed) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in try await client.execute(request(server, timeouts: timeouts)) }
        }
        #expect(error?.kind == .timeout)
        #expect(elapsed <= .milliseconds(300) + Self.margin, "\(elapsed)")
    }

    @Test
    func streamWithoutHeadersTimesOut() async throws {
        let server = try TestHTTPServer { connection in
            _ = connection.readRequest()
            _ = connection.waitForPeerClose(timeout: .seconds(3))
        }
        defer { server.close() }
        let timeouts = UpstreamTimeouts(connect: .seconds(2), response: .milliseconds(300), firstByte: .seconds(2), idle: .seconds(2))
        let (error, elapsed) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in try await client.stream(request(server, timeouts: timeouts)) }
        }
        #expect(error?.kind == .timeout)
        #expect(elapsed >= .milliseconds(280) && elapsed <= .milliseconds(300) + Self.margin, "\(elapsed)")
    }

    @Test
    func streamWithoutFirstByteTimesOut() async throws {
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.startEventStream()
            _ = connection.waitForPeerClose(timeout: .seconds(3))
        }
        defer { server.close() }
        let timeouts = UpstreamTimeouts(connect: .seconds(2), response: .seconds(2), firstByte: .milliseconds(300), idle: .seconds(2))
        let start = ContinuousClock.now
        let error = try await withTestClient { client in
            let response = try await client.stream(request(server, timeouts: timeouts))
            #expect(response.status == 200)
            return await failure { () async throws(UpstreamError) in try await response.body.collect(upTo: 1 << 20) }.error
        }
        let elapsed = start.duration(to: .now)
        #expect(error?.kind == .firstTokenTimeout)
        #expect(elapsed >= .milliseconds(280) && elapsed <= .milliseconds(300) + Self.margin, "\(elapsed)")
    }

    @Test
    func silentStreamTimesOut() async throws {
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.startEventStream()
            connection.writeChunk("data: one\n\n")
            _ = connection.waitForPeerClose(timeout: .seconds(3))
        }
        defer { server.close() }
        let timeouts = UpstreamTimeouts(connect: .seconds(2), response: .seconds(2), firstByte: .seconds(2), idle: .milliseconds(300))
        let (first, error, elapsed) = try await withTestClient { client in
            let response = try await client.stream(request(server, timeouts: timeouts))
            var iterator = response.body.makeAsyncIterator()
            let first = try await iterator.next()
            let (error, elapsed) = await failure { () async throws(UpstreamError) in try await iterator.next() }
            return (first, error, elapsed)
        }
        #expect(first.map { String(decoding: $0, as: UTF8.self) } == "data: one\n\n")
        #expect(error?.kind == .streamIdleTimeout)
        #expect(elapsed >= .milliseconds(200) && elapsed <= .milliseconds(300) + Self.margin, "\(elapsed)")
    }

    @Test
    func resetBeforeHeadersIsAConnectionReset() async throws {
        let server = try TestHTTPServer { connection in
            _ = connection.readRequest()
            connection.reset()
        }
        defer { server.close() }
        let (error, _) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in try await client.execute(request(server)) }
        }
        #expect(error?.kind == .connectionReset, "\(String(describing: error))")
    }

    @Test
    func closeWithoutResponseIsAConnectionReset() async throws {
        let server = try TestHTTPServer { connection in
            _ = connection.readRequest()
        }
        defer { server.close() }
        let (error, _) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in try await client.execute(request(server)) }
        }
        #expect(error?.kind == .connectionReset, "\(String(describing: error))")
    }

    @Test
    func bodyCutShortIsAnInvalidResponse() async throws {
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        }
        defer { server.close() }
        let (error, _) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in try await client.execute(request(server)) }
        }
        #expect(error?.kind == .invalidResponse, "\(String(describing: error))")
    }

    @Test
    func refusedPortIsConnectionRefused() async throws {
        let port = try Sockets.refusedPort()
        let (error, elapsed) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in
                try await client.execute(UpstreamHTTPRequest(url: "http://127.0.0.1:\(port)/v1/chat/completions"))
            }
        }
        #expect(error?.kind == .connectionRefused, "\(String(describing: error))")
        #expect(error?.message.contains("curl error 7") == true)
        #expect(elapsed < .seconds(3))
    }

    @Test
    func unknownHostIsADNSFailure() async throws {
        let (error, _) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in
                try await client.execute(
                    UpstreamHTTPRequest(url: "http://nonexistent-host.invalid/", timeouts: UpstreamTimeouts(connect: .seconds(5))))
            }
        }
        #expect(error?.kind == .dnsFailure, "\(String(describing: error))")
    }

    @Test
    func oversizedResponseIsAnInvalidResponse() async throws {
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil {
                connection.respond(body: String(repeating: "z", count: 10_000))
            }
        }
        defer { server.close() }
        let (error, _) = try await withTestClient(CurlClient.Configuration(maxResponseBytes: 1000, usesProxyEnvironment: false)) { client in
            await failure { () async throws(UpstreamError) in try await client.execute(request(server)) }
        }
        #expect(error?.kind == .invalidResponse)
    }
}
