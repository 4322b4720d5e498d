import Foundation

/// nginx from the system as an HTTPS and HTTP/2 front for a plain-HTTP upstream on loopback (the mock provider),
/// the way a real provider is reached: TLS with a certificate from a ``TestCertificateAuthority``, HTTP/2 (and
/// HTTP/1.1) to the client, HTTP/1.1 with keep-alive to the upstream, nothing buffered either way (an SSE stream
/// trickles through as it comes), long timeouts.
///
/// Its access log records, per request, the client connection's serial number, the request's number on that
/// connection, the protocol and the status (``accessLog()``), so a test can count the distinct connections a
/// client opened and see which protocol it spoke.
public final class TLSFrontProxy: Sendable {
    /// Which of the authority's server certificates nginx presents.
    public enum ServerCertificate: String, Sendable, CaseIterable {
        /// Valid, for `localhost` and `127.0.0.1`.
        case valid
        /// Expired.
        case expired
        /// For `wrong.example` only.
        case wrongHost
    }

    /// One line of the access log.
    public struct Entry: Sendable, Hashable {
        /// nginx's serial number of the client connection (`$connection`).
        public var connection: Int
        /// The request's number on its connection, from 1 (`$connection_requests`).
        public var connectionRequests: Int
        /// `HTTP/2.0`, `HTTP/1.1`, … (`$server_protocol`).
        public var serverProtocol: String
        public var status: Int
        /// The request line's path.
        public var path: String
    }

    /// What to start.
    public struct Configuration: Sendable {
        /// The plain-HTTP upstream on 127.0.0.1.
        public var upstreamPort: Int
        public var certificate: ServerCertificate
        /// Require a client certificate signed by the authority (`ssl_verify_client on`).
        public var requiresClientCertificate: Bool
        /// `http2_max_concurrent_streams`.
        public var maxConcurrentStreams: Int
        /// The listening port (default: a free one).
        public var port: Int?

        public init(
            upstreamPort: Int, certificate: ServerCertificate = .valid, requiresClientCertificate: Bool = false, maxConcurrentStreams: Int = 128,
            port: Int? = nil
        ) {
            self.upstreamPort = upstreamPort
            self.certificate = certificate
            self.requiresClientCertificate = requiresClientCertificate
            self.maxConcurrentStreams = maxConcurrentStreams
            self.port = port
        }
    }

    public let configuration: Configuration
    /// The port clients use.
    public let port: Int
    /// Configuration, logs, pid and temp folders (removed when the proxy is released).
    public let directory: String
    let nginx: NginxProcess

    /// Writes the configuration and starts nginx; returns once it accepts connections.
    ///
    /// - Parameters:
    ///   - configuration: the upstream, the certificate, mTLS, HTTP/2 streams.
    ///   - authority: the certificates (it must outlive the proxy's start; nginx reads them then).
    public init(_ configuration: Configuration, authority: TestCertificateAuthority) throws {
        self.configuration = configuration
        self.port = configuration.port ?? LocalPorts.free()
        let dir = NSTemporaryDirectory() + "mux-tls-\(self.port)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        self.directory = dir
        let pair: TestCertificateAuthority.Pair =
            switch configuration.certificate {
            case .valid: authority.server
            case .expired: authority.expiredServer
            case .wrongHost: authority.wrongHostServer
            }
        do {
            self.nginx = try NginxProcess(
                configuration: Self.configuration(configuration, listenPort: self.port, certificate: pair, caPath: authority.caCertificatePath, directory: dir),
                port: self.port, directory: dir)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    /// `https://localhost:<port>` (the name the valid certificate holds; `127.0.0.1` is in it too).
    public var url: String { "https://localhost:\(self.port)" }

    /// The process id of nginx.
    public var pid: Int32 { self.nginx.pid }

    public var accessLogPath: String { self.directory + "/access.log" }

    /// The access log so far (nginx writes each line when its request ends).
    public func accessLog() -> [Entry] {
        guard let text = try? String(contentsOfFile: self.accessLogPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 5, let c = Int(f[0]), let n = Int(f[1]), let s = Int(f[3]) else { return nil }
            return Entry(connection: c, connectionRequests: n, serverProtocol: String(f[2]), status: s, path: String(f[4]))
        }
    }

    /// Stops nginx (SIGTERM) and waits for it to exit.
    public func stop() {
        self.nginx.stop()
    }

    deinit {
        self.nginx.stop()
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// The nginx configuration (Debian 12's nginx 1.22: `listen … ssl http2`).
    static func configuration(
        _ c: Configuration, listenPort: Int, certificate: TestCertificateAuthority.Pair, caPath: String, directory: String
    ) -> String {
        let mtls = c.requiresClientCertificate ? "ssl_verify_client on;\n        ssl_client_certificate \(caPath);\n        ssl_verify_depth 2;" : ""
        return """
            # Generated by MultiplexerTestSupport.TLSFrontProxy.
            \(NginxProcess.mainContext(directory: directory))

            http {
                log_format front '$connection $connection_requests $server_protocol $status $uri';
                access_log \(directory)/access.log front;
                \(NginxProcess.httpTempPaths(directory: directory))
                client_max_body_size 64m;

                upstream provider {
                    server 127.0.0.1:\(c.upstreamPort);
                    keepalive 64;
                }

                server {
                    listen 127.0.0.1:\(listenPort) ssl http2;
                    ssl_certificate \(certificate.certificatePath);
                    ssl_certificate_key \(certificate.keyPath);
                    ssl_protocols TLSv1.2 TLSv1.3;
                    \(mtls)
                    http2_max_concurrent_streams \(c.maxConcurrentStreams);
                    keepalive_timeout 300s;
                    keepalive_requests 100000;

                    location / {
                        proxy_pass http://provider;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header Host $host;
                        proxy_buffering off;
                        proxy_request_buffering off;
                        proxy_cache off;
                        proxy_connect_timeout 5s;
                        proxy_send_timeout 3600s;
                        proxy_read_timeout 3600s;
                    }
                }
            }

            """
    }
}
