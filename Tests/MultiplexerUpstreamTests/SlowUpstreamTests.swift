import Glibc
import MultiplexerCore
import Synchronization
import Testing

@testable import MultiplexerUpstream

/// Providers as they really are: seconds before the first header, events that trickle, keep-alive
/// comments. Concurrent calls must never wait for one another, and the stream timers count events.
@Suite("Slow upstreams")
struct SlowUpstreamTests {
    /// Counts requests in flight at the server; each waits until `target` are in at once (or a few
    /// seconds passed), so a client that serialises its calls shows up as a lower peak, not as a slow test.
    final class Barrier: Sendable {
        private let state = Mutex<(now: Int, peak: Int)>((0, 0))
        let target: Int
        init(target: Int) { self.target = target }
        var peak: Int { self.state.withLock { $0.peak } }

        func arriveAndWait() {
            self.state.withLock {
                $0.now += 1
                $0.peak = max($0.peak, $0.now)
            }
            let deadline = ContinuousClock.now + .seconds(5)
            while self.state.withLock({ $0.peak }) < self.target, ContinuousClock.now < deadline {
                usleep(2000)
            }
        }

        func leave() { self.state.withLock { $0.now -= 1 } }
    }

    @Test
    func concurrentCallsToASlowServerAreAllInFlightAtOnce() async throws {
        let n = 50
        let barrier = Barrier(target: n)
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil {
                barrier.arriveAndWait()
                usleep(200_000)  // the "model" thinks before its headers
                barrier.leave()
                connection.respond(body: #"{"ok":true}"#)
            }
        }
        defer { server.close() }
        try await withTestClient { client in
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<n { group.addTask { try await client.execute(request(server)).status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: n))
            #expect(barrier.peak == n)
            #expect(server.acceptedConnections == n)
            // A second wave reuses the kept-alive connections.
            let again = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<n { group.addTask { try await client.execute(request(server)).status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(again == Array(repeating: 200, count: n))
            #expect(server.acceptedConnections == n)
            let stats = client.statistics
            #expect(stats.transfers == 2 * n)
            #expect(stats.connectionsOpened == n)
            // Nothing waited for a connection (a loaded machine may delay a transfer's first steps enough to
            // count one or two).
            #expect(stats.connectionWaits <= 2)
        }
    }

    @Test
    func concurrentStreamsAreAllInFlightAtOnce() async throws {
        let n = 40
        let barrier = Barrier(target: n)
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil {
                barrier.arriveAndWait()
                _ = connection.startEventStream()
                for i in 0..<3 {
                    _ = connection.writeChunk("data: {\"i\":\(i)}\n\n")
                    usleep(20_000)
                }
                _ = connection.writeChunk("data: [DONE]\n\n")
                _ = connection.endChunks()
                barrier.leave()
            }
        }
        defer { server.close() }
        let timeouts = UpstreamTimeouts(connect: .seconds(2), response: .seconds(10), firstByte: .seconds(10), idle: .seconds(5))
        try await withTestClient { client in
            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<n {
                    group.addTask {
                        let response = try await client.stream(request(server, timeouts: timeouts))
                        var events = 0
                        for try await event in SSEEventStream(bytes: response.body) where !event.isDone { events += 1 }
                        return events
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(counts == Array(repeating: 3, count: n))
            #expect(barrier.peak == n)
        }
    }

    @Test
    func waitingForAConnectionIsCounted() async throws {
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil {
                usleep(100_000)
                connection.respond(body: "{}")
            }
        }
        defer { server.close() }
        // A pool limited to one connection per host: the other calls queue, and the statistics say so.
        try await withTestClient(CurlClient.Configuration(maxConnectionsPerHost: 1, usesProxyEnvironment: false)) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<3 { group.addTask { _ = try await client.execute(request(server)) } }
                try await group.waitForAll()
            }
            let stats = client.statistics
            #expect(stats.connectionsOpened == 1)
            #expect(stats.connectionWaits >= 2)
            #expect(stats.connectionWaitTime >= .milliseconds(250))
        }
    }

    // MARK: - Timers count events

    private static let timeouts = UpstreamTimeouts(connect: .seconds(2), response: .seconds(5), firstByte: .seconds(1), idle: .seconds(1))

    /// A stream server that writes `body` pieces with `pause` between them, then holds the connection.
    private static func streamServer(_ pieces: [String], pause: Duration, thenHold: Bool = true) throws -> TestHTTPServer {
        try TestHTTPServer { connection in
            guard connection.readRequest() != nil, connection.startEventStream() else { return }
            for piece in pieces {
                guard connection.writeChunk(piece) else { return }
                usleep(UInt32(pause.components.attoseconds / 1_000_000_000_000) + UInt32(pause.components.seconds * 1_000_000))
            }
            if thenHold {
                _ = connection.waitForPeerClose(timeout: .seconds(10))
            } else {
                _ = connection.endChunks()
            }
        }
    }

    /// Streams `server` and returns the error the body ends with, the events before it and the time taken.
    private static func read(_ server: TestHTTPServer, maxEventBytes: Int = 1 << 20) async throws -> (UpstreamError?, Int, Duration) {
        try await withTestClient { client in
            var http = request(server, timeouts: Self.timeouts)
            http.maxEventBytes = maxEventBytes
            let start = ContinuousClock.now
            let response = try await client.stream(http)
            var events = 0
            var iterator = SSEEventStream(bytes: response.body).makeAsyncIterator()
            do throws(UpstreamError) {
                while try await iterator.next() != nil { events += 1 }
                return (nil, events, start.duration(to: .now))
            } catch {
                return (error, events, start.duration(to: .now))
            }
        }
    }

    @Test
    func commentsOnlyIsSilent() async throws {
        let server = try Self.streamServer(Array(repeating: ": keep-alive\n\n", count: 40), pause: .milliseconds(50))
        defer { server.close() }
        let (error, events, elapsed) = try await Self.read(server)
        #expect(error?.kind == .firstTokenTimeout)
        #expect(events == 0)
        #expect(elapsed < .milliseconds(1900))
    }

    @Test
    func blankKeepAliveLinesAreSilent() async throws {
        let server = try Self.streamServer(Array(repeating: "\n", count: 40), pause: .milliseconds(50))
        defer { server.close() }
        let (error, _, _) = try await Self.read(server)
        #expect(error?.kind == .firstTokenTimeout)
    }

    @Test
    func anEventTrickledAByteAtATimeIsSilent() async throws {
        let event = "data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n"
        let server = try Self.streamServer(event.map { String($0) }, pause: .milliseconds(50))
        defer { server.close() }
        let (error, events, _) = try await Self.read(server)
        #expect(error?.kind == .firstTokenTimeout)
        #expect(events == 0)
    }

    @Test
    func commentsAfterTheFirstEventDoNotKeepTheStreamAlive() async throws {
        let server = try Self.streamServer(["data: {\"a\":1}\n\n"] + Array(repeating: ": ping\n\n", count: 40), pause: .milliseconds(50))
        defer { server.close() }
        let (error, events, _) = try await Self.read(server)
        #expect(error?.kind == .streamIdleTimeout)
        #expect(events == 1)
    }

    @Test
    func eventsSpacedBelowTheIdleTimeoutAreFine() async throws {
        let pieces = (0..<8).map { "data: {\"i\":\($0)}\n\n: ping\n\n" } + ["data: [DONE]\n\n"]
        let server = try Self.streamServer(pieces, pause: .milliseconds(200), thenHold: false)
        defer { server.close() }
        let (error, events, _) = try await Self.read(server)
        #expect(error == nil)
        #expect(events == 9)
    }

    @Test
    func anEndlessLineBreaksTheStreamWithoutReadingOn() async throws {
        let sent = Atomic<Int>(0)
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil, connection.startEventStream() else { return }
            guard connection.writeChunk("data: ") else { return }
            let block = String(repeating: "a", count: 16 * 1024)
            // Up to 64 MiB; the client must stop reading long before.
            for _ in 0..<4096 {
                guard connection.writeChunk(block) else { return }
                sent.add(block.utf8.count, ordering: .relaxed)
            }
        }
        defer { server.close() }
        let (error, events, elapsed) = try await Self.read(server, maxEventBytes: 256 * 1024)
        #expect(error?.kind == .eventTooLarge)
        #expect(events == 0)
        #expect(elapsed < .seconds(3))
        // What the server managed to write before the client closed: the limit plus socket buffers.
        #expect(sent.load(ordering: .relaxed) < 16 * 1024 * 1024)
    }
}
