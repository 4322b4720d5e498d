import Crypto
import MultiplexerCore

/// A Lua script run with EVALSHA; loaded on first use and re-loaded when Redis answers NOSCRIPT
/// (after a restart or a failover).
public struct RedisScript: Sendable, Hashable {
    /// The Lua source.
    public let source: String
    /// Its SHA-1, as Redis names it.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        // SHA-1 only because Redis names scripts by it (not for security).
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).hexString
    }
}
