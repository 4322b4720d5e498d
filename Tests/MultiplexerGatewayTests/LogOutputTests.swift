import Foundation
import Logging
import MultiplexerCore
import Testing

@testable import MultiplexerGateway

#if canImport(Glibc)
import Glibc
#endif

/// The request-path log output: a real pipe stands in for standard error.
@Suite("Log output")
struct LogOutputTests {
    /// A pipe; `read(for:until:)` collects what arrives on its read end.
    final class Pipe: @unchecked Sendable {
        let readEnd: Int32
        let writeEnd: Int32
        private var received: [UInt8] = []

        init() throws {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw POSIXError(.EMFILE) }
            self.readEnd = fds[0]
            self.writeEnd = fds[1]
            _ = fcntl(self.readEnd, F_SETFL, fcntl(self.readEnd, F_GETFL) | O_NONBLOCK)
        }

        deinit {
            close(self.readEnd)
            close(self.writeEnd)
        }

        /// Reads what is available until `done(text so far)` holds or `timeout` passes; returns the text.
        func read(timeout: Duration = .seconds(3), until done: (String) -> Bool) -> String {
            let deadline = ContinuousClock.now + timeout
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(self.readEnd, $0.baseAddress, $0.count) }
                if n > 0 { self.received += buffer[0..<n] }
                let text = String(decoding: self.received, as: UTF8.self)
                if done(text) || ContinuousClock.now >= deadline { return text }
                if n <= 0 { usleep(2000) }
            }
        }
    }

    @Test func linesKeepTheirOrderAndWarningsAreWrittenAtOnce() throws {
        let pipe = try Pipe()
        let output = LogOutput(fileDescriptor: pipe.writeEnd)
        var logger = Logger(label: "test") { GatewayLogHandler(label: $0, output: output) }
        logger.logLevel = .info
        logger.info("first", metadata: ["b": "2", "a": "1"])
        logger.info("second")
        logger.warning("third")  // writes the two queued lines and itself before returning
        let now = pipe.read(timeout: .zero) { _ in true }
        let lines = now.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines.map { $0.components(separatedBy: " : ").last ?? "" } == ["a=1 b=2 first", "second", "third"], "metadata sorted, order kept")
        let shape = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (info|warning) test : /#
        #expect(lines.allSatisfy { $0.firstMatch(of: shape) != nil }, "\(lines)")
        // An info line alone is written by the background thread, within its interval.
        logger.info("fourth")
        let later = pipe.read { $0.contains("fourth") }
        #expect(later.hasSuffix("info test : fourth\n"))
        logger.debug("not at this level")
        output.flush()
        #expect(!pipe.read(timeout: .milliseconds(100)) { _ in false }.contains("not at this level"))
    }

    /// A destination that stops draining never blocks the caller: lines beyond the buffer's bound are
    /// dropped, and their number is written once the destination drains again.
    @Test func jsonLinesAreOneObjectEachWithIntegersAsNumbersAndNoForgedFields() throws {
        let pipe = try Pipe()
        let output = LogOutput(fileDescriptor: pipe.writeEnd)
        var logger = Logger(label: "test") { GatewayLogHandler(label: $0, output: output, json: true) }
        logger.logLevel = .info
        var log = OpenAIController.RequestLog(requestID: "req-1", operation: "chat/completions", started: .now)
        log.model = "evil\",\"level\":\"critical\nsecond line\u{2028}"
        log.tokens = TokenUsage(promptTokens: 12, completionTokens: 7)
        log.timeToFirstToken = .milliseconds(250)
        logger.info("request", metadata: OpenAIController.requestMetadata(log, status: 200, latency: .milliseconds(412)))
        logger.warning("quote \" and \\ backslash", metadata: ["nested": ["a": "1"]])
        let lines = pipe.read(timeout: .zero) { _ in true }.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "\(lines)")
        let objects = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        #expect(objects.count == 2, "each line is one JSON object: \(lines)")
        let request = try #require(objects.first)
        #expect(request["level"] as? String == "info" && request["message"] as? String == "request" && request["logger"] as? String == "test")
        #expect(request["gen_ai.request.model"] as? String == "evil\",\"level\":\"critical\nsecond line\u{2028}", "a client's text stays one string")
        #expect(request["gen_ai.usage.input_tokens"] as? Int == 12 && request["gen_ai.usage.output_tokens"] as? Int == 7)
        #expect(request["http.response.status_code"] as? Int == 200 && request["duration_ms"] as? Int == 412 && request["ttft_ms"] as? Int == 250)
        #expect(objects.last?["message"] as? String == "quote \" and \\ backslash")
        #expect(objects.last?["nested"] is String)
    }

    @Test func aBlockedOutputDropsAndCountsLinesInsteadOfBlocking() throws {
        let pipe = try Pipe()
        // Fill the pipe so the writer thread's next write blocks.
        _ = fcntl(pipe.writeEnd, F_SETFL, fcntl(pipe.writeEnd, F_GETFL) | O_NONBLOCK)
        var filler = 0
        let block = [UInt8](repeating: UInt8(ascii: "x"), count: 4096)
        while block.withUnsafeBytes({ write(pipe.writeEnd, $0.baseAddress, $0.count) }) > 0 { filler += 4096 }
        _ = fcntl(pipe.writeEnd, F_SETFL, fcntl(pipe.writeEnd, F_GETFL) & ~O_NONBLOCK)
        #expect(filler > 0)

        let output = LogOutput(fileDescriptor: pipe.writeEnd, maximumBufferedBytes: 1000)
        let handler = GatewayLogHandler(label: "t", output: output)
        let logger = Logger(label: "t") { _ in handler }
        let started = ContinuousClock.now
        for i in 0..<50 { logger.info("line-\(i) \(String(repeating: "y", count: 60))") }
        #expect(started.duration(to: .now) < .seconds(1), "appending never waited for the pipe")

        // Drain: the writer's blocked write completes, then it writes the rest and the count.
        let text = pipe.read(timeout: .seconds(5)) { $0.contains("lines dropped]") }
        let received = text.split(separator: "\n").filter { $0.contains("line-") }.count
        let dropped = text.firstMatch(of: #/blocked: (\d+) lines dropped/#).flatMap { Int($0.1) } ?? 0
        #expect(dropped > 0)
        #expect(received + dropped == 50, "received \(received), dropped \(dropped)")
    }

    @Test func theRequestLineHasTheContractFieldsAndCannotBeSplitOrForged() {
        var log = OpenAIController.RequestLog(requestID: "req-1", operation: "chat/completions", started: .now)
        log.model = "gpt-4o"
        log.group = "fast"
        log.provider = "openai"
        log.attempts = 2
        log.tokens = TokenUsage(promptTokens: 12, completionTokens: 7)
        log.key = "team-a"
        #expect(
            OpenAIController.requestLine(log, status: 200, latency: .milliseconds(41))
                == "request request.id=req-1 gen_ai.request.model=gpt-4o gateway.model_group=fast gateway.provider=openai "
                + "gateway.attempts=2 http.response.status_code=200 duration_ms=41 gateway.operation=chat/completions "
                + "gen_ai.usage.input_tokens=12 gen_ai.usage.output_tokens=7 gateway.key=team-a")
        // A client chooses the model name: a newline, blanks, quotes or '=' must not make a second line or a field.
        log.model = "x\nrequest request.id=forged status=200 \"q\""
        log.tokens = nil
        log.key = nil
        let line = OpenAIController.requestLine(log, status: 404, latency: .zero)
        #expect(!line.contains("\n"))
        #expect(line.contains(#"gen_ai.request.model="x\nrequest request.id=forged status=200 \"q\"" gateway.model_group=fast"#), "\(line)")
        #expect(line.hasSuffix("gateway.operation=chat/completions"))
    }

    @Test func aContinuedStreamLogsEveryProviderAndContinued() {
        var log = OpenAIController.RequestLog(requestID: "req-2", operation: "chat/completions", started: .now)
        log.group = "fast"
        log.provider = "b"
        log.attempts = 2
        log.providers = ["a", "b"]
        log.continued = true
        let line = OpenAIController.requestLine(log, status: 200, latency: .milliseconds(5))
        #expect(line.hasSuffix("gateway.providers=a,b gateway.continued=1"), "\(line)")
        #expect(line.contains("gateway.provider=b "))
        log.continued = false
        #expect(OpenAIController.requestLine(log, status: 502, latency: .zero).hasSuffix("gateway.providers=a,b gateway.continued=0"))
    }
}
