import HTTPTypes
import Hummingbird
public import MultiplexerCore
import MultiplexerRedis
import MultiplexerUpstream
import NIOCore
import Prometheus

/// `/healthz`, `/readyz`, `/metrics` and the admin routes.
struct AdminController: Sendable {
    let gateway: Gateway

    func addRoutes(to router: Hummingbird.Router<GatewayRequestContext>) {
        router.get("/healthz") { _, _ in
            OpenAIController.json(status: .ok, "{\"status\":\"ok\"}", requestID: self.gateway.nextRequestID())
        }
        router.get("/readyz") { _, _ in
            let id = self.gateway.nextRequestID()
            guard let r = self.gateway.readiness else {
                let why = self.gateway.state.current == .draining ? "draining" : (self.gateway.state.current == .starting ? "starting" : "unavailable")
                return OpenAIController.json(status: .serviceUnavailable, "{\"status\":\"\(why)\"}", requestID: id)
            }
            return OpenAIController.json(status: .ok, "{\"status\":\"\(r)\"}", requestID: id)
        }
        router.get("/metrics") { _, _ in
            self.gateway.metrics.storeAvailable.set(self.gateway.redisStore.map { $0.availability == .connected ? 1.0 : 0.0 } ?? 1.0)
            self.gateway.metrics.upstreamPool(self.gateway.transport.client.statistics)
            var h = HTTPFields()
            h[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: self.gateway.metrics.registry.emitToBuffer())))
        }
        router.get("/admin/stats") { request, _ in
            await self.admin(request) { id in
                let stats = try await self.gateway.store.stats(
                    StatsQuery(
                        providers: self.gateway.configuration.providers.map(\.name), keys: self.gateway.configuration.keys.map(\.name),
                        models: self.gateway.table.groups.map(\.name)))
                return OpenAIController.json(status: .ok, StatsJSON.render(stats, node: self.gateway.nodeID, store: self.storeState), requestID: id)
            }
        }
        router.post("/admin/providers/:name/cooldown") { request, context in
            await self.admin(request) { id in
                guard let name = context.parameters.get("name"), self.gateway.table.providers[name] != nil else {
                    return OpenAIController.error(OpenAIError(status: 404, message: "Unknown provider.", type: "invalid_request_error", code: "not_found"), requestID: id)
                }
                var req = request
                let body = try? await req.collectBody(upTo: 4096)
                guard let body, let doc = try? JSONParser.parse(Array(body.readableBytesView)), case .number(let seconds)? = doc.value["seconds"],
                    seconds > 0, seconds <= 86_400
                else {
                    return OpenAIController.error(.invalidRequest("Send {\"seconds\": N} with 0 < N ≤ 86400.", param: "seconds"), requestID: id)
                }
                let remaining = try await self.gateway.store.setCooldown(provider: name, for: .milliseconds(Int64(seconds * 1000)), reason: .manual)
                self.gateway.metrics.cooldown(provider: name, reason: "manual")
                return OpenAIController.json(
                    status: .ok, "{\"provider\":\"\(name)\",\"cooldown_ms\":\(remaining.millisecondsRoundedUp)}", requestID: id)
            }
        }
        router.delete("/admin/providers/:name/cooldown") { request, context in
            await self.admin(request) { id in
                guard let name = context.parameters.get("name"), self.gateway.table.providers[name] != nil else {
                    return OpenAIController.error(OpenAIError(status: 404, message: "Unknown provider.", type: "invalid_request_error", code: "not_found"), requestID: id)
                }
                try await self.gateway.store.clearCooldown(provider: name)
                return OpenAIController.json(status: .ok, "{\"provider\":\"\(name)\",\"cooldown_ms\":0}", requestID: id)
            }
        }
    }

    var storeState: String {
        guard let r = self.gateway.redisStore else { return "memory" }
        return r.availability.rawValue
    }

    /// Runs `body` for a request bearing the admin key; 404 when no admin key is configured.
    private func admin(_ request: Request, _ body: (String) async throws -> Response) async -> Response {
        let id = self.gateway.nextRequestID()
        guard let adminKey = self.gateway.configuration.adminKey else {
            return OpenAIController.error(OpenAIError(status: 404, message: "The admin API is off (no admin_key configured).", type: "invalid_request_error", code: "not_found"), requestID: id)
        }
        let presented = KeyAuthenticator.presentedKey(authorization: request.headers[.authorization], apiKey: request.headers[HTTPField.Name("api-key")!])
        guard let presented, KeyAuthenticator.constantTimeEquals(SHA256.hex(Array(presented.utf8)), SHA256.hex(Array(adminKey.utf8))) else {
            return OpenAIController.error(.invalidAPIKey(), requestID: id)
        }
        do {
            return try await body(id)
        } catch {
            return OpenAIController.error(.upstream(status: 503, "The quota store is unavailable.", code: "service_unavailable"), requestID: id)
        }
    }
}

/// `/admin/stats` and `multiplexer stats --json`: the fleet snapshot as JSON.
public enum StatsJSON {
    public static func render(_ s: FleetStats, node: String?, store: String) -> String {
        func usage(_ u: UsageCounters) -> String {
            "{" + UsageCounters.fieldNames.map { "\"\($0)\":\(u[$0])" }.joined(separator: ",") + "}"
        }
        func window(_ w: WindowUse) -> String {
            "{\"rpm\":\(w.rpm),\"rpd\":\(w.rpd),\"tpm\":\(w.tpm),\"tpd\":\(w.tpd),\"in_flight\":\(w.inFlight)}"
        }
        func str(_ x: String) -> String {
            var o = ""
            JSONValue.writeString(x, into: &o)
            return o
        }
        let providers = s.providers.map { p in
            "{\"name\":\(str(p.name)),\"usage\":\(usage(p.usage)),\"window\":\(window(p.window)),\"cooldown_ms\":\(p.cooldownRemaining.map { String($0.millisecondsRoundedUp) } ?? "null"),\"cooldown_reason\":\(p.cooldownReason.map { str($0.rawValue) } ?? "null"),\"disabled\":\(p.disabled),\"consecutive_failures\":\(p.consecutiveFailures)}"
        }
        let keys = s.keys.map { "{\"name\":\(str($0.name)),\"usage\":\(usage($0.usage)),\"window\":\(window($0.window))}" }
        let models = s.models.map { "{\"name\":\(str($0.name)),\"requests\":\($0.counters.requests),\"fallbacks\":\($0.counters.fallbacks),\"exhausted\":\($0.counters.exhausted),\"continued\":\($0.counters.continued)}" }
        let nodes = s.nodes.map { "{\"id\":\(str($0.id)),\"last_seen_ms\":\($0.lastSeen.millisecondsRoundedUp)}" }
        return "{\"node\":\(node.map(str) ?? "null"),\"store\":\(str(store)),\"providers\":[\(providers.joined(separator: ","))],\"keys\":[\(keys.joined(separator: ","))],\"models\":[\(models.joined(separator: ","))],\"nodes\":[\(nodes.joined(separator: ","))]}"
    }
}
