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
            // Window use, fleet-wide: one read of the store per scrape (kept as last read when it fails).
            let providers = self.gateway.configuration.providers.filter { $0.limits != .unlimited }
            if !providers.isEmpty, let stats = try? await self.gateway.store.stats(StatsQuery(providers: providers.map(\.name), keys: [], models: [])) {
                self.gateway.metrics.windowUse(stats, providers: providers)
            }
            var h = HTTPFields()
            h[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: self.gateway.metrics.registry.emitToBuffer())))
        }
        router.get("/admin/stats") { request, _ in
            await self.admin(request) { id in
                let stats = try await self.gateway.store.stats(
                    StatsQuery(
                        providers: self.gateway.configuration.providers.map(\.name),
                        keys: self.gateway.configuration.keys.map(\.name) + self.gateway.runtimeKeys.all.map(\.name),
                        models: self.gateway.table.groups.map(\.name)))
                var json = StatsJSON.render(stats, node: self.gateway.nodeID, store: self.storeState)
                json.removeLast()
                json += ",\"generation\":\(self.gateway.snapshot.generation),\"config\":\(self.configJSON),\"recent_errors\":\(self.gateway.recentErrors.json)}"
                return OpenAIController.json(status: .ok, json, requestID: id)
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

    /// `POST /admin/reload`, `/admin/keys` and `/dashboard`.
    func addOperatorRoutes(to router: Hummingbird.Router<GatewayRequestContext>) {
        router.post("/admin/reload") { request, _ in
            await self.admin(request) { id in
                let r = self.gateway.reload()
                guard r.applied else {
                    var out = "{\"error\":{\"message\":"
                    JSONValue.writeString("The configuration was not reloaded: \(r.errors.count) error\(r.errors.count == 1 ? "" : "s"); the running one stays.", into: &out)
                    out += ",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_configuration\"},\"errors\":["
                    out += r.errors.map { e in
                        var o = "{\"path\":"
                        JSONValue.writeString(e.path, into: &o)
                        o += ",\"line\":\(e.line.map(String.init) ?? "null"),\"message\":"
                        JSONValue.writeString(e.message, into: &o)
                        return o + "}"
                    }.joined(separator: ",")
                    out += "]}"
                    return OpenAIController.json(status: .badRequest, out, requestID: id)
                }
                let list = { (xs: [String]) in JSONValue.array(xs.map(JSONValue.string)).jsonText }
                return OpenAIController.json(
                    status: .ok,
                    "{\"status\":\"reloaded\",\"generation\":\(r.generation),\"changes\":\(list(r.changes)),\"restart_required\":\(list(r.restartRequired))}",
                    requestID: id)
            }
        }
        router.get("/admin/keys") { request, _ in
            await self.admin(request) { id in
                let file = self.gateway.configuration.keys.map { k -> String in
                    var o = "{\"name\":"
                    JSONValue.writeString(k.name, into: &o)
                    return o + ",\"source\":\"file\"}"
                }
                let runtime = self.gateway.runtimeKeys.all.map(\.json)
                return OpenAIController.json(status: .ok, "{\"keys\":[\((runtime + file).joined(separator: ","))]}", requestID: id)
            }
        }
        router.post("/admin/keys") { request, _ in
            await self.admin(request) { id in
                var req = request
                guard let body = try? await req.collectBody(upTo: 64 << 10), let doc = try? JSONParser.parse(Array(body.readableBytesView), rejectingDuplicateKeys: true),
                    case .object(let o) = doc.value
                else { return OpenAIController.error(.invalidRequest("Send a JSON object: {\"name\": …, \"limits\": {…}, \"budget\": {…}, \"models\": […]}.", param: nil), requestID: id) }
                func bad(_ m: String, _ p: String) -> Response { OpenAIController.error(.invalidRequest(m, param: p), requestID: id) }
                if let unknown = o.keys.sorted().first(where: { !["name", "limits", "budget", "models"].contains($0) }) { return bad("Unknown member '\(unknown)'.", unknown) }
                guard case .string(let name)? = o["name"] else { return bad("'name' is required (a string).", "name") }
                var limits = KeyLimits()
                if let l = o["limits"], l != .null {
                    guard case .object(let lo) = l else { return bad("'limits' must be an object.", "limits") }
                    for (k, v) in lo {
                        guard let n = v.intValue, n >= 0 else { return bad("'limits.\(k)' must be a non-negative integer.", "limits.\(k)") }
                        switch k {
                        case "rpm": limits.rpm = n
                        case "tpm": limits.tpm = n
                        default: return bad("Unknown limit '\(k)' (rpm, tpm).", "limits.\(k)")
                        }
                    }
                }
                var daily: Double?, monthly: Double?
                if let b = o["budget"], b != .null {
                    guard case .object(let bo) = b else { return bad("'budget' must be an object.", "budget") }
                    for (k, v) in bo {
                        guard case .number(let x) = v, x >= 0, x < 1e9 else { return bad("'budget.\(k)' must be a non-negative number of USD.", "budget.\(k)") }
                        switch k {
                        case "daily_usd": daily = x
                        case "monthly_usd": monthly = x
                        default: return bad("Unknown budget '\(k)' (daily_usd, monthly_usd).", "budget.\(k)")
                        }
                    }
                }
                var models: Set<String>?
                if let m = o["models"], m != .null {
                    guard let list = m.arrayValue, let names = Optional(list.compactMap(\.stringValue)), names.count == list.count else {
                        return bad("'models' must be an array of model group names.", "models")
                    }
                    models = Set(names)
                }
                do {
                    let (key, secret) = try await self.gateway.createRuntimeKey(name: name, limits: limits, models: models, dailyUSD: daily, monthlyUSD: monthly)
                    var out = String(key.json.dropLast())
                    out += ",\"key\":"
                    JSONValue.writeString(secret, into: &out)
                    out += "}"
                    return OpenAIController.json(status: .created, out, requestID: id)
                } catch Gateway.KeyCreation.invalid(let m, let p) {
                    return bad(m, p)
                } catch Gateway.KeyCreation.exists(let n) {
                    return OpenAIController.error(
                        OpenAIError(status: 409, message: "A client key named '\(n)' exists already.", type: "invalid_request_error", code: "key_exists", param: "name"),
                        requestID: id)
                }
            }
        }
        router.delete("/admin/keys/:name") { request, context in
            await self.admin(request) { id in
                let name = context.parameters.get("name") ?? ""
                guard try await self.gateway.revokeRuntimeKey(name: name) else {
                    let inFile = self.gateway.configuration.keys.contains { $0.name == name }
                    return OpenAIController.error(
                        OpenAIError(
                            status: 404,
                            message: inFile ? "'\(name.prefix(64))' is a key of the configuration file: remove it there and reload." : "No run-time key named '\(name.prefix(64))'.",
                            type: "invalid_request_error", code: "not_found"), requestID: id)
                }
                var out = "{\"revoked\":"
                JSONValue.writeString(name, into: &out)
                return OpenAIController.json(status: .ok, out + "}", requestID: id)
            }
        }
        router.get("/dashboard") { _, _ in
            var h = HTTPFields()
            h[.contentType] = "text/html; charset=utf-8"
            h[.cacheControl] = "no-store"
            h[HTTPField.Name("content-security-policy")!] = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"
            h[HTTPField.Name("x-frame-options")!] = "DENY"
            h[HTTPField.Name("referrer-policy")!] = "no-referrer"
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(string: Dashboard.html)))
        }
    }

    /// Each provider's limits and the tiers it serves in, and each group's members: what the dashboard draws
    /// the windows against.
    var configJSON: String {
        let table = self.gateway.table
        func str(_ x: String) -> String {
            var o = ""
            JSONValue.writeString(x, into: &o)
            return o
        }
        let providers = self.gateway.configuration.providers.map { p -> String in
            var tiers: [String] = []
            for g in table.groups {
                if g.primary.contains(where: { $0.provider == p.name }) { tiers.append("\(g.name): primary") }
                if g.fallback.contains(where: { $0.provider == p.name }) { tiers.append("\(g.name): fallback") }
            }
            let l = p.limits
            let limits = [("rpm", l.rpm), ("rpd", l.rpd), ("tpm", l.tpm), ("tpd", l.tpd), ("max_concurrent", l.maxConcurrent)]
                .compactMap { n, v in v.map { "\"\(n)\":\($0)" } }.joined(separator: ",")
            let budget = l.dailyBudgetMicroUSD.map { "{\"daily_micro_usd\":\($0)}" } ?? "null"
            let pricing = p.pricing.map {
                "{\"input_micro_usd_per_mtok\":\($0.inputMicroUSDPerMillion),\"output_micro_usd_per_mtok\":\($0.outputMicroUSDPerMillion)}"
            } ?? "null"
            return "{\"name\":\(str(p.name)),\"tiers\":\(JSONValue.array(tiers.map(JSONValue.string)).jsonText),\"limits\":{\(limits)},\"budget\":\(budget),\"pricing\":\(pricing)}"
        }
        let models = table.groups.map { g in
            "{\"name\":\(str(g.name)),\"primary\":\(JSONValue.array(g.primary.map { .string($0.provider) }).jsonText),\"fallback\":\(JSONValue.array(g.fallback.map { .string($0.provider) }).jsonText)}"
        }
        let fileKeys = self.gateway.configuration.keys.map { ($0.name, $0.limits) }
        let runtimeKeys = self.gateway.runtimeKeys.all.map { k in (k.name, k.key.limits) }
        let keys = (fileKeys + runtimeKeys).map { name, l in
            "{\"name\":\(str(name)),\"budget\":{\"daily_micro_usd\":\(l.dailyBudgetMicroUSD.map(String.init) ?? "null"),\"monthly_micro_usd\":\(l.monthlyBudgetMicroUSD.map(String.init) ?? "null")}}"
        }
        return "{\"providers\":[\(providers.joined(separator: ","))],\"models\":[\(models.joined(separator: ","))],\"keys\":[\(keys.joined(separator: ","))]}"
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
        guard let presented, KeyAuthenticator.constantTimeEquals(KeyDigest.hex(Array(presented.utf8)), KeyDigest.hex(Array(adminKey.utf8))) else {
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
            "{\"name\":\(str(p.name)),\"usage\":\(usage(p.usage)),\"window\":\(window(p.window)),\"cooldown_ms\":\(p.cooldownRemaining.map { String($0.millisecondsRoundedUp) } ?? "null"),\"cooldown_reason\":\(p.cooldownReason.map { str($0.rawValue) } ?? "null"),\"disabled\":\(p.disabled),\"consecutive_failures\":\(p.consecutiveFailures),\"spend\":{\"today_micro_usd\":\(p.spentToday)}}"
        }
        let keys = s.keys.map {
            "{\"name\":\(str($0.name)),\"usage\":\(usage($0.usage)),\"window\":\(window($0.window)),\"spend\":{\"today_micro_usd\":\($0.spentToday),\"month_micro_usd\":\($0.spentThisMonth)}}"
        }
        let models = s.models.map { "{\"name\":\(str($0.name)),\"requests\":\($0.counters.requests),\"fallbacks\":\($0.counters.fallbacks),\"exhausted\":\($0.counters.exhausted),\"continued\":\($0.counters.continued)}" }
        let nodes = s.nodes.map { "{\"id\":\(str($0.id)),\"last_seen_ms\":\($0.lastSeen.millisecondsRoundedUp)}" }
        return "{\"node\":\(node.map(str) ?? "null"),\"store\":\(str(store)),\"providers\":[\(providers.joined(separator: ","))],\"keys\":[\(keys.joined(separator: ","))],\"models\":[\(models.joined(separator: ","))],\"nodes\":[\(nodes.joined(separator: ","))]}"
    }
}
