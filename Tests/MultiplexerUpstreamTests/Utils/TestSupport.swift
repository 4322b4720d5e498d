import MultiplexerCore
import MultiplexerUpstream
import Synchronization

/// Runs `body` with a running client (which ignores proxy environment variables: the tests talk to 127.0.0.1).
func withTestClient<R: Sendable>(
    _ configuration: CurlClient.Configuration = CurlClient.Configuration(usesProxyEnvironment: false),
    isolation: isolated (any Actor)? = #isolation,
    _ body: (CurlClient) async throws -> R
) async throws -> R {
    try await CurlClient.withClient(configuration: configuration, body)
}

/// A request to `path` on `server`.
func request(
    _ server: TestHTTPServer, _ path: String = "/", method: String = "POST", body: String = "{}", headers: UpstreamHeaders = [:],
    timeouts: UpstreamTimeouts = UpstreamTimeouts(connect: .seconds(2), response: .seconds(5))
) -> UpstreamHTTPRequest {
    UpstreamHTTPRequest(method: method, url: server.baseURL + path, headers: headers, body: Array(body.utf8), timeouts: timeouts)
}

/// Waits (polling) until `condition` holds; `false` on timeout.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// Runs `body` and returns the error it throws, with the time it took.
func failure<T>(
    isolation: isolated (any Actor)? = #isolation, _ body: () async throws(UpstreamError) -> T
) async -> (error: UpstreamError?, elapsed: Duration) {
    let start = ContinuousClock.now
    do {
        _ = try await body()
        return (nil, start.duration(to: .now))
    } catch {
        return (error, start.duration(to: .now))
    }
}

/// A value set once by another thread.
final class Box<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    var get: Value { self.value.withLock { $0 } }
    func set(_ newValue: Value) { self.value.withLock { $0 = newValue } }
    func update(_ body: (inout Value) -> Void) { self.value.withLock { body(&$0) } }
}

/// A deterministic random generator (SplitMix64) for reproducible chunk splits.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
