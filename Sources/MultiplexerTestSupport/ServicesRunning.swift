public import ServiceLifecycle
import Logging

/// Runs `services` (Hummingbird applications, for instance) while `body` runs, then shuts them down
/// *gracefully* and waits for them to end.
///
/// Cancelling a running Hummingbird server instead can drop a connection it has accepted but not yet
/// handled, and swift-nio traps on the unfinished writer of that dropped channel ("Deinited NIOAsyncWriter
/// without calling finish()"): a crash that depends on timing. Graceful shutdown closes the listener and lets
/// the server finish every connection it has; only one still busy after `gracePeriod` is cancelled.
public func withServicesRunning<R: Sendable>(
    _ services: [any Service], gracePeriod: Duration = .seconds(2),
    isolation: isolated (any Actor)? = #isolation,
    _ body: () async throws -> R
) async throws -> R {
    var configuration = ServiceGroupConfiguration(
        services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }, logger: Logger(label: "test-services"))
    configuration.maximumGracefulShutdownDuration = gracePeriod
    let group = ServiceGroup(configuration: configuration)
    return try await withThrowingTaskGroup(of: Void.self, returning: R.self) { tasks in
        tasks.addTask { try await group.run() }
        let result: Result<R, any Error>
        do {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        try? await tasks.waitForAll()
        return try result.get()
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
public func eventually(timeout: Duration = .seconds(5), _ condition: @Sendable () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
