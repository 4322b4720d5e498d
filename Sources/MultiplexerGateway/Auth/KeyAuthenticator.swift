import MultiplexerCore

/// Matches a presented client key (`Authorization: Bearer …`, `api-key: …` or `x-api-key: …`) against the
/// configured keys.
///
/// Keys are kept only as SHA-256 digests; a lookup hashes the presented key and compares digests in
/// constant time, so neither plain keys nor timing reveal anything.
struct KeyAuthenticator: Sendable {
    private let byDigest: [String: GatewayConfiguration.Key]

    init(keys: [GatewayConfiguration.Key]) {
        var map: [String: GatewayConfiguration.Key] = [:]
        for k in keys {
            switch k.secret {
            case .plain(let s): map[KeyDigest.hex(Array(s.utf8))] = k
            case .sha256(let h): map[h] = k
            }
        }
        self.byDigest = map
    }

    /// Whether any key is configured (otherwise anonymous use is allowed).
    var isEnabled: Bool { !self.byDigest.isEmpty }

    /// The key matching `presented`, if any.
    func authenticate(_ presented: String) -> GatewayConfiguration.Key? {
        let digest = KeyDigest.hex(Array(presented.utf8))
        var found: GatewayConfiguration.Key?
        for (d, k) in self.byDigest where Self.constantTimeEquals(d, digest) { found = k }
        return found
    }

    /// The key a client presents: `Authorization: Bearer`, else `api-key` (Azure clients), else `x-api-key`
    /// (Anthropic clients).
    static func presentedKey(authorization: String?, apiKey: String?, xAPIKey: String? = nil) -> String? {
        if let a = authorization {
            // `Bearer <key>`, the scheme in any case: compared byte by byte (no lower-cased copy per request).
            let t = a.utf8.trimmingBlanks()
            if t.count > 7, zip(t.prefix(6), "bearer".utf8).allSatisfy({ $0 | 0x20 == $1 }), t.dropFirst(6).first == 0x20 {
                let key = t.dropFirst(7).trimmingBlanks()
                if !key.isEmpty { return String(decoding: key, as: UTF8.self) }
            }
        }
        if let k = apiKey?.trimmingBlanks(), !k.isEmpty { return String(k) }
        if let k = xAPIKey?.trimmingBlanks(), !k.isEmpty { return String(k) }
        return nil
    }

    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

extension Substring.UTF8View {
    /// Without leading and trailing spaces and tabs.
    fileprivate func trimmingBlanks() -> Substring.UTF8View {
        var s = self
        while let f = s.first, f == 0x20 || f == 0x09 { s = s.dropFirst() }
        while let l = s.last, l == 0x20 || l == 0x09 { s = s.dropLast() }
        return s
    }
}

extension String.UTF8View {
    fileprivate func trimmingBlanks() -> Substring.UTF8View { self[...].trimmingBlanks() }
}
