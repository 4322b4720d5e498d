import Foundation
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// nginx in front of the mock: HTTPS with a certificate from the test CA, HTTP/2, mTLS, SSE passed through unbuffered.
@Suite("TLS front proxy", .serialized)
struct TLSFrontProxyTests {
    /// The mock behind a TLS front configured by `configure`.
    static func with(
        _ configure: @escaping @Sendable (inout TLSFrontProxy.Configuration) -> Void = { _ in },
        mock: (inout MockProvider.Configuration) -> Void = { _ in },
        _ body: @Sendable (TLSFrontProxy, TestCertificateAuthority, MockFixture) async throws -> Void
    ) async throws {
        let ca = try await offCooperativePool { try TestCertificateAuthority() }
        try await MockFixture.with(mock) { f in
            let proxy = try await offCooperativePool { () throws -> TLSFrontProxy in
                var c = TLSFrontProxy.Configuration(upstreamPort: f.port)
                configure(&c)
                return try TLSFrontProxy(c, authority: ca)
            }
            do {
                try await body(proxy, ca, f)
            } catch {
                await Self.stop(proxy)
                throw error
            }
            await Self.stop(proxy)
        }
    }

    static func stop(_ proxy: TLSFrontProxy) async {
        await offCooperativePool { proxy.stop() }
    }

    @Test func theCertificateAuthorityMakesWhatItSays() async throws {
        var dir = ""
        do {
            // openssl runs take a while on a busy machine: not on the cooperative pool, which serves the mocks.
            let ca = try await offCooperativePool { try TestCertificateAuthority() }
            dir = ca.directory
            #expect(try TestCertificateAuthority.isExpired(ca.expiredServer.certificatePath))
            #expect(try !TestCertificateAuthority.isExpired(ca.server.certificatePath))
            let text = try RedisCLI.run(tool: "openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", ca.wrongHostServer.certificatePath], timeout: .seconds(10))
            #expect(text.contains("DNS:wrong.example") && !text.contains("localhost"))
            for pair in [ca.server, ca.expiredServer, ca.wrongHostServer, ca.client] {
                #expect(FileManager.default.fileExists(atPath: pair.keyPath))
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir), "the folder goes with the authority")
    }

    @Test func aVerifyingClientGetsA200OverHTTP2AndEachConnectionIsLogged() async throws {
        try await Self.with { proxy, ca, f in
            let url = proxy.url + "/v1/chat/completions"
            // Two requests on one connection, then one on a second connection.
            let a = try await Curl.run(
                ["--http2", "--cacert", ca.caCertificatePath, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{http_version}\n", "-d", Curl.chat(), url, url])
            let b = try await Curl.run(["--http2", "--cacert", ca.caCertificatePath, "-o", "/dev/null", "-w", "%{http_code} %{http_version}\n", "-d", Curl.chat(), url])
            #expect(a.exitCode == 0 && b.exitCode == 0, "\(a.output) \(b.output)")
            #expect(a.output == "200 2\n200 2\n")
            #expect(f.state.counters.served == 3)
            let log = await Self.accessLog(proxy, count: 3)
            #expect(log.count == 3)
            #expect(log.allSatisfy { $0.serverProtocol == "HTTP/2.0" && $0.status == 200 && $0.path == "/v1/chat/completions" })
            #expect(Set(log.map(\.connection)).count == 2, "two client connections")
            #expect(log.map(\.connectionRequests).sorted() == [1, 1, 2])
            // What the mock saw came through nginx over HTTP/1.1 with the client's headers.
            #expect(f.state.recentRequests().last?["host"] == "localhost")
        }
    }

    @Test func aStreamTricklesThroughUnbuffered() async throws {
        try await Self.with(mock: {
            $0.streamChunks = 40
            $0.tokenInterval = .milliseconds(50)
        }) { proxy, ca, _ in
            // 40 × 50 ms = 2 s of stream; curl gives up after 1 s with what came through by then.
            let r = try await Curl.run(["--http2", "-N", "--max-time", "1", "--cacert", ca.caCertificatePath, "-d", Curl.chat(stream: true), proxy.url + "/v1/chat/completions"])
            #expect(r.exitCode == 28)
            let events = r.output.components(separatedBy: "data: {").count - 1
            #expect((5...30).contains(events), "\(events) events within a second")
        }
    }

    @Test(arguments: [TLSFrontProxy.ServerCertificate.expired, .wrongHost])
    func aVerifyingClientRefusesABadCertificate(_ certificate: TLSFrontProxy.ServerCertificate) async throws {
        try await Self.with({ $0.certificate = certificate }) { proxy, ca, f in
            let r = try await Curl.run(["--http2", "--cacert", ca.caCertificatePath, "-d", Curl.chat(), proxy.url + "/v1/chat/completions"])
            #expect(r.exitCode == 60, "\(r.output)")
            #expect(r.output.contains(certificate == .expired ? "expired" : "subject name"), "\(r.output)")
            #expect(f.state.counters.requests == 0)
            // The same server is reachable once verification is off: only the certificate is at fault.
            let insecure = try await Curl.run(["--http2", "-k", "-o", "/dev/null", "-w", "%{http_code}", "-d", Curl.chat(), proxy.url + "/v1/chat/completions"])
            #expect(insecure.output == "200")
        }
    }

    @Test func mutualTLSRefusesAClientWithoutACertificateAndAcceptsOneWithIt() async throws {
        try await Self.with({ $0.requiresClientCertificate = true }) { proxy, ca, f in
            let url = proxy.url + "/v1/chat/completions"
            let without = try await Curl.run(["--http2", "--cacert", ca.caCertificatePath, "-o", "/dev/null", "-w", "%{http_code}", "-d", Curl.chat(), url])
            #expect(without.output == "400", "nginx: no required SSL certificate was sent")
            #expect(f.state.counters.requests == 0)
            let with = try await Curl.run(
                [
                    "--http2", "--cacert", ca.caCertificatePath, "--cert", ca.client.certificatePath, "--key", ca.client.keyPath, "-o", "/dev/null", "-w",
                    "%{http_code}", "-d", Curl.chat(), url,
                ])
            #expect(with.output == "200", "\(with.output)")
            #expect(f.state.counters.served == 1)
        }
    }

    /// The access log once it has `count` lines (nginx writes a line when its request ends).
    static func accessLog(_ proxy: TLSFrontProxy, count: Int) async -> [TLSFrontProxy.Entry] {
        _ = await eventually { proxy.accessLog().count >= count }
        return proxy.accessLog()
    }
}
