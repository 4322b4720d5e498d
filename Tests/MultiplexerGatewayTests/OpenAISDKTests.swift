import Foundation
import MultiplexerGateway
import MultiplexerMockProvider
import Testing

/// The official OpenAI Python SDK (from PyPI), unmodified, against a live gateway.
///
/// The SDK is installed into `.build/sdk-venv` on first use (`python3 -m venv` + `pip install openai`).
@Suite("OpenAI Python SDK")
struct OpenAISDKTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs a command off the cooperative pool and returns its exit status and output.
    static func run(_ exe: String, _ args: [String], environment: [String: String] = [:]) async throws -> (Int32, String) {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: exe)
                p.arguments = args
                if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
                let out = Pipe()
                p.standardOutput = out
                p.standardError = out
                do {
                    try p.run()
                    let data = out.fileHandleForReading.readDataToEndOfFile()
                    p.waitUntilExit()
                    c.resume(returning: (p.terminationStatus, String(decoding: data, as: UTF8.self)))
                } catch {
                    c.resume(throwing: error)
                }
            }
        }
    }

    /// The venv's python, with the SDK installed.
    static func python() async throws -> String {
        let venv = Self.packageRoot.appendingPathComponent(".build/sdk-venv").path
        let py = venv + "/bin/python"
        if FileManager.default.isExecutableFile(atPath: py), try await Self.run(py, ["-c", "import openai"]).0 == 0 { return py }
        let (s1, o1) = try await Self.run("/usr/bin/env", ["python3", "-m", "venv", venv])
        try #require(s1 == 0, "python3 -m venv failed (install python3-venv): \(o1)")
        let (s2, o2) = try await Self.run(venv + "/bin/pip", ["install", "--quiet", "--disable-pip-version-check", "openai>=1.40,<3"])
        try #require(s2 == 0, "pip install openai failed: \(o2)")
        return py
    }

    @Test func theOfficialSDKWorksUnmodified() async throws {
        let python = try await Self.python()
        let keys = """
            keys:
              - { name: good, key: sdk-good-key-1 }
              - { name: limited, key: sdk-limited-key, limits: { rpm: 2 } }

            """
        try await GatewayFixture.with(
            mocks: [GatewayFixture.MockSpec("a")], yaml: { gatewayYAML($0, primary: [("a", 1)], groupExtra: "tier_wait_ms: 0", top: keys) }
        ) { f in
            let script = Self.packageRoot.appendingPathComponent("Tests/sdk/openai_sdk_check.py").path
            let (status, output) = try await Self.run(python, [script, f.base, "sdk-good-key-1", "sdk-limited-key"])
            #expect(status == 0, "\(output)")
            #expect(output.contains("all OpenAI SDK checks passed"), "\(output)")
        }
    }
}
