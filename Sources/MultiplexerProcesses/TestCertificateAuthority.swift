import Foundation

/// A certificate authority for tests, made with the `openssl` CLI in a temporary directory, and the certificates
/// it signed: a good server certificate for `localhost` and `127.0.0.1`, an expired one, one for the wrong host
/// name only, and a client certificate for mTLS. Keys are P-256, unencrypted, PEM. The directory is removed when
/// the authority is released.
public final class TestCertificateAuthority: Sendable {
    public enum Failure: Error, CustomStringConvertible {
        case openssl(command: String, output: String)
        case notExpired(String)
        public var description: String {
            switch self {
            case .openssl(let command, let output): "openssl failed: \(command)\n\(output)"
            case .notExpired(let path): "\(path) is not expired"
            }
        }
    }

    /// A certificate and its private key.
    public struct Pair: Sendable, Hashable {
        public var certificatePath: String
        public var keyPath: String
    }

    /// The folder of every file.
    public let directory: String
    /// The CA certificate: what a verifying client trusts (`curl --cacert`, nginx `ssl_client_certificate`).
    public let caCertificatePath: String
    /// Valid now, for `DNS:localhost` and `IP:127.0.0.1`.
    public let server: Pair
    /// For `DNS:localhost` and `IP:127.0.0.1`, but valid only in 2020 (expired).
    public let expiredServer: Pair
    /// Valid now, for `DNS:wrong.example` only.
    public let wrongHostServer: Pair
    /// A client certificate (`CN=multiplexer-test-client`, `clientAuth`) for mTLS.
    public let client: Pair

    /// Makes the authority and its certificates (a few `openssl` runs, well under a second).
    ///
    /// - Throws: ``Failure`` if openssl fails or is missing, or the expired certificate is not expired.
    public init() throws {
        let dir = NSTemporaryDirectory() + "mux-ca-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/issued", withIntermediateDirectories: true)
        self.directory = dir
        self.caCertificatePath = dir + "/ca.crt"
        func pair(_ name: String) -> Pair { Pair(certificatePath: "\(dir)/\(name).crt", keyPath: "\(dir)/\(name).key") }
        self.server = pair("server")
        self.expiredServer = pair("expired")
        self.wrongHostServer = pair("wrong-host")
        self.client = pair("client")
        do {
            try Self.make(in: dir)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// Whether the certificate at `path` has expired (`openssl x509 -checkend 0`).
    public static func isExpired(_ path: String) throws -> Bool {
        let r = try RedisCLI.runWithStatus(tool: "openssl", ["x509", "-checkend", "0", "-noout", "-in", path], timeout: .seconds(20))
        return r.status != 0
    }

    private static func make(in dir: String) throws {
        // `openssl ca` signs with dates of our choosing (`-startdate`/`-enddate`), which `openssl x509 -req` on
        // OpenSSL 3.0 cannot; a minimal configuration is enough.
        let config = """
            [ ca ]
            default_ca = test_ca

            [ test_ca ]
            database = \(dir)/index.txt
            new_certs_dir = \(dir)/issued
            certificate = \(dir)/ca.crt
            private_key = \(dir)/ca.key
            serial = \(dir)/serial
            default_md = sha256
            default_days = 30
            policy = any_name
            unique_subject = no
            copy_extensions = none

            [ any_name ]
            commonName = supplied

            [ server_localhost ]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = DNS:localhost, IP:127.0.0.1

            [ server_wrong_host ]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = DNS:wrong.example

            [ client ]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = clientAuth

            """
        try config.write(toFile: dir + "/ca.cnf", atomically: true, encoding: .utf8)
        try "".write(toFile: dir + "/index.txt", atomically: true, encoding: .utf8)
        try "1000\n".write(toFile: dir + "/serial", atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try openssl(
            ["req", "-x509"] + ec + [
                "-keyout", dir + "/ca.key", "-out", dir + "/ca.crt", "-days", "30", "-subj", "/CN=Multiplexer Test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        // The CA's own validity starts now, so it can sign the expired certificate's past dates only through
        // `openssl ca` (which does not check them); a verifier then rejects that leaf for its dates alone.
        let leaves: [(name: String, cn: String, extensions: String, dates: [String])] = [
            ("server", "localhost", "server_localhost", ["-days", "30"]),
            ("expired", "localhost", "server_localhost", ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]),
            ("wrong-host", "wrong.example", "server_wrong_host", ["-days", "30"]),
            ("client", "multiplexer-test-client", "client", ["-days", "30"]),
        ]
        for leaf in leaves {
            try openssl(["req", "-new"] + ec + ["-keyout", "\(dir)/\(leaf.name).key", "-out", "\(dir)/\(leaf.name).csr", "-subj", "/CN=\(leaf.cn)"])
            try openssl(
                [
                    "ca", "-batch", "-notext", "-config", dir + "/ca.cnf", "-extensions", leaf.extensions, "-in", "\(dir)/\(leaf.name).csr",
                    "-out", "\(dir)/\(leaf.name).crt",
                ] + leaf.dates)
        }
        guard try isExpired(dir + "/expired.crt") else { throw Failure.notExpired(dir + "/expired.crt") }
    }

    private static func openssl(_ args: [String]) throws {
        let r = try RedisCLI.runWithStatus(tool: "openssl", args, timeout: .seconds(20))
        guard r.status == 0 else { throw Failure.openssl(command: (["openssl"] + args).joined(separator: " "), output: r.output) }
    }
}
