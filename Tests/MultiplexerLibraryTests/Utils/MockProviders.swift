import Hummingbird
import Multiplexer
import MultiplexerCore
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import ServiceLifecycle
import Testing

/// Mock providers (the gateway's `MockProvider`, strict limits and failure modes) running in this process on
/// loopback ports, for the library to call.
struct MockProviders: Sendable {
    let mocks: [String: MockProvider]
    let ports: [String: Int]

    /// One mock to start.
    struct Spec: Sendable {
        var name: String
        var configuration = MockProvider.Configuration()
        init(_ name: String, _ configure: (inout MockProvider.Configuration) -> Void = { _ in }) {
            self.name = name
            configure(&self.configuration)
        }
    }

    /// Starts the mocks, runs `body`, and stops them.
    static func with<R: Sendable>(_ specs: [Spec], _ body: @Sendable (MockProviders) async throws -> R) async throws -> R {
        let mocks = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, MockProvider(configuration: $0.configuration)) })
        let (ports, portsContinuation) = AsyncStream.makeStream(of: (String, Int).self)
        let apps: [any Service] = mocks.map { name, mock in
            mock.buildApplication(onServerRunning: { port in portsContinuation.yield((name, port)) })
        }
        return try await withServicesRunning(apps) {
            var bound: [String: Int] = [:]
            for await (name, port) in ports {
                bound[name] = port
                if bound.count == mocks.count { break }
            }
            return try await body(MockProviders(mocks: mocks, ports: bound))
        }
    }

    /// The base URL of mock `name`.
    func url(_ name: String) -> String { "http://127.0.0.1:\(self.ports[name] ?? 1)/v1" }

    /// The counters of mock `name`.
    func counters(_ name: String) -> MockProviderState.Counters { self.mocks[name]!.state.counters }

    /// Switches mock `name` to `mode`.
    func set(_ name: String, _ mode: MockProvider.Mode, retryAfter: Int? = nil) {
        self.mocks[name]!.state.setMode(mode, retryAfter: retryAfter)
    }

    /// An endpoint for mock `name` (upstream model `upstream-<name>`).
    func endpoint(
        _ name: String, limits: OpenAICompatibleEndpoint.Limits = .unlimited, timeouts: OpenAICompatibleEndpoint.Timeouts = .init(connect: .seconds(2), request: .seconds(10)),
        failureThreshold: Int = 3
    ) -> OpenAICompatibleEndpoint {
        OpenAICompatibleEndpoint(
            baseURL: self.url(name), apiKey: "sk-test-\(name)-secret", model: "upstream-\(name)", limits: limits, timeouts: timeouts,
            failureThreshold: failureThreshold)
    }
}

/// A one-message chat.
func ask(_ mux: Multiplexer, _ text: String = "hello world") async throws -> ChatCompletion {
    try await mux.chat.completions.create(messages: [.user(text)])
}

/// The error `body` throws, as a ``MultiplexerError``.
func multiplexerError(_ body: () async throws -> Void) async -> MultiplexerError? {
    do {
        try await body()
        return nil
    } catch let e as MultiplexerError {
        return e
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}
