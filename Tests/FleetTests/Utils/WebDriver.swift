import Foundation
import MultiplexerCore
import MultiplexerProcesses
import MultiplexerTestSupport
import MultiplexerUpstream

/// A real headless browser (Debian's `chromium`, driven through `chromedriver`'s W3C WebDriver API over
/// HTTP) for the dashboard's tests.
final class Browser: Sendable {
    enum Failure: Error, CustomStringConvertible {
        case unavailable(String)
        case webDriver(String)
        var description: String {
            switch self {
            case .unavailable(let s): "no browser: \(s)"
            case .webDriver(let s): "WebDriver: \(s)"
            }
        }
    }

    let driver: ManagedProcess
    let base: String
    let session: String
    let client: CurlClient

    /// Starts `chromedriver` and a headless Chromium session.
    init(client: CurlClient, directory: String, width: Int = 1440, height: Int = 1000) async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver"), FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else {
            throw Failure.unavailable("install chromium and chromium-driver (scripts/install-deps.sh does)")
        }
        let port = LocalPorts.free()
        self.driver = try ManagedProcess(
            name: "chromedriver", executable: "/usr/bin/chromedriver", arguments: ["--port=\(port)"], logPath: directory + "/chromedriver.log")
        self.base = "http://127.0.0.1:\(port)"
        self.client = client
        let deadline = ContinuousClock.now + .seconds(15)
        while (try? await client.execute(.init(method: "GET", url: self.base + "/status", timeouts: .init(connect: .seconds(1), response: .seconds(2)))))?.status != 200 {
            guard ContinuousClock.now < deadline else {
                self.driver.stop(signal: SIGKILL)
                throw Failure.unavailable("chromedriver did not start")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let caps = """
            {"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{"binary":"/usr/bin/chromium",\
            "args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--no-first-run","--no-proxy-server",\
            "--window-size=\(width),\(height)","--user-data-dir=\(directory)/chromium-profile"]}}}}
            """
        let r = try await Self.call(client, "POST", self.base + "/session", body: caps)
        guard let id = r["sessionId"]?.stringValue else {
            self.driver.stop(signal: SIGKILL)
            throw Failure.webDriver("no session: \(r.jsonText)")
        }
        self.session = id
    }

    static func call(_ client: CurlClient, _ method: String, _ url: String, body: String? = nil) async throws -> JSONValue {
        var h = UpstreamHeaders()
        h.add(name: "content-type", value: "application/json")
        let r = try await client.execute(
            UpstreamHTTPRequest(method: method, url: url, headers: h, body: Array((body ?? (method == "POST" ? "{}" : "")).utf8), timeouts: .init(connect: .seconds(2), response: .seconds(60))))
        let v = try JSONParser.parse(r.body).value
        if let e = v["value"]?["error"]?.stringValue { throw Failure.webDriver("\(e): \(v["value"]?["message"]?.stringValue ?? "")") }
        return v["value"] ?? .null
    }

    private func call(_ method: String, _ path: String, _ body: String? = nil) async throws -> JSONValue {
        try await Self.call(self.client, method, self.base + "/session/\(self.session)" + path, body: body)
    }

    func open(_ url: String) async throws {
        _ = try await self.call("POST", "/url", JSONValue.object(["url": .string(url)]).jsonText)
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    func run(_ script: String) async throws -> JSONValue {
        try await self.call("POST", "/execute/sync", JSONValue.object(["script": .string(script), "args": .array([])]).jsonText)
    }

    /// The id of the first element matching `css`.
    func element(_ css: String) async throws -> String {
        let v = try await self.call("POST", "/element", JSONValue.object(["using": .string("css selector"), "value": .string(css)]).jsonText)
        guard case .object(let o) = v, let id = o.values.first?.stringValue else { throw Failure.webDriver("no element \(css)") }
        return id
    }

    func type(_ text: String, into css: String) async throws {
        let id = try await self.element(css)
        _ = try await self.call("POST", "/element/\(id)/value", JSONValue.object(["text": .string(text)]).jsonText)
    }

    func click(_ css: String) async throws {
        let id = try await self.element(css)
        _ = try await self.call("POST", "/element/\(id)/click")
    }

    /// A PNG of the viewport.
    func screenshot() async throws -> Data {
        guard let b64 = try await self.call("GET", "/screenshot").stringValue, let data = Data(base64Encoded: b64) else { throw Failure.webDriver("no screenshot") }
        return data
    }

    /// Polls `script` until it returns `true` or `timeout` passes; whether it did.
    func eventually(_ script: String, timeout: Duration = .seconds(5)) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        repeat {
            if try await self.run(script) == .bool(true) { return true }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline
        return false
    }

    func close() async {
        _ = try? await self.call("DELETE", "")
        self.driver.stop()
    }
}
