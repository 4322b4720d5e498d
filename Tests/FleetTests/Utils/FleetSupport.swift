import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerUpstream
import Testing

/// A plan of `nodes` gateways over Redis behind nginx.
func fleetPlan(_ providers: [FleetPlan.Provider], nodes: Int = 3, groupSettings: [String] = []) -> FleetPlan {
    var plan = FleetPlan(providers: providers)
    plan.nodes = nodes
    plan.redis = true
    plan.nginx = true
    plan.namespace = "fleet\(UInt16.random(in: 0...UInt16.max))"
    plan.groupSettings = groupSettings
    return plan
}

extension LocalFleet {
    /// Sends one chat request to `url` (a node or the balancer).
    func chat(_ url: String, index: Int = 0) async -> (status: Int, provider: String?)? {
        guard let r = await self.http.post(url + "/v1/chat/completions", json: LoadGenerator.bodyText(model: self.plan.model, index: index)) else { return nil }
        return (r.status, r.headers["x-multiplexer-provider"])
    }

    /// `POST /admin/providers/<name>/cooldown` on node `node`.
    func adminCooldown(_ provider: String, seconds: Int, node: Int) async -> Int? {
        await self.http.post(
            self.nodes[node].url + "/admin/providers/\(provider)/cooldown", json: "{\"seconds\": \(seconds)}",
            headers: ["Authorization": "Bearer \(self.plan.adminKey)"])?.status
    }

    /// A Redis integer reply (`PTTL`, `ZCARD`, …) through `redis-cli`.
    func redisInteger(_ args: [String]) async throws -> Int {
        let out = try await self.redisCLI(args)
        let digits = out.filter { $0 == "-" || $0.isNumber }
        return try #require(Int(digits), "redis-cli \(args) answered \(out)")
    }

    /// Every mock's overshoot must be 0: no provider ever saw a request beyond its limit.
    func expectNoOvershoot(sourceLocation: SourceLocation = #_sourceLocation) {
        for (name, c) in self.mockCounters() {
            #expect(c.overshoot == 0, "\(name) answered \(c.overshoot) overshoot 429s", sourceLocation: sourceLocation)
        }
    }

    /// Polls `condition` every 100 ms until it holds or `timeout` passes; whether it held.
    func eventually(within timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        repeat {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline
        return try await condition()
    }
}

extension [LoadGenerator.Result] {
    /// Count per status.
    var statuses: [Int: Int] { Dictionary(grouping: self, by: \.status).mapValues(\.count) }
    /// Count per serving provider (200s only).
    var providers: [String: Int] { Dictionary(grouping: self.filter { $0.status == 200 }, by: { $0.provider ?? "?" }).mapValues(\.count) }
}

extension Duration {
    var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}

extension String {
    /// The integers of a `redis-cli --no-raw` multi-bulk reply (`1) "17"`, `2) "42"`).
    var quotedIntegers: [Int64] {
        self.split(separator: "\n").compactMap { line in line.split(separator: "\"").dropFirst().first.flatMap { Int64($0) } }
    }
}
