public import Hummingbird
import NIOCore

/// A request context that keeps the channel, so `reset` mode can close it.
public struct MockContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel
    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
