import Foundation
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
}
