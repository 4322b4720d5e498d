import ArgumentParser
import Foundation
import Logging
import MultiplexerGateway

struct MockProvider: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-provider",
        abstract: "Run a fake OpenAI-compatible provider with strict rolling limits and failure modes (for tests, the demo, benchmarks).")

    @Option(help: "Listen on this port.") var port: Int
    @Option(help: "Listen on this address.") var host: String = "127.0.0.1"
    @Option(help: "Strict requests per rolling minute (429 beyond).") var rpm: Int?
    @Option(help: "Strict tokens per rolling minute (429 beyond).") var tpm: Int?
    @Option(help: "Strict concurrent requests (429 beyond).") var maxConcurrent: Int?
    @Option(help: "Added latency per request, in milliseconds.") var latencyMs: Int = 0
    @Option(help: "Fraction of requests answered 500 (0…1).") var failRate: Double = 0
    @Option(help: "Events per streamed answer.") var streamChunks: Int = 5
    @Option(help: "Milliseconds between streamed events.") var chunkDelayMs: Int = 2
    @Option(help: "Completion tokens per answer (capped by max_tokens).") var completionTokens: Int = 8
    @Option(help: "Start in this mode: \(MultiplexerGateway.MockProvider.Mode.allCases.map(\.rawValue).joined(separator: ", ")).") var mode: String = "ok"
    @Option(help: "Retry-After seconds in 429 mode.") var retryAfter: Int = 2

    func run() async throws {
        _ = bootstrapLogging(level: .warning)
        guard let m = MultiplexerGateway.MockProvider.Mode(rawValue: self.mode) else { throw ValidationError("unknown mode '\(self.mode)'") }
        var c = MultiplexerGateway.MockProvider.Configuration()
        c.host = self.host
        c.port = self.port
        c.rpm = self.rpm
        c.tpm = self.tpm
        c.maxConcurrent = self.maxConcurrent
        c.latency = .milliseconds(self.latencyMs)
        c.failRate = self.failRate
        c.streamChunks = self.streamChunks
        c.chunkDelay = .milliseconds(self.chunkDelayMs)
        c.completionTokens = self.completionTokens
        c.mode = m
        c.retryAfter = self.retryAfter
        let port = self.port
        try await MultiplexerGateway.MockProvider(configuration: c).run(onServerRunning: { _ in
            print("mock-provider listening on 127.0.0.1:\(port)")
        })
    }
}
