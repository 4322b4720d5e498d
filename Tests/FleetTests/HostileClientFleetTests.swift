import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerMockProvider
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A client on a raw TCP socket, for what well-behaved HTTP clients never do: a tiny receive buffer it never
/// reads, and a reset (SO_LINGER 0) at any moment.
final class RawClient {
    let fd: Int32

    /// Connects to 127.0.0.1:`port`; `receiveBuffer` sets SO_RCVBUF before connecting (the kernel doubles it).
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard self.fd >= 0 else { throw POSIXError(.EMFILE) }
        if var size = receiveBuffer {
            setsockopt(self.fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(self.fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    /// Sends a whole HTTP/1.1 POST of `json` to `path`.
    func post(_ path: String, json: String) {
        let text = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)"
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Closes with a reset (SO_LINGER on, 0 s): the peer sees ECONNRESET, not a FIN.
    func reset() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(self.fd)
    }

    func closeQuietly() { close(self.fd) }
}

/// Clients that misbehave, against one real node (the built binary) over Redis, with a provider whose
/// `max_concurrent` is 1 and whose mock enforces it strictly: each test ends with the provider's slot back
/// (no lease left in Redis), the mock never over its limit, and the next client served.
@Suite(.serialized) struct HostileClientFleetTests {
    func onePlan(_ provider: FleetPlan.Provider, writeTimeout: Int = 30) -> FleetPlan {
        var plan = FleetPlan(providers: [provider])
        plan.nodes = 1
        plan.redis = true
        plan.nginx = false
        plan.namespace = "hostile\(UInt16.random(in: 0...UInt16.max))"
        plan.serverSettings = ["client_write_timeout_seconds: \(writeTimeout)"]
        return plan
    }

    func streamBody(_ fleet: LocalFleet) -> String {
        #"{"model":"\#(fleet.plan.model)","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"stream":true}"#
    }

    /// The provider's in-flight count in Redis (its lease set), polled until it is 0 or `timeout` passes.
    func slotsBack(_ fleet: LocalFleet, within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let stats = try? await fleet.fleetStats(), stats.providers.first?.window.inFlight == 0 { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// The node's `multiplexer_inflight_requests` gauge (client requests in progress).
    func nodeInFlight(_ fleet: LocalFleet) async -> Int {
        guard let text = await fleet.http.get(fleet.nodes[0].url + "/metrics")?.body else { return -1 }
        let line = text.split(separator: "\n").first { $0.hasPrefix("multiplexer_inflight_requests ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? -1
    }

    /// `multiplexer_upstream_attempts_total{outcome="cancelled"}` of the provider, on the node.
    func cancelledAttempts(_ fleet: LocalFleet) async -> Int {
        guard let text = await fleet.http.get(fleet.nodes[0].url + "/metrics")?.body else { return -1 }
        let line = text.split(separator: "\n").first { $0.hasPrefix("multiplexer_upstream_attempts_total{") && $0.contains(#"outcome="cancelled""#) }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
    }

    /// Waits until the provider's slot is taken (the client's request was admitted).
    func admitted(_ fleet: LocalFleet) async -> Bool {
        await fleet.eventually(within: .seconds(10)) { (try? await fleet.fleetStats())?.providers.first?.window.inFlight == 1 }
    }

    /// The audit every hostile test ends with (``FleetAudit``: strict limits, `max_concurrent`, no lease
    /// left), then a well-behaved client is served at once.
    func audit(_ fleet: LocalFleet, _ name: String) async {
        let audit = await fleet.audit(counters: false)
        #expect(audit.isClean, "\(name): \(audit)")
        // The mock, like many servers, notices a closed connection only when it next writes (here: when its
        // answer would have been ready); until then it still counts the request against its max_concurrent
        // of 1. The gateway released the slot at once (after its 1 s grace); the next client waits for the
        // provider.
        _ = await fleet.eventually(within: .seconds(10)) { fleet.mocks.values.allSatisfy { $0.state.counters.inFlight == 0 } }
        let next = await fleet.http.post(
            fleet.entryURL + "/v1/chat/completions", json: LoadGenerator.bodyText(model: fleet.plan.model, index: 1), timeout: .seconds(10))
        #expect(next?.status == 200, "\(name): the next client is served (\(next?.body.prefix(200) ?? "no answer"))")
    }

    /// A client resets while its request waits 6 s for the provider: the reset is seen within a second (the
    /// connection is watched, not only written to), the request ends (it ends only once its upstream
    /// transfer has been dropped), and the slot is back after the 1 s release grace — long before the
    /// provider would have answered, and not at the lease's expiry.
    func resetWhileWaiting(stream: Bool, _ name: String) async throws {
        let settings = stream ? ["ttft_timeout_seconds: 20"] : ["timeout_seconds: 20"]
        let slow = FleetPlan.Provider(name: "slow", limits: .init(maxConcurrent: 1), latency: .seconds(6), settings: settings)
        try await LocalFleet.run(onePlan(slow)) { fleet in
            let client = try RawClient(port: fleet.nodes[0].port)
            client.post("/v1/chat/completions", json: stream ? streamBody(fleet) : LoadGenerator.bodyText(model: fleet.plan.model, index: 0))
            #expect(await admitted(fleet))
            let reset = ContinuousClock.now
            client.reset()
            #expect(await slotsBack(fleet, within: .seconds(4)), "the reset client's slot came back")
            #expect(reset.duration(to: .now) < .seconds(4))
            #expect(await nodeInFlight(fleet) == 0, "the request ended")
            // A plain call's attempt ends as `cancelled` (a stream's attempt had succeeded: its headers came).
            if !stream { #expect(await cancelledAttempts(fleet) == 1, "the upstream call was cancelled") }
            await audit(fleet, name)
        }
    }

    @Test func aClientThatResetsBeforeTheFirstEventFreesItsSlot() async throws {
        try await self.resetWhileWaiting(stream: true, "reset before the first event")
    }

    @Test func aClientThatResetsWhileAPlainCallWaitsFreesItsSlot() async throws {
        try await self.resetWhileWaiting(stream: false, "reset while a plain call waits")
    }

    @Test func aClientThatResetsMidStreamFreesItsSlot() async throws {
        var slow = FleetPlan.Provider(name: "slow", limits: .init(maxConcurrent: 1), settings: ["stream_idle_timeout_seconds: 10"])
        slow.mock = { $0.streamChunks = 50; $0.tokenInterval = .milliseconds(100) }
        try await LocalFleet.run(onePlan(slow)) { fleet in
            let client = try RawClient(port: fleet.nodes[0].port)
            client.post("/v1/chat/completions", json: streamBody(fleet))
            #expect(await admitted(fleet))
            try await Task.sleep(for: .milliseconds(800))
            client.reset()
            #expect(await slotsBack(fleet, within: .seconds(3)), "the reset client's slot came back")
            await audit(fleet, "reset mid-stream")
        }
    }

    @Test func aClientThatNeverReadsIsDroppedAfterTheWriteTimeoutAndItsSlotFreed() async throws {
        // Events as fast as the gateway takes them: the client's 4 KiB receive buffer and the node's send
        // buffer fill within a fraction of a second; then the node's writes stop making progress.
        var fast = FleetPlan.Provider(name: "fast", limits: .init(maxConcurrent: 1), settings: ["stream_idle_timeout_seconds: 60", "timeout_seconds: 120"])
        fast.mock = { $0.streamChunks = 300_000; $0.tokenInterval = .zero }
        try await LocalFleet.run(onePlan(fast, writeTimeout: 2)) { fleet in
            let client = try RawClient(port: fleet.nodes[0].port, receiveBuffer: 4096)
            defer { client.closeQuietly() }
            client.post("/v1/chat/completions", json: streamBody(fleet))
            #expect(await admitted(fleet))
            // Dropped after 2 s without progress, once the node's send buffer (up to 4 MiB on Linux) is full:
            // ~7 s with a debug build on an idle machine.
            #expect(await slotsBack(fleet, within: .seconds(40)), "the stuck client's slot came back")
            let cancelled = await fleet.eventually(within: .seconds(15)) { fleet.mocks["fast"]!.state.counters.inFlight == 0 }
            #expect(cancelled, "the upstream transfer was cancelled")
            await audit(fleet, "never reads")
        }
    }

    @Test func sigtermEndsTheStreamsStillOpenWithAnErrorEventAndSettlesThemBeforeExit() async throws {
        var long = FleetPlan.Provider(name: "long", limits: .init(maxConcurrent: 2), settings: ["stream_idle_timeout_seconds: 10"])
        long.mock = { $0.streamChunks = 60; $0.tokenInterval = .milliseconds(200) }
        var plan = onePlan(long)
        plan.shutdownTimeoutSeconds = 3
        try await LocalFleet.run(plan) { fleet in
            async let first = fleet.http.post(fleet.entryURL + "/v1/chat/completions", json: streamBody(fleet), timeout: .seconds(20))
            async let second = fleet.http.post(fleet.entryURL + "/v1/chat/completions", json: streamBody(fleet), timeout: .seconds(20))
            let both = await fleet.eventually(within: .seconds(10)) { (try? await fleet.fleetStats())?.providers.first?.window.inFlight == 2 }
            #expect(both, "both streams admitted")
            try await Task.sleep(for: .milliseconds(500))
            fleet.signal(node: 0, SIGTERM)
            let answers = await [first, second]
            #expect(await fleet.waitForExit(node: 0, timeout: .seconds(10)), "the node exited after its shutdown timeout")
            for a in answers {
                // A response at all means the chunked body ended cleanly (a cut body is a transfer error).
                let body = a?.body ?? ""
                #expect(a?.status == 200 && body.contains("\"server_shutting_down\""), "error event: \(body.suffix(300))")
                #expect(!body.contains("[DONE]"), "an ended stream is never presented as complete")
            }
            // Settled by the node before it exited, not left to expire: their slots free after the 1 s release
            // grace of an attempt left mid-way (an unsettled lease would hold them for 30 s).
            let audit = await fleet.audit(counters: false, settleWithin: .seconds(2))
            #expect(audit.isClean, "\(audit)")
        }
    }
}
