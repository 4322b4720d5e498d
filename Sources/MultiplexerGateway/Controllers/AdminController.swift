import HTTPTypes
import Hummingbird
import MultiplexerCore
import MultiplexerRedis
import MultiplexerUpstream
import NIOCore
import Prometheus

/// `/healthz`, `/readyz`, `/metrics` and the admin routes.
struct AdminController: Sendable {
    let gateway: Gateway

    func addRoutes(to router: Hummingbird.Router<GatewayRequestContext>) {
        router.get("/healthz") { _, _ in
            OpenAIController.json(status: .ok, AdminJSON.encode(AdminJSON.Status(status: "ok")), requestID: self.gateway.nextRequestID())
        }
        router.get("/readyz") { _, _ in
            let id = self.gateway.nextRequestID()
            guard let r = self.gateway.readiness else {
                let why = self.gateway.state.current == .draining ? "draining" : (self.gateway.state.current == .starting ? "starting" : "unavailable")
                return OpenAIController.json(status: .serviceUnavailable, AdminJSON.encode(AdminJSON.Status(status: why)), requestID: id)
            }
            return OpenAIController.json(status: .ok, AdminJSON.encode(AdminJSON.Status(status: "\(r)")), requestID: id)
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
                var document = AdminJSON.Stats(stats, node: self.gateway.nodeID, store: self.storeState)
                document.generation = self.gateway.snapshot.generation
                document.config = self.config
                document.recentErrors = self.gateway.recentErrors.entries
                return OpenAIController.json(status: .ok, AdminJSON.encode(document), requestID: id)
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
                    status: .ok, AdminJSON.encode(AdminJSON.Cooldown(provider: name, cooldownMs: remaining.millisecondsRoundedUp)), requestID: id)
            }
        }
        router.delete("/admin/providers/:name/cooldown") { request, context in
            await self.admin(request) { id in
                guard let name = context.parameters.get("name"), self.gateway.table.providers[name] != nil else {
                    return OpenAIController.error(OpenAIError(status: 404, message: "Unknown provider.", type: "invalid_request_error", code: "not_found"), requestID: id)
                }
                try await self.gateway.store.clearCooldown(provider: name)
                return OpenAIController.json(status: .ok, AdminJSON.encode(AdminJSON.Cooldown(provider: name, cooldownMs: 0)), requestID: id)
            }
        }
    }

    /// `POST /admin/reload`, `/admin/keys` and `/dashboard`.
    func addOperatorRoutes(to router: Hummingbird.Router<GatewayRequestContext>) {
        router.post("/admin/reload") { request, _ in
            await self.admin(request) { id in
                let r = self.gateway.reload()
                guard r.applied else {
                    let refused = AdminJSON.ReloadRefused(
                        error: .init(
                            message: "The configuration was not reloaded: \(r.errors.count) error\(r.errors.count == 1 ? "" : "s"); the running one stays.",
                            type: "invalid_request_error", param: nil, code: "invalid_configuration"),
                        errors: r.errors.map { .init(path: $0.path, line: $0.line, message: $0.message) })
                    return OpenAIController.json(status: .badRequest, AdminJSON.encode(refused), requestID: id)
                }
                return OpenAIController.json(
                    status: .ok,
                    AdminJSON.encode(AdminJSON.Reloaded(generation: r.generation, changes: r.changes, restartRequired: r.restartRequired)),
                    requestID: id)
            }
        }
        router.get("/admin/keys") { request, _ in
            await self.admin(request) { id in
                let file = self.gateway.configuration.keys.map { AdminJSON.Key.file($0.name) }
                let runtime = self.gateway.runtimeKeys.all.map(\.document)
                return OpenAIController.json(status: .ok, AdminJSON.encode(AdminJSON.Keys(keys: runtime + file)), requestID: id)
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
                    var created = key.document
                    created.key = secret
                    return OpenAIController.json(status: .created, AdminJSON.encode(created), requestID: id)
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
                return OpenAIController.json(status: .ok, AdminJSON.encode(AdminJSON.Revoked(revoked: name)), requestID: id)
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
    var config: AdminJSON.Config {
        let table = self.gateway.table
        let providers = self.gateway.configuration.providers.map { p in
            var tiers: [String] = []
            for g in table.groups {
                if g.primary.contains(where: { $0.provider == p.name }) { tiers.append("\(g.name): primary") }
                if g.fallback.contains(where: { $0.provider == p.name }) { tiers.append("\(g.name): fallback") }
            }
            let l = p.limits
            return AdminJSON.Config.Provider(
                name: p.name, tiers: tiers, limits: .init(rpm: l.rpm, rpd: l.rpd, tpm: l.tpm, tpd: l.tpd, maxConcurrent: l.maxConcurrent),
                budget: l.dailyBudgetMicroUSD.map { .init(dailyMicroUsd: $0) },
                pricing: p.pricing.map { .init(inputMicroUsdPerMtok: $0.inputMicroUSDPerMillion, outputMicroUsdPerMtok: $0.outputMicroUSDPerMillion) })
        }
        let models = table.groups.map { g in AdminJSON.Config.Model(name: g.name, primary: g.primary.map(\.provider), fallback: g.fallback.map(\.provider)) }
        let fileKeys = self.gateway.configuration.keys.map { ($0.name, $0.limits) }
        let runtimeKeys = self.gateway.runtimeKeys.all.map { k in (k.name, k.key.limits) }
        let keys = (fileKeys + runtimeKeys).map { name, l in
            AdminJSON.Config.Key(name: name, budget: .init(dailyMicroUsd: l.dailyBudgetMicroUSD, monthlyMicroUsd: l.monthlyBudgetMicroUSD))
        }
        return AdminJSON.Config(providers: providers, models: models, keys: keys)
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
