/// Where and how to connect: parsed from `redis://[[user]:password@]host[:port][/db]`.
public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int
    public var username: String?
    /// Sent with AUTH; never printed.
    public var password: String?

    public init(host: String = "127.0.0.1", port: Int = 6379, database: Int = 0, username: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
    }

    /// Parses a `redis://` URL.
    ///
    /// - Throws: ``RedisError`` with code `invalidURL`, naming what is wrong (never echoing a password).
    public init(url: String) throws {
        guard url.hasPrefix("redis://") else { throw RedisError(.invalidURL, "must start with redis:// (TLS, rediss://, needs hiredis ≥ 1.0)") }
        var rest = Substring(url.dropFirst("redis://".count))
        var user: String?, pass: String?
        if let at = rest.lastIndex(of: "@") {
            let auth = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = auth.firstIndex(of: ":") {
                user = auth[..<colon].isEmpty ? nil : String(auth[..<colon])
                pass = String(auth[auth.index(after: colon)...]).removingPercentEncoding()
            } else {
                pass = String(auth).removingPercentEncoding()
            }
        }
        var db = 0
        if let slash = rest.firstIndex(of: "/") {
            let dbText = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !dbText.isEmpty {
                guard let d = Int(dbText), d >= 0 else { throw RedisError(.invalidURL, "database must be a non-negative integer, got '\(dbText)'") }
                db = d
            }
        }
        var host = String(rest), port = 6379
        if rest.hasPrefix("[") {  // [::1]:6379
            guard let close = rest.firstIndex(of: "]") else { throw RedisError(.invalidURL, "unclosed IPv6 bracket") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw RedisError(.invalidURL, "bad port '\(after.dropFirst())'") }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            let p = rest[rest.index(after: colon)...]
            guard let n = Int(p), (1...65535).contains(n) else { throw RedisError(.invalidURL, "bad port '\(p)'") }
            port = n
        }
        guard !host.isEmpty else { throw RedisError(.invalidURL, "missing host") }
        self.init(host: host, port: port, database: db, username: user, password: pass)
    }

    public var description: String {
        "redis://\(self.password == nil ? "" : "\(self.username ?? ""):***@")\(self.host):\(self.port)/\(self.database)"
    }
}

extension String {
    /// Decodes `%XX` escapes (a password may contain `@` or `:` escaped).
    fileprivate func removingPercentEncoding() -> String {
        var out: [UInt8] = []
        var bytes = Array(self.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%"), bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
