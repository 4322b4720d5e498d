import MultiplexerCore
import Synchronization

/// An ``UpstreamTransport`` whose providers answer from a script: the router's unit tests drive every
/// outcome through it. (The real libcurl transport is tested against real servers in its own module.)
final class ScriptedTransport: UpstreamTransport {
    typealias Request = String
    typealias Body = String

    /// What a provider does on its n-th call (1-based).
    typealias Script = @Sendable (_ callNumber: Int) -> Result<UpstreamResponse<String>, UpstreamError>

    private let scripts: [String: Script]
    private let calls = Mutex<[String]>([])
    private let onCall: (@Sendable (String) -> Void)?

    init(_ scripts: [String: Script], onCall: (@Sendable (String) -> Void)? = nil) {
        self.scripts = scripts
        self.onCall = onCall
    }

    /// Providers called, in order.
    var callLog: [String] { self.calls.withLock { $0 } }

    func send(_ request: String, attempt: UpstreamAttempt) async throws(UpstreamError) -> UpstreamResponse<String> {
        let name = attempt.provider.name
        let n = self.calls.withLock { c -> Int in
            c.append(name)
            return c.filter { $0 == name }.count
        }
        self.onCall?(name)
        guard let script = self.scripts[name] else { return .ok("from \(name)") }
        return try script(n).get()
    }
}

extension UpstreamResponse where Body == String {
    static func ok(_ body: String = "ok", usage: TokenUsage? = TokenUsage(promptTokens: 10, completionTokens: 5)) -> Self {
        UpstreamResponse(status: 200, body: body, usage: usage)
    }
    static func status(_ code: Int, headers: UpstreamHeaders = [:], errorCode: String? = nil) -> Self {
        UpstreamResponse(status: code, headers: headers, body: "status \(code)", errorCode: errorCode)
    }
}

/// A script that always gives the same answer.
func always(_ r: UpstreamResponse<String>) -> ScriptedTransport.Script { { _ in .success(r) } }
func always(_ e: UpstreamError) -> ScriptedTransport.Script { { _ in .failure(e) } }
