import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerProcesses
import MultiplexerTestSupport
import MultiplexerUpstream
import Testing

/// The dashboard in a real headless browser (Chromium through chromedriver), against a real node over Redis
/// with traffic: it asks for the key, shows every provider with its windows, reflects a cooldown set
/// through the admin API within ~3 s, and loads nothing from anywhere but the gateway.
@Suite("Dashboard in a browser (fleet)")
struct DashboardBrowserFleetTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func theDashboardShowsTheFleetLive() async throws {
        var plan = fleetPlan(
            [
                .init(name: "alpha", limits: .init(rpm: 40, tpm: 20_000), weight: 3, latency: .milliseconds(30)),
                .init(name: "beta", limits: .init(rpm: 30, maxConcurrent: 4), weight: 1, latency: .milliseconds(40)),
                .init(name: "gamma", limits: .init(rpm: 20), tier: .fallback, latency: .milliseconds(30)),
            ], nodes: 1)
        plan.nginx = false
        try await LocalFleet.run(plan) { [plan] fleet in
            let node = fleet.nodes[0].url
            // Traffic, so that the windows show use (the primaries are driven to their limits, the fallback takes the rest).
            _ = await LoadGenerator(client: fleet.client, targets: [node], model: plan.model).run(total: 85, concurrency: 4)
            let browser = try await Browser(client: fleet.client, directory: fleet.directory)
            do {
                try await browser.open(node + "/dashboard")
                #expect(try await browser.eventually("return !!document.querySelector('#key') && document.querySelector('#app').classList.contains('hidden')"), "it asks for the key")
                try await browser.type(plan.adminKey, into: "#key")
                try await browser.click("#connect")
                #expect(
                    try await browser.eventually("return document.querySelectorAll('[data-provider]').length === 3"),
                    "every provider is shown")
                #expect(try await browser.run("return sessionStorage.getItem('multiplexer.adminKey')") == .string(plan.adminKey), "the key is kept in the tab")
                #expect(try await browser.run("return location.href.indexOf('\(plan.adminKey)') < 0 && localStorage.length === 0") == .bool(true), "never in a URL or local storage")
                #expect(
                    try await browser.eventually("return document.querySelector('[data-provider=\"alpha\"] .bar[data-ratio]') !== null && parseFloat(document.querySelector('[data-provider=\"alpha\"] .bar').dataset.ratio) > 0.5"),
                    "alpha's request window shows its use against its limit")
                // A cooldown set through the admin API shows within ~3 s, with its reason.
                #expect(await fleet.adminCooldown("beta", seconds: 120, node: 0) == 200)
                let t0 = ContinuousClock.now
                #expect(
                    try await browser.eventually("return document.querySelector('[data-provider=\"beta\"] [data-cooldown=\"manual\"]') !== null", timeout: .seconds(3)),
                    "the cooldown is on the page within 3 s")
                print("dashboard: cooldown shown \(t0.duration(to: .now)) after it was set")
                // Nothing was loaded from anywhere but the gateway.
                let foreign = try await browser.run("return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin))")
                #expect(foreign == .array([]), "requests outside the gateway: \(foreign.jsonText)")
                #expect(try await browser.run("return document.querySelectorAll('script[src], link[href], img[src]').length") == .number(0))
                try await Task.sleep(for: .milliseconds(1700))  // one more refresh: the request rate column fills in
                let png = try await browser.screenshot()
                #expect(png.count > 20_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "a real screenshot")
                try png.write(to: URL(fileURLWithPath: fleet.directory + "/dashboard.png"))
                if ProcessInfo.processInfo.environment["MULTIPLEXER_WRITE_DASHBOARD_SCREENSHOT"] != nil {
                    try png.write(to: Self.packageRoot.appendingPathComponent("docs/dashboard.png"))
                }
                // A wrong key is refused and the page asks again.
                _ = try await browser.run("sessionStorage.setItem('multiplexer.adminKey', 'wrong'); return true")
                #expect(try await browser.eventually("return !document.querySelector('#login').classList.contains('hidden')"), "a refused key brings the login back")
            } catch {
                await browser.close()
                throw error
            }
            await browser.close()
        }
    }
}
