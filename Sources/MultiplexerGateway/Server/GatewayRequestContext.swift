public import Hummingbird
public import NIOCore

/// The request context of a gateway node: Hummingbird's basic context plus the client's connection, so a
/// request can notice that its client went away (a reset, a close) while it waits for a provider — and
/// release what it holds within a second instead of at its next write (ARCHITECTURE §3 step 7).
public struct GatewayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's connection; `nil` where the context was not made by a server (tests of routes alone).
    public let channel: (any Channel)?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }

    /// Whether the client's connection is still open (a context without one counts as open).
    public var clientConnected: Bool { self.channel?.isActive ?? true }
}

/// Cancels the request task when its client's connection closes.
///
/// ``run(_:_:)`` runs `body` (the request's handling, in the calling task) while a child task checks the
/// connection every ``interval``; when it has closed, the calling task is cancelled: the router's waits and
/// the upstream call end, and their reservation is settled as abandoned.
enum ClientWatch {
    /// How often the connection is checked.
    static let interval: Duration = .milliseconds(500)

    /// Runs `body`; returns its result and whether the client went away meanwhile.
    static func run<R: Sendable>(_ channel: (any Channel)?, _ body: () async -> R) async -> (result: R, clientGone: Bool) {
        guard let channel else { return (await body(), false) }
        let task = withUnsafeCurrentTask { $0.map(RelayTask.init) }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                while (try? await Task.sleep(for: Self.interval)) != nil {
                    if !channel.isActive {
                        task?.cancel()
                        return true
                    }
                }
                return false
            }
            let r = await body()
            group.cancelAll()
            let gone = await group.next() ?? false
            return (r, gone)
        }
    }
}
