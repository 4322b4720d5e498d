import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import MultiplexerUpstream
import Testing

/// Traces and metrics of a real `multiplexer serve` (ARCHITECTURE §10), read as an operator's tools read them:
/// spans exported over OTLP/HTTP to a collector (``OTLPReceiver`` decodes the protobuf), `/metrics` checked by
/// Prometheus's own `promtool`, JSON log lines parsed as JSON.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct TracingFleetTests {
    static let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let clientSpanID = "00f067aa0ba902b7"

    /// One node over Redis, tracing to `receiver`, spans exported every 100 ms.
    func plan(_ providers: [FleetPlan.Provider], receiver: OTLPReceiver, sampleRatio: Double = 1, extra: String = "") -> FleetPlan {
        var plan = FleetPlan(providers: providers)
        plan.redis = true
        plan.nginx = false
        plan.namespace = "trace\(UInt16.random(in: 0...UInt16.max))"
        plan.extraYAML = "tracing:\n  otlp_endpoint: \(receiver.endpoint)\n  service_name: mux-test\n  sample_ratio: \(sampleRatio)\n" + extra
        plan.nodeEnvironment = ["OTEL_BSP_SCHEDULE_DELAY": "100"]
        return plan
    }

    func chat(_ fleet: LocalFleet, stream: Bool = false, traceparent: String? = nil, key: String? = nil, index: Int = 0) async -> (status: Int, body: String)? {
        var headers: UpstreamHeaders = [:]
        if let traceparent { headers.add(name: "traceparent", value: traceparent) }
        if let key { headers.add(name: "Authorization", value: "Bearer \(key)") }
        let body =
            stream
            ? #"{"model":"demo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell a secret story \#(index)."}],"max_tokens":8}"#
            : #"{"model":"demo","messages":[{"role":"user","content":"Tell a secret story \#(index)."}],"max_tokens":8}"#
        guard let r = await fleet.http.post(fleet.nodes[0].url + "/v1/chat/completions", json: body, headers: headers) else { return nil }
        return (r.status, r.body)
    }

    /// The spans of `trace`, once `count` of them arrived.
    func spans(_ receiver: OTLPReceiver, trace: String, atLeast count: Int, _ fleet: LocalFleet) async -> [ReceivedSpan] {
        _ = await fleet.eventually(within: .seconds(10)) { receiver.spans.filter { $0.traceID == trace }.count >= count }
        return receiver.spans.filter { $0.traceID == trace }
    }

    @Test func aRequestsSpansReachTheCollectorContinuingTheClientsTrace() async throws {
        try await OTLPReceiver.run { receiver in
            try await LocalFleet.run(self.plan([.init(name: "p", limits: .init(rpm: 1000))], receiver: receiver)) { fleet in
                let r = await self.chat(fleet, traceparent: "00-\(Self.traceID)-\(Self.clientSpanID)-01")
                #expect(r?.status == 200)
                let spans = await self.spans(receiver, trace: Self.traceID, atLeast: 3, fleet)
                let server = try #require(spans.first { $0.kind == 2 }, "\(spans)")
                #expect(server.name == "POST /v1/chat/completions")
                #expect(server.parentSpanID == Self.clientSpanID, "the client's span is the parent")
                #expect(server["gen_ai.request.model"]?.string == "demo")
                #expect(server["gen_ai.provider.name"]?.string == "p")
                #expect(server["http.response.status_code"]?.int == 200)
                #expect(server["gen_ai.usage.input_tokens"]?.int ?? 0 > 0)
                #expect(server.resource["service.name"]?.string == "mux-test")
                let admission = try #require(spans.first { $0.name == "multiplexer.admission" })
                #expect(admission.parentSpanID == server.spanID)
                #expect(admission["multiplexer.admission.decision"]?.string == "admitted")
                let attempt = try #require(spans.first { $0.kind == 3 }, "\(spans)")
                #expect(attempt.name == "chat mock-p")
                #expect(attempt.parentSpanID == server.spanID)
                #expect(attempt["gen_ai.operation.name"]?.string == "chat")
                #expect(attempt["gen_ai.request.model"]?.string == "mock-p")
                #expect(attempt["gen_ai.response.model"]?.string == "mock-p")
                #expect(attempt["gen_ai.provider.name"]?.string == "p")
                #expect(attempt["multiplexer.outcome"]?.string == "success")
                #expect(attempt["gen_ai.usage.output_tokens"]?.int ?? 0 > 0)
                #expect(attempt.statusCode != 2)
                // The provider saw the attempt span's context, in the same trace.
                let sent = fleet.mocks["p"]!.state.recentRequests().last?.headers.first { $0.name == "traceparent" }?.value
                #expect(sent == "00-\(Self.traceID)-\(attempt.spanID)-01", "\(sent ?? "none")")
                // No secret, no message content in any span.
                for s in spans {
                    for (k, v) in s.attributes {
                        let text = v.string ?? ""
                        #expect(!text.contains("sk-mock") && !text.contains("secret story"), "\(s.name): \(k)=\(text)")
                    }
                }

                // A request without a traceparent starts a trace of its own, with the server span as its root.
                receiver.clear()
                #expect(await self.chat(fleet, stream: true)?.status == 200)
                _ = await fleet.eventually(within: .seconds(10)) { receiver.spans.contains { $0.kind == 3 } && receiver.spans.contains { $0.kind == 2 } }
                let root = try #require(receiver.spans.first { $0.kind == 2 })
                #expect(root.parentSpanID == nil)
                #expect(root.traceID != Self.traceID)
                let streamed = try #require(receiver.spans.first { $0.kind == 3 && $0.traceID == root.traceID })
                #expect(streamed["gen_ai.server.time_to_first_token"]?.double ?? 0 > 0, "\(streamed)")
                #expect(streamed["gen_ai.usage.output_tokens"]?.int ?? 0 > 0)
                #expect(root["gen_ai.server.time_to_first_token"]?.double ?? 0 > 0, "\(root)")
                #expect(receiver.malformedCount == 0)
            }
        }
    }

    @Test func aBrokenStreamIsAFailureInSpansAndMetricsAndItsContinuationJoinsTheTrace() async throws {
        try await OTLPReceiver.run { receiver in
            var cut = FleetPlan.Provider(name: "cut", weight: 1_000_000)
            cut.mock = {
                $0.mode = .streamCut
                $0.breakAfter = 2
                $0.streamChunks = 6
            }
            let plan = self.plan([cut, .init(name: "whole")], receiver: receiver)
            try await LocalFleet.run(plan) { fleet in
                let r = await self.chat(fleet, stream: true, traceparent: "00-\(Self.traceID)-\(Self.clientSpanID)-01")
                #expect(r?.status == 200)
                #expect(r?.body.contains("[DONE]") == true, "continued to its end: \(r?.body ?? "")")
                let spans = await self.spans(receiver, trace: Self.traceID, atLeast: 5, fleet)
                let server = try #require(spans.first { $0.kind == 2 })
                #expect(server["multiplexer.continued"]?.bool == true)
                let attempts = spans.filter { $0.kind == 3 }
                let broken = try #require(attempts.first { $0["gen_ai.provider.name"]?.string == "cut" }, "\(attempts)")
                #expect(broken["multiplexer.outcome"]?.string == "broken_stream")
                #expect(broken.statusCode == 2, "a broken stream's span has status error")
                let finished = try #require(attempts.first { $0["gen_ai.provider.name"]?.string == "whole" })
                #expect(finished["multiplexer.outcome"]?.string == "success")
                #expect(finished["multiplexer.continued"]?.bool == true)
                #expect(finished.parentSpanID == server.spanID, "the continuation is a child of the request's span")
                #expect(broken.parentSpanID == server.spanID)

                let metrics = await fleet.http.get(fleet.nodes[0].url + "/metrics")?.body ?? ""
                #expect(metrics.contains(#"multiplexer_upstream_attempts_total{provider="cut",outcome="broken_stream"} 1"#), "\(metrics)")
                #expect(!metrics.contains(#"multiplexer_upstream_attempts_total{provider="cut",outcome="success"}"#), "a broken stream is not a success")
                #expect(metrics.contains(#"multiplexer_upstream_attempts_total{provider="whole",outcome="success"} 1"#))
            }
        }
    }

    @Test func sampleRatioZeroStillPropagatesAndExportFailuresAreCountedNotWaitedFor() async throws {
        try await OTLPReceiver.run { receiver in
            try await LocalFleet.run(self.plan([.init(name: "p")], receiver: receiver, sampleRatio: 0)) { fleet in
                #expect(await self.chat(fleet)?.status == 200)
                // Not sampled: no span is exported, but the provider still gets a traceparent (flags 00).
                let sent = fleet.mocks["p"]!.state.recentRequests().last?.headers.first { $0.name == "traceparent" }?.value ?? ""
                #expect(sent.hasPrefix("00-") && sent.hasSuffix("-00"), "\(sent)")
                // A client's sampled trace is obeyed.
                #expect(await self.chat(fleet, traceparent: "00-\(Self.traceID)-\(Self.clientSpanID)-01")?.status == 200)
                let spans = await self.spans(receiver, trace: Self.traceID, atLeast: 3, fleet)
                #expect(spans.count >= 3)
                try await Task.sleep(for: .milliseconds(500))
                #expect(receiver.spans.allSatisfy { $0.traceID == Self.traceID }, "only the client's sampled trace was exported")

                // The collector fails: requests are served as fast as before, the lost spans are counted.
                receiver.setFailing(true)
                let started = ContinuousClock.now
                for i in 0..<20 {
                    #expect(await self.chat(fleet, traceparent: "00-\(Self.traceID)-\(Self.clientSpanID)-01", index: i)?.status == 200)
                }
                let took = started.duration(to: .now)
                #expect(took < .seconds(10), "requests never wait for the export: \(took)")
                let counted = await fleet.eventually(within: .seconds(10)) {
                    let m = await fleet.http.get(fleet.nodes[0].url + "/metrics")?.body ?? ""
                    let line = m.split(separator: "\n").first { $0.hasPrefix("multiplexer_trace_spans_dropped_total ") }
                    return (line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0) > 0
                }
                #expect(counted, "spans dropped by a failed export are counted")
            }
        }
    }

    @Test func metricsPassPromtoolAndHoldTheSeriesAnSRELooksFor() async throws {
        guard let promtool = ManagedProcess.which("promtool") else {
            Issue.record("promtool (Debian's prometheus package) is not installed: scripts/install-deps.sh installs it")
            return
        }
        try await OTLPReceiver.run { receiver in
            var flaky = FleetPlan.Provider(name: "flaky", limits: .init(rpm: 1000, tpm: 100_000, maxConcurrent: 10), weight: 1_000_000)
            flaky.settings = ["failure_threshold: 2", "failure_cooldown_seconds: 30"]
            flaky.mock = { $0.mode = .error500 }
            let steady = FleetPlan.Provider(name: "steady", limits: .init(rpm: 1000, tpm: 100_000, maxConcurrent: 10))
            let keys = "keys:\n  - { name: team-a, key: team-a-secret-key }\n"
            try await LocalFleet.run(self.plan([flaky, steady], receiver: receiver, extra: keys)) { fleet in
                for i in 0..<4 { #expect(await self.chat(fleet, stream: i % 2 == 0, key: "team-a-secret-key", index: i)?.status == 200) }
                let text = try #require(await fleet.http.get(fleet.nodes[0].url + "/metrics")?.body)
                for series in [
                    #"multiplexer_ttft_seconds_bucket{provider="steady""#, #"multiplexer_upstream_latency_seconds_bucket{provider="steady""#,
                    #"multiplexer_tokens_total{provider="steady",direction="input"}"#, #"multiplexer_tokens_total{provider="steady",direction="output"}"#,
                    #"multiplexer_tokens_total{key="team-a",direction="output"}"#, #"multiplexer_window_use_ratio{provider="steady",window="rpm"}"#,
                    #"multiplexer_window_use_ratio{provider="steady",window="max_concurrent"}"#,
                    #"multiplexer_cooldowns_total{provider="flaky",reason="failures"} 1"#, "multiplexer_trace_spans_dropped_total 0",
                    #"multiplexer_build_info{version=""#, #"multiplexer_upstream_attempts_total{provider="flaky",outcome="server_error"} 2"#,
                ] {
                    #expect(text.contains(series), "\(series) in /metrics")
                }
                #expect(!text.contains("team-a-secret-key"), "no secret in /metrics")
                let ratio = text.split(separator: "\n").first { $0.hasPrefix(#"multiplexer_window_use_ratio{provider="steady",window="rpm"}"#) }
                #expect(ratio.flatMap { Double($0.split(separator: " ").last ?? "") } == 0.004, "4 of 1000 requests in the minute: \(ratio ?? "")")
                let input = fleet.directory + "/metrics.txt"
                try text.write(toFile: input, atomically: true, encoding: .utf8)
                let (status, output) = try Self.run(promtool, ["check", "metrics"], stdin: input)
                #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool check metrics: \(output)")
            }
        }
    }

    @Test func jsonLogLinesAreJSONWithTheRequestFields() async throws {
        try await OTLPReceiver.run { receiver in
            var plan = self.plan([.init(name: "p")], receiver: receiver)
            plan.serverSettings = ["log_format: json"]
            try await LocalFleet.run(plan) { fleet in
                #expect(await self.chat(fleet)?.status == 200)
                #expect(await self.chat(fleet, stream: true)?.status == 200)
                var requests: [[String: Any]] = []
                let logged = await fleet.eventually(within: .seconds(5)) {
                    let log = (try? String(contentsOfFile: fleet.directory + "/gw-1.log", encoding: .utf8)) ?? ""
                    requests = log.split(separator: "\n").compactMap { line in
                        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
                    }.filter { $0["message"] as? String == "request" }
                    return requests.count >= 2
                }
                #expect(logged, "two request lines")
                let log = (try? String(contentsOfFile: fleet.directory + "/gw-1.log", encoding: .utf8)) ?? ""
                for line in log.split(separator: "\n") where !line.isEmpty {
                    #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "every line is a JSON object: \(line)")
                }
                let plain = try #require(requests.first)
                #expect(plain["gateway.provider"] as? String == "p")
                #expect(plain["http.response.status_code"] as? Int == 200)
                #expect((plain["gen_ai.usage.input_tokens"] as? Int ?? 0) > 0)
                #expect(plain["level"] as? String == "info")
                #expect(plain["timestamp"] is String)
                let streamed = try #require(requests.last)
                #expect(streamed["ttft_ms"] is Int, "a stream's line carries its time to first token: \(streamed)")
                #expect((streamed["gen_ai.usage.output_tokens"] as? Int ?? 0) > 0)
            }
        }
    }

    /// Runs `executable` with `stdin` read from a file; its status and standard output and error.
    static func run(_ executable: String, _ arguments: [String], stdin: String) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: stdin))
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
