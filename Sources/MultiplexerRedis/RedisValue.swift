/// A Redis reply, converted from hiredis's `redisReply` before the C object is freed.
///
/// hiredis 0.14 speaks RESP2 only: strings, arrays, integers, nil, status and error replies.
public enum RedisValue: Sendable, Hashable {
    case null
    case status(String)
    case error(String)
    case integer(Int64)
    case string([UInt8])
    case array([RedisValue])

    /// An integer reply, or a bulk string holding an integer.
    public var int: Int64? {
        switch self {
        case .integer(let i): i
        case .string(let b): Int64(String(decoding: b, as: UTF8.self))
        case .status(let s): Int64(s)
        default: nil
        }
    }

    /// A bulk string or status reply as text.
    public var text: String? {
        switch self {
        case .string(let b): String(decoding: b, as: UTF8.self)
        case .status(let s): s
        case .integer(let i): String(i)
        default: nil
        }
    }

    /// An array reply's elements.
    public var array: [RedisValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The message of an error reply.
    public var errorMessage: String? {
        if case .error(let e) = self { return e }
        return nil
    }
}
