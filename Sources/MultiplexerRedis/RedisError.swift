/// An error talking to Redis.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Value: String, Sendable, Hashable {
            case connectionFailed = "connection_failed"
            case timeout
            case io
            case unavailable
            case protocolError = "protocol_error"
            case serverError = "server_error"
            case shutdown
            case invalidURL = "invalid_url"
            case invalidConfiguration = "invalid_configuration"
        }
        fileprivate let value: Value
        /// The connection could not be established (refused, unresolvable, connect timeout, AUTH/SELECT failed).
        public static let connectionFailed = Code(value: .connectionFailed)
        /// A command did not complete within the command timeout.
        public static let timeout = Code(value: .timeout)
        /// The connection broke mid-command: whether the command ran is unknown.
        public static let io = Code(value: .io)
        /// The circuit breaker is open after recent failures: not attempted.
        public static let unavailable = Code(value: .unavailable)
        /// The reply did not have the expected shape.
        public static let protocolError = Code(value: .protocolError)
        /// Redis answered with an error reply.
        public static let serverError = Code(value: .serverError)
        /// The client was shut down.
        public static let shutdown = Code(value: .shutdown)
        /// The `redis://` URL is malformed.
        public static let invalidURL = Code(value: .invalidURL)
        /// The `redis:` configuration is inconsistent (see ``RedisTopology/init(url:sentinels:masterName:cluster:username:password:sentinelPassword:database:)``).
        public static let invalidConfiguration = Code(value: .invalidConfiguration)
        public var description: String { self.value.rawValue }
    }

    public var code: Code
    /// Detail from hiredis's `errstr` or the error reply (never a password).
    public var message: String
    /// The raw hiredis error flag (`REDIS_ERR_IO`, `REDIS_ERR_EOF`, …), 0 if none.
    public var hiredisCode: Int32

    public init(_ code: Code, _ message: String, hiredisCode: Int32 = 0) {
        self.code = code
        self.message = message
        self.hiredisCode = hiredisCode
    }

    public var description: String { "redis \(self.code): \(self.message)" }

    /// Whether the store should treat Redis as unreachable (as opposed to a bug in a script).
    public var isUnavailability: Bool {
        self.code == .connectionFailed || self.code == .timeout || self.code == .io || self.code == .unavailable || self.code == .shutdown
    }

    /// Whether a command may have run although it failed (so a retry must be idempotent).
    public var isAmbiguous: Bool { self.code == .timeout || self.code == .io }
}
