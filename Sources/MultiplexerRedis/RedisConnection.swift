internal import CHiredis
internal import CHiredisReader

#if canImport(Glibc)
import Glibc
#endif

/// One blocking hiredis connection. The only type that touches `redisContext*` and `redisReply*`.
///
/// ### Threading
/// Not thread-safe: a connection is created, used and freed by the single worker thread of its
/// ``RedisClient``. It is never shared (see the `Sendable` unavailability below).
final class RedisConnection {
    private var context: UnsafeMutablePointer<redisContext>?

    /// Connects, sets the command timeout (hiredis 0.14's connect timeout does not bound reads), then
    /// authenticates and selects the database.
    init(endpoint: RedisEndpoint, connectTimeoutMs: Int, commandTimeoutMs: Int) throws(RedisError) {
        guard let c = chiredis_connect(endpoint.host, Int32(endpoint.port), connectTimeoutMs) else {
            throw RedisError(.connectionFailed, "cannot allocate a redis context")
        }
        self.context = c
        if chiredis_err(c) != 0 {
            let e = RedisError(.connectionFailed, "\(endpoint.host):\(endpoint.port): \(String(cString: chiredis_errstr(c)))", hiredisCode: chiredis_err(c))
            self.close()
            throw e
        }
        if chiredis_set_timeout(c, commandTimeoutMs) != REDIS_OK {
            self.close()
            throw RedisError(.connectionFailed, "cannot set the command timeout")
        }
        // An array reply announcing more than CHIREDIS_MAX_ARRAY_ELEMENTS is refused before hiredis allocates it.
        if chiredis_limit_reader(c.pointee.reader) != 0 {
            self.close()
            throw RedisError(.connectionFailed, "cannot limit the reply reader")
        }
        do throws(RedisError) {
            if let password = endpoint.password {
                let auth = endpoint.username.map { ["AUTH", $0, password] } ?? ["AUTH", password]
                if case .error(let m) = try self.command(auth.map { Array($0.utf8) }) {
                    throw RedisError(.connectionFailed, "AUTH failed: \(m.split(separator: " ").prefix(2).joined(separator: " "))")
                }
            }
            if endpoint.database != 0, case .error(let m) = try self.command(["SELECT", String(endpoint.database)].map { Array($0.utf8) }) {
                throw RedisError(.connectionFailed, "SELECT \(endpoint.database) failed: \(m)")
            }
        } catch {
            self.close()
            throw error
        }
    }

    deinit {
        self.close()
    }

    func close() {
        if let c = self.context { redisFree(c) }
        self.context = nil
    }

    /// Whether the context has failed (it must then be discarded).
    var isBroken: Bool {
        guard let c = self.context else { return true }
        return chiredis_err(c) != 0
    }

    /// Sends one command and reads its reply.
    func command(_ args: [[UInt8]]) throws(RedisError) -> RedisValue {
        try self.append(args)
        return try self.readReply()
    }

    /// Queues a command in hiredis's output buffer (written by the next ``readReply()``).
    func append(_ args: [[UInt8]]) throws(RedisError) {
        guard let c = self.context else { throw RedisError(.io, "connection closed") }
        let total = args.reduce(0) { $0 + $1.count }
        let argv = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: args.count)
        let lens = UnsafeMutablePointer<Int>.allocate(capacity: args.count)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(1, total), alignment: 1)
        defer {
            argv.deallocate()
            lens.deallocate()
            storage.deallocate()
        }
        var offset = 0
        for (i, a) in args.enumerated() {
            let dst = storage + offset
            a.withUnsafeBytes { src in
                if let base = src.baseAddress { dst.copyMemory(from: base, byteCount: a.count) }
            }
            argv[i] = UnsafePointer(dst.assumingMemoryBound(to: CChar.self))
            lens[i] = a.count
            offset += a.count
        }
        // hiredis copies the formatted command into its own buffer before returning.
        let rc = redisAppendCommandArgv(c, Int32(args.count), argv, lens)
        if rc != REDIS_OK { throw self.failure() }
    }

    /// Reads the next reply (flushing queued commands first).
    func readReply() throws(RedisError) -> RedisValue {
        guard let c = self.context else { throw RedisError(.io, "connection closed") }
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(c, &raw) == REDIS_OK, let raw else { throw self.failure() }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    private func failure() -> RedisError {
        guard let c = self.context else { return RedisError(.io, "connection closed") }
        let code = chiredis_err(c)
        let message = String(cString: chiredis_errstr(c))
        // A read that hit SO_RCVTIMEO reports EAGAIN: that is the command timeout.
        if code == REDIS_ERR_IO, errno == EAGAIN || errno == EWOULDBLOCK || message.contains("temporarily unavailable") {
            return RedisError(.timeout, "command timed out", hiredisCode: code)
        }
        return RedisError(.io, message.isEmpty ? "I/O error" : message, hiredisCode: code)
    }

    /// Parses `bytes` as RESP replies with hiredis's reader and converts them as replies read off a connection
    /// are: the complete replies in order, or nil when hiredis reports a protocol error. (How the fuzz target
    /// reaches the decoder without a server.)
    static func decodeReplies(_ bytes: [UInt8]) -> [RedisValue]? {
        guard let reader = redisReaderCreate() else { return nil }
        defer { redisReaderFree(reader) }
        guard chiredis_limit_reader(reader) == 0 else { return nil }
        let fed = bytes.withUnsafeBytes { p -> Int32 in
            guard let base = p.baseAddress, p.count > 0 else { return REDIS_OK }
            return redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), p.count)
        }
        guard fed == REDIS_OK else { return nil }
        var out: [RedisValue] = []
        while true {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else { return nil }
            guard let raw else { return out }
            out.append(Self.convert(raw.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(raw)
        }
    }

    private static func convert(_ r: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let reply = r.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .string(Self.bytes(reply))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: Self.bytes(reply), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: Self.bytes(reply), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(reply.integer)
        case REDIS_REPLY_ARRAY:
            var out: [RedisValue] = []
            out.reserveCapacity(reply.elements)
            for i in 0..<reply.elements {
                if let e = reply.element[i] { out.append(Self.convert(e)) } else { out.append(.null) }
            }
            return .array(out)
        default:
            return .null
        }
    }

    private static func bytes(_ reply: redisReply) -> [UInt8] {
        guard let s = reply.str, reply.len > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: s, count: reply.len))
    }
}

@available(*, unavailable)
extension RedisConnection: Sendable {}
