import Foundation
import MultiplexerGateway
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// The `multiplexer` executable as a user runs it.
struct CommandLineTests {
    static var binary: String {
        OpenAISDKTests.packageRoot.appendingPathComponent(".build/debug/multiplexer").path
    }

    static func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "mux-check-\(UUID().uuidString).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func checkListsEveryErrorWithItsLineAndExitsNonZero() async throws {
        let path = try Self.write("""
            server: { port: 70000 }
            providers:
              - { name: a, base_url: "http://127.0.0.1:1/v1", model: m, limits: { rpm: zero } }
            models:
              - { name: g, primary: [{ provider: b, weight: 1 }] }
            surprise: 1
            """)
        let (status, output) = try await OpenAISDKTests.run(Self.binary, ["check", "--config", path])
        #expect(status == 1)
        #expect(output.contains("line 1: server.port: must be between 0 and 65535"), "\(output)")
        #expect(output.contains("line 3: providers[0].limits.rpm: must be an integer"), "\(output)")
        #expect(output.contains("line 5: models[0].primary[0].provider: unknown provider 'b'"), "\(output)")
        #expect(output.contains("line 6: surprise: unknown key"), "\(output)")
    }

    @Test func checkAcceptsAGoodFile() async throws {
        let path = try Self.write("""
            providers: [{ name: a, base_url: "http://127.0.0.1:1/v1", model: m }]
            models: [{ name: g, primary: [{ provider: a }] }]
            """)
        let (status, output) = try await OpenAISDKTests.run(Self.binary, ["check", "--config", path])
        #expect(status == 0 && output.contains("OK"), "\(output)")
    }

    @Test func checkWarnsWhenVerificationIsOff() async throws {
        let path = try Self.write("""
            providers: [{ name: a, base_url: "https://127.0.0.1:1/v1", model: m, tls: { verify: false } }]
            models: [{ name: g, primary: [{ provider: a }] }]
            """)
        let (status, output) = try await OpenAISDKTests.run(Self.binary, ["check", "--config", path])
        #expect(status == 0 && output.contains("OK"), "\(output)")
        #expect(output.contains("warning: line 1: providers[0].tls.verify: certificate verification is off"), "\(output)")
    }

    @Test func serveRefusesABadFileNamingTheProblem() async throws {
        let path = try Self.write("providers: []\nmodels: []\nkeys: [{ name: k }]\n")
        let (status, output) = try await OpenAISDKTests.run(Self.binary, ["serve", "--config", path])
        #expect(status == 1)
        #expect(output.contains("keys[0].key: missing required key"), "\(output)")
        #expect(output.contains("providers: needs at least one provider"), "\(output)")
    }

    @Test func versionAndTheConfigFromTheEnvironment() async throws {
        let (status, output) = try await OpenAISDKTests.run(Self.binary, ["--version"])
        #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines) == MultiplexerVersion.current, "\(output)")
        let path = try Self.write("""
            providers: [{ name: a, base_url: "http://127.0.0.1:1/v1", model: m }]
            models: [{ name: g, primary: [{ provider: a }] }]
            """)
        let (checked, text) = try await Self.run(["check"], environment: ["MULTIPLEXER_CONFIG": path])
        #expect(checked == 0 && text.contains("\(path): OK"), "check reads MULTIPLEXER_CONFIG: \(text)")
        let (stats, statsText) = try await Self.run(["stats"], environment: ["MULTIPLEXER_CONFIG": path])
        #expect(stats == 1 && statsText.contains("redis"), "stats reads MULTIPLEXER_CONFIG (and needs its redis section): \(statsText)")
    }

    /// The README's command synopsis names exactly the flags each subcommand's `--help` lists (a flag added to
    /// a command and not to the README, or removed from one, fails here).
    @Test(arguments: ["serve", "check", "stats", "mock-provider", "demo"])
    func theReadmeSynopsisMatchesTheHelp(command: String) async throws {
        let readme = try String(contentsOf: OpenAISDKTests.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        // The synopsis entry: from `multiplexer <command>` to the next `multiplexer ` line.
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex { $0.hasPrefix("multiplexer \(command) ") || $0 == "multiplexer \(command)" })
        var entry = [lines[start]]
        for line in lines[(start + 1)...] {
            if line.hasPrefix("multiplexer ") || line.hasPrefix("```") { break }
            entry.append(line)
        }
        let flags = { (text: String) in Set(text.matches(of: /--[a-z][a-z0-9-]+/).map { String($0.output) }) }
        let written = flags(entry.map { $0.split(separator: "#", maxSplits: 1).first.map(String.init) ?? "" }.joined(separator: " "))
        let (_, help) = try await OpenAISDKTests.run(Self.binary, [command, "--help"])
        let offered = flags(help).subtracting(["--help", "--version"])
        #expect(written == offered, "README lists \(written.subtracting(offered).sorted()) that --help does not; --help has \(offered.subtracting(written).sorted()) the README lacks")
    }

    @Test func statsWatchRedrawsInPlace() async throws {
        let redis = try RedisServer()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["stats", "--redis", redis.url, "--namespace", "watch", "--watch"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        try await Task.sleep(for: .milliseconds(2600))
        p.interrupt()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.components(separatedBy: "\u{1B}[H\u{1B}[2J").count - 1 >= 2, "redrawn every second: \(text.prefix(300))")
        #expect(text.contains("namespace {watch}"))
    }

    static func run(_ args: [String], environment: [String: String]) async throws -> (Int32, String) {
        try await OpenAISDKTests.run(Self.binary, args, environment: environment)
    }
}
