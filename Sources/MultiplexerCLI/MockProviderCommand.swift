import ArgumentParser
import Foundation
import Logging
import MultiplexerGateway
import MultiplexerMockProvider

struct MockProvider: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-provider",
        abstract: "Run a fake OpenAI-compatible provider with strict rolling limits, provider dialects and failure modes (for tests, the demo, benchmarks).")

    @Option(help: "Listen on this port.") var port: Int
    @Option(help: "Listen on this address.") var host: String = "127.0.0.1"
    @Option(help: "Strict requests per rolling minute (429 beyond).") var rpm: Int?
    @Option(help: "Strict tokens per rolling minute (429 beyond).") var tpm: Int?
    @Option(help: "Strict concurrent requests (429 beyond).") var maxConcurrent: Int?
    @Option(help: "Milliseconds until a non-stream answer's headers (the whole answer), or until a stream's first event (its headers come at once).")
    var latencyMs: Int = 0
    @Option(help: "Fraction of requests answered 500 (0…1).") var failRate: Double = 0
    @Option(help: "Content events per streamed answer.") var streamChunks: Int = 5
    @Option(name: [.customLong("token-interval-ms"), .customLong("chunk-delay-ms")], help: "Milliseconds between streamed events (alias: --chunk-delay-ms).")
    var tokenIntervalMs: Int = 2
    @Option(help: "Completion tokens per answer (capped by max_tokens).") var completionTokens: Int = 8
    @Option(help: "Start in this mode: \(MultiplexerMockProvider.MockProvider.Mode.allCases.map(\.rawValue).joined(separator: ", ")).") var mode: String = "ok"
    @Option(help: "Retry-After seconds in 429 mode; the reset that exhausted mode announces.") var retryAfter: Int = 2
    @Option(help: "Rate-limit headers and 429s in this provider's style: \(MultiplexerMockProvider.MockProvider.Dialect.allCases.map(\.rawValue).joined(separator: ", ")).")
    var dialect: String = "openai"
    @Flag(help: "Refuse assistant prefills (a chat request ending with an assistant message) with 400 invalid_prefill.") var refusePrefill = false
    @Option(help: "Content events a stream-cut or stream-stall answer sends before it breaks (default: half, plus one).") var breakAfter: Int?

    func run() async throws {
        _ = bootstrapLogging(level: .warning)
        guard let m = MultiplexerMockProvider.MockProvider.Mode(rawValue: self.mode) else { throw ValidationError("unknown mode '\(self.mode)'") }
        guard let d = MultiplexerMockProvider.MockProvider.Dialect(rawValue: self.dialect) else { throw ValidationError("unknown dialect '\(self.dialect)'") }
        var c = MultiplexerMockProvider.MockProvider.Configuration()
        c.host = self.host
        c.port = self.port
        c.rpm = self.rpm
        c.tpm = self.tpm
        c.maxConcurrent = self.maxConcurrent
        c.latency = .milliseconds(self.latencyMs)
        c.failRate = self.failRate
        c.streamChunks = self.streamChunks
        c.tokenInterval = .milliseconds(self.tokenIntervalMs)
        c.completionTokens = self.completionTokens
        c.mode = m
        c.retryAfter = self.retryAfter
        c.dialect = d
        c.acceptsPrefill = !self.refusePrefill
        c.breakAfter = self.breakAfter
        let port = self.port
        try await MultiplexerMockProvider.MockProvider(configuration: c).run(onServerRunning: { _ in
            print("mock-provider listening on 127.0.0.1:\(port)")
        })
    }
}
