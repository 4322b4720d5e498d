import Foundation
import Hummingbird
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// One mock provider running in this process on a loopback port, called with the `curl` CLI.
struct MockFixture: Sendable {
    let mock: MockProvider
    let port: Int

    var state: MockProviderState { self.mock.state }
    var base: String { "http://127.0.0.1:\(self.port)" }

    /// Starts a mock configured by `configure`, runs `body`, and stops it.
    static func with<R: Sendable>(
        _ configure: (inout MockProvider.Configuration) -> Void = { _ in }, _ body: @Sendable (MockFixture) async throws -> R
    ) async throws -> R {
        var c = MockProvider.Configuration()
        configure(&c)
        let mock = MockProvider(configuration: c)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        return try await withServicesRunning([mock.buildApplication(onServerRunning: { continuation.yield($0) })]) {
            var port = 0
            for await p in ports {
                port = p
                break
            }
            return try await body(MockFixture(mock: mock, port: port))
        }
    }
}

/// The `curl` command line: what a real client does, with nothing of ours in between.
enum Curl {
    /// What curl did.
    struct Result: Sendable {
        /// curl's exit status (0; 28 timed out; 60 certificate not trusted; …).
        var exitCode: Int32
        /// The body, then (after the last newline) what `-w` wrote.
        var output: String
    }

    /// A JSON chat request body.
    static func chat(stream: Bool = false) -> String {
        #"{"model":"m","messages":[{"role":"user","content":"hello there"}],"stream":\#(stream)}"#
    }

    /// Runs `curl -sS args…` off the cooperative pool.
    static func run(_ args: [String], timeout: Duration = .seconds(20)) async throws -> Result {
        let r = try await offCooperativePool { try RedisCLI.runWithStatus(tool: "curl", ["-sS"] + args, timeout: timeout) }
        return Result(exitCode: r.status, output: r.output)
    }

    /// POSTs `body` to `url` and returns the status, the headers (names lowercased) and the body.
    static func post(_ url: String, _ body: String, extra: [String] = []) async throws -> (status: Int, headers: [String: String], body: String) {
        let r = try await run(["-i", "-H", "content-type: application/json", "-d", body] + extra + [url])
        return parse(r.output)
    }

    /// Splits `curl -i` output.
    static func parse(_ text: String) -> (status: Int, headers: [String: String], body: String) {
        let r = RawHTTPResponse(parsing: text)
        return (r.status, r.headers, r.body)
    }
}
