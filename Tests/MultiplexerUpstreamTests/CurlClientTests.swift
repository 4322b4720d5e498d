import MultiplexerCore
import Glibc
import Synchronization
import Testing

@testable import MultiplexerUpstream

@Suite("CurlClient against a local HTTP server")
struct CurlClientTests {
    @Test
    func bufferedCallReturnsStatusHeadersAndBody() async throws {
        let seen = Box<[ReceivedRequest]>([])
        let server = try TestHTTPServer { connection in
            while let request = connection.readRequest() {
                seen.update { $0.append(request) }
                connection.respond(status: 201, headers: ["Content-Type": "application/json", "X-Reply": "yes"], body: #"{"echo":true}"#)
            }
        }
        defer { server.close() }
        let response = try await withTestClient { client in
            try await client.execute(
                request(server, "/v1/things", body: #"{"model":"m"}"#, headers: ["X-Test": "1", "Content-Type": "application/json"]))
        }
        #expect(response.status == 201)
        #expect(response.headers["x-reply"] == "yes")
        #expect(response.headers["Content-Length"] == "13")
        #expect(String(decoding: response.body, as: UTF8.self) == #"{"echo":true}"#)
        let received = try #require(seen.get.first)
        #expect(received.method == "POST")
        #expect(received.path == "/v1/things")
        #expect(String(decoding: received.body, as: UTF8.self) == #"{"model":"m"}"#)
        #expect(received.header("x-test") == "1")
        #expect(received.header("expect") == nil)
    }

    @Test
    func largeBodyIsSentWithoutWaitingForContinue() async throws {
        let seen = Box<(count: Int, expect: String?)>((0, nil))
        let server = try TestHTTPServer { connection in
            while let request = connection.readRequest() {
                seen.set((request.body.count, request.header("expect")))
                connection.respond(body: "{}")
            }
        }
        defer { server.close() }
        let body = String(repeating: "x", count: 2 * 1024 * 1024)
        let response = try await withTestClient { client in try await client.execute(request(server, body: body)) }
        #expect(response.status == 200)
        #expect(seen.get.count == body.utf8.count)
        // No `Expect: 100-continue`, so libcurl never waits (1 s) for a 100 response before sending.
        #expect(seen.get.expect == nil)
    }

    @Test
    func httpErrorStatusIsAResponseNotAnError() async throws {
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil {
                connection.respond(status: 503, body: #"{"error":{"message":"busy"}}"#)
            }
        }
        defer { server.close() }
        let response = try await withTestClient { client in try await client.execute(request(server)) }
        #expect(response.status == 503)
    }

    @Test
    func sequentialRequestsReuseConnections() async throws {
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil {
                connection.respond(body: #"{"ok":true}"#)
            }
        }
        defer { server.close() }
        let statuses = try await withTestClient { client in
            var statuses: [Int: Int] = [:]
            for _ in 0..<1000 {
                statuses[try await client.execute(request(server)).status, default: 0] += 1
            }
            return statuses
        }
        #expect(statuses == [200: 1000])
        #expect(server.acceptedConnections <= 3, "accepted \(server.acceptedConnections) connections for 1,000 requests")
    }

    @Test
    func concurrentRequestsAllComplete() async throws {
        let server = try TestHTTPServer { connection in
            while let received = connection.readRequest() {
                connection.respond(body: String(decoding: received.body, as: UTF8.self))
            }
        }
        defer { server.close() }
        let bodies = try await withTestClient { client in
            try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for i in 0..<200 {
                    group.addTask {
                        let response = try await client.execute(request(server, body: "{\"n\":\(i)}"))
                        return (i, String(decoding: response.body, as: UTF8.self))
                    }
                }
                var bodies: [Int: String] = [:]
                for try await (i, body) in group { bodies[i] = body }
                return bodies
            }
        }
        #expect(bodies.count == 200)
        #expect(bodies.allSatisfy { $0.value == "{\"n\":\($0.key)}" })
        #expect(server.acceptedConnections <= 200)
    }

    @Test
    func streamChunksArriveInOrderAndIncrementally() async throws {
        let firstSeen = Signal()
        let serverSawSignalBeforeLast = Box<Bool?>(nil)
        let count = 20
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.startEventStream()
            connection.writeChunk("data: {\"n\":0}\n\n")
            // The client must see the first event while the server still holds the rest back.
            serverSawSignalBeforeLast.set(firstSeen.wait(timeout: .seconds(5)))
            for n in 1..<count {
                connection.writeChunk("data: {\"n\":\(n)}\n\n")
                usleep(2_000)
            }
            connection.writeChunk("data: [DONE]\n\n")
            connection.endChunks()
        }
        defer { server.close() }
        let (events, end) = try await withTestClient { client in
            let response = try await client.stream(request(server))
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "text/event-stream")
            var iterator = SSEEventStream(bytes: response.body).makeAsyncIterator()
            var events: [SSEEvent] = []
            while let event = try await iterator.next() {
                if events.isEmpty { firstSeen.fire() }
                events.append(event)
            }
            return (events, iterator.end)
        }
        #expect(serverSawSignalBeforeLast.get == true)
        #expect(events.map { $0.data } == (0..<count).map { "{\"n\":\($0)}" } + ["[DONE]"])
        #expect(end == .done)
    }

    @Test
    func slowConsumerPausesTheTransferInsteadOfBuffering() async throws {
        let total = 64 * 1024 * 1024
        let written = Atomic<Int>(0)
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.setSendBuffer(64 * 1024)
            connection.write("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \(total)\r\n\r\n")
            let block = [UInt8](repeating: 0x61, count: 64 * 1024)
            var sent = 0
            while sent < total, connection.write(block) {
                sent += block.count
                written.store(sent, ordering: .relaxed)
            }
        }
        defer { server.close() }
        let bound = 64 * 1024
        let configuration = CurlClient.Configuration(streamBufferBytes: bound, usesProxyEnvironment: false)
        let (received, peak, writtenWhilePaused) = try await withTestClient(configuration) { client in
            let response = try await client.stream(request(server))
            var iterator = response.body.makeAsyncIterator()
            var received = try await iterator.next()?.count ?? 0
            // Stop reading: the transfer must pause once `bound` bytes wait, and the server must stall.
            try await Task.sleep(for: .milliseconds(400))
            let writtenWhilePaused = written.load(ordering: .relaxed)
            #expect(response.body.bufferedByteCount <= bound + 16 * 1024)
            while let chunk = try await iterator.next() { received += chunk.count }
            return (received, response.body.peakBufferedByteCount, writtenWhilePaused)
        }
        #expect(writtenWhilePaused < total, "the server could write everything: nothing pushed back")
        #expect(peak <= bound + 16 * 1024, "peak buffered \(peak) bytes")
        #expect(received == total)
    }

    @Test
    func cancellingTheTaskMidStreamClosesTheUpstreamConnection() async throws {
        let serverSawClose = Box<Bool?>(nil)
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.startEventStream()
            connection.writeChunk("data: first\n\n")
            serverSawClose.set(connection.waitForPeerClose(timeout: .seconds(3)))
        }
        defer { server.close() }
        let gotFirst = Box(false)
        let outcome = try await withTestClient { client in
            await withTaskGroup(of: UpstreamError?.self) { group in
                group.addTask {
                    do throws(UpstreamError) {
                        let response = try await client.stream(request(server))
                        var iterator = response.body.makeAsyncIterator()
                        _ = try await iterator.next()
                        gotFirst.set(true)
                        while try await iterator.next() != nil {}
                        return nil
                    } catch {
                        return error
                    }
                }
                #expect(await eventually { gotFirst.get })
                group.cancelAll()
                return await group.next()!
            }
        }
        #expect(outcome?.kind == .cancelled)
        #expect(await eventually(timeout: .seconds(2)) { serverSawClose.get != nil })
        #expect(serverSawClose.get == true)
    }

    @Test
    func droppingTheStreamClosesTheUpstreamConnection() async throws {
        let serverSawClose = Box<Bool?>(nil)
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            connection.startEventStream()
            connection.writeChunk("data: first\n\n")
            serverSawClose.set(connection.waitForPeerClose(timeout: .seconds(3)))
        }
        defer { server.close() }
        try await withTestClient { client in
            do {
                let response = try await client.stream(request(server))
                var iterator = response.body.makeAsyncIterator()
                _ = try await iterator.next()
            }
            #expect(await eventually(timeout: .seconds(2)) { serverSawClose.get != nil })
        }
        #expect(serverSawClose.get == true)
    }

    @Test
    func cancellingABufferedCallAbortsAtOnce() async throws {
        let received = Box(false)
        let serverSawClose = Box<Bool?>(nil)
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            received.set(true)
            serverSawClose.set(connection.waitForPeerClose(timeout: .seconds(3)))
        }
        defer { server.close() }
        let (error, elapsed) = try await withTestClient { client in
            await withTaskGroup(of: UpstreamError?.self) { group in
                group.addTask { await failure { () async throws(UpstreamError) in try await client.execute(request(server)) }.error }
                #expect(await eventually { received.get })
                let cancelled = ContinuousClock.now
                group.cancelAll()
                let error = await group.next()!
                return (error, cancelled.duration(to: .now))
            }
        }
        #expect(error?.kind == .cancelled)
        #expect(elapsed < .seconds(2), "cancellation must not wait for the 120 s call timeout")
        #expect(await eventually(timeout: .seconds(2)) { serverSawClose.get != nil })
        #expect(serverSawClose.get == true)
    }

    @Test
    func shutdownFailsPendingAndLaterCalls() async throws {
        let server = try TestHTTPServer { connection in
            guard connection.readRequest() != nil else { return }
            _ = connection.waitForPeerClose(timeout: .seconds(3))
        }
        defer { server.close() }
        let client = try CurlClient(configuration: CurlClient.Configuration(usesProxyEnvironment: false))
        let (pending, later) = await withTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            async let pending = failure { () async throws(UpstreamError) in try await client.execute(request(server)) }
            try? await Task.sleep(for: .milliseconds(150))
            client.shutdown()
            let pendingResult = await pending
            let later = await failure { () async throws(UpstreamError) in try await client.execute(request(server)) }
            await group.waitForAll()
            return (pendingResult, later)
        }
        #expect(pending.error?.kind == .cancelled)
        #expect(later.error?.kind == .cancelled)
    }

    @Test
    func callsBeforeRunWaitForIt() async throws {
        let server = try TestHTTPServer { connection in
            while connection.readRequest() != nil { connection.respond(body: "{}") }
        }
        defer { server.close() }
        let client = try CurlClient(configuration: CurlClient.Configuration(usesProxyEnvironment: false))
        let status = await withTaskGroup(of: Void.self) { group in
            async let response = failure { () async throws(UpstreamError) in try await client.execute(request(server)).status }
            try? await Task.sleep(for: .milliseconds(50))
            group.addTask { await client.run() }
            let result = await response
            client.shutdown()
            return result.error
        }
        #expect(status == nil)
    }

    @Test
    func cancellingACallQueuedBeforeRunReturnsAtOnce() async throws {
        let client = try CurlClient(configuration: CurlClient.Configuration(usesProxyEnvironment: false))
        let (error, elapsed) = await withTaskGroup(of: (UpstreamError?, Duration).self) { group in
            group.addTask {
                await failure { () async throws(UpstreamError) in try await client.execute(UpstreamHTTPRequest(url: "http://127.0.0.1:9/")) }
            }
            try? await Task.sleep(for: .milliseconds(50))
            group.cancelAll()
            return await group.next()!
        }
        client.shutdown()
        #expect(error?.kind == .cancelled)
        #expect(elapsed < .seconds(2))
    }

    @Test
    func invalidHeaderIsRejected() async throws {
        let (error, _) = try await withTestClient { client in
            await failure { () async throws(UpstreamError) in
                try await client.execute(UpstreamHTTPRequest(url: "http://127.0.0.1:1/", headers: ["X-Bad": "a\r\nInjected: 1"]))
            }
        }
        #expect(error?.kind == .other)
    }
}
