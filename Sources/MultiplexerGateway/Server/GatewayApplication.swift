public import Hummingbird
import Logging
import MultiplexerCore
import MultiplexerRedis
public import MultiplexerUpstream
public import ServiceLifecycle

/// Builds the Hummingbird application for a gateway node: routes, and the services it runs (the quota
/// store's heartbeats and replays, the upstream client's loop, the readiness flag).
///
/// - Parameters:
///   - gateway: the node.
///   - client: the upstream client the gateway's transport uses.
///   - onServerRunning: called with the bound port once the server accepts connections.
/// - Returns: the application, ready for `runService()` or `test(_:)`.
///   - watch: reload the configuration when its file changes (`serve --watch`).
public func buildApplication(
    gateway: Gateway, client: CurlClient, watch: Bool = false, onServerRunning: (@Sendable (Int) async -> Void)? = nil
) -> some ApplicationProtocol {
    let router = Hummingbird.Router(context: GatewayRequestContext.self)
    router.add(middleware: RouteErrorMiddleware(gateway: gateway))
    router.add(middleware: DrainMiddleware(gateway: gateway))
    OpenAIController(gateway: gateway).addRoutes(to: router)
    AdminController(gateway: gateway).addRoutes(to: router)
    AdminController(gateway: gateway).addOperatorRoutes(to: router)
    let config = gateway.configuration.server
    let metrics = gateway.metrics
    let logger = gateway.logger
    return Application(
        router: router,
        server: .http1(
            configuration: .init(additionalChannelHandlers: [
                // Made per connection from the configuration in force: a reload applies to new connections.
                ClientDeadlineHandler(
                    headerTimeout: gateway.configuration.server.headerTimeout, idleTimeout: gateway.configuration.server.idleTimeout, metrics: metrics,
                    logger: logger)
            ])),
        // The cap is checked before each accept batch (NIO accepts up to 4 connections per read), so a burst of
        // connects can pass it by up to 3. One accept per read would make it exact, but with NIO's
        // edge-triggered epoll the connections left in the backlog then wait for the next connect's edge
        // (measured: a full backlog of 257 for seconds, connects answered only after a SYN retransmit).
        configuration: .init(
            address: .hostname(config.host, port: config.port), serverName: "multiplexer",
            availableConnectionsDelegate: .maximum(config.maxConnections, logger: logger)),
        services: [
            CurlClientService(client: client), QuotaStoreService(gateway: gateway), RuntimeKeySyncService(gateway: gateway),
            ReloadService(gateway: gateway, watch: watch),
        ],
        onServerRunning: { channel in
            gateway.state.set(.ready)
            await onServerRunning?(channel.localAddress?.port ?? 0)
        },
        logger: gateway.logger
    )
}

/// While the node drains, every response carries `Connection: close`: a load balancer then stops reusing
/// its keep-alive connections to this node, so none is left open when the server stops accepting and
/// closes idle connections (a request sent on one at that moment would fail after it was sent, and a
/// balancer must not retry a POST then).
struct DrainMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let gateway: Gateway

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        if self.gateway.state.current == .draining { response.headers[.connection] = "close" }
        return response
    }
}

/// A request no route matches gets an OpenAI-shaped error with an `x-request-id` (ARCHITECTURE §6), not
/// the router's empty 404: 405 `method_not_allowed` on a path the gateway serves with another method
/// (`GET /v1/chat/completions`, `POST /v1/models`), else 404 `unknown_route`.
struct RouteErrorMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let gateway: Gateway

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound || error.status == .methodNotAllowed {
            let requestID = ClientHeaders(request.headers).requestID ?? self.gateway.nextRequestID()
            let path = String(request.uri.path.prefix(200))
            let method = request.method.rawValue
            let e = self.serves(path) ? OpenAIError.methodNotAllowed(method: method, path: path) : OpenAIError.unknownRoute(method: method, path: path)
            return OpenAIController.error(e, requestID: requestID)
        }
    }

    /// Whether some method of `path` is served.
    func serves(_ path: String) -> Bool {
        let fixed: Set<String> = ["/v1/models", "/healthz", "/readyz", "/metrics", "/admin/stats", "/admin/reload", "/admin/keys", "/dashboard"]
        if path.hasPrefix("/admin/keys/") { return true }
        if fixed.contains(path) || path.hasPrefix("/v1/models/") { return true }
        if path.hasPrefix("/admin/providers/") && path.hasSuffix("/cooldown") { return true }
        guard path.hasPrefix("/v1/") else { return false }
        let op = String(path.dropFirst(4))
        return PathRules.routed.contains(op) || self.gateway.configuration.server.passthrough.contains(op)
    }
}

/// Runs the libcurl loop until shutdown.
struct CurlClientService: Service {
    let client: CurlClient
    func run() async throws {
        await withGracefulShutdownHandler {
            await self.client.run()
        } onGracefulShutdown: {
            self.client.shutdown()
        }
    }
}

/// Connects the Redis store, runs its heartbeats and replays, and stops its thread at shutdown.
struct QuotaStoreService: Service {
    let gateway: Gateway
    func run() async throws {
        guard let redis = self.gateway.redisStore else {
            try? await gracefulShutdown()
            return
        }
        do {
            try await redis.connect()
        } catch {
            self.gateway.logger.warning("Redis unreachable at startup; serving degraded", metadata: ["error": .string("\(error)")])
        }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await redis.run() }
                group.addTask { await self.logTransitions(redis) }
            }
        }
        redis.shutdown()
    }

    /// Logs every change of the store's state (ARCHITECTURE §5): Redis lost (warning), back and what the node
    /// owed it replayed (info).
    private func logTransitions(_ redis: RedisQuotaStore) async {
        var seen = redis.transitions
        // What the node owes Redis while it is away, latched: the replay may finish while the store still looks
        // degraded (before the heartbeat that marks it connected), so it is remembered until the store is connected
        // and owes nothing. (While connected, settlements wait in a queue briefly: that is not a debt.)
        var owed = false
        while (try? await Task.sleep(for: .milliseconds(200))) != nil {
            let changes = redis.transitions
            if redis.availability != .connected && redis.hasPendingReplay { owed = true }
            // Every transition since the last look, in order: they alternate, and the next one is a loss when the
            // store was connected at the last look.
            var lossNext = seen.losses == seen.recoveries
            for _ in 0..<((changes.losses - seen.losses) + (changes.recoveries - seen.recoveries)) {
                if lossNext {
                    self.logLost(redis)
                } else {
                    self.gateway.logger.info("Redis back: fleet-wide limits in force again")
                }
                lossNext.toggle()
            }
            seen = changes
            if owed && redis.availability == .connected && !redis.hasPendingReplay {
                self.gateway.logger.info("counters replayed: what this node owed Redis is written")
                owed = false
            }
        }
    }

    private func logLost(_ redis: RedisQuotaStore) {
        if redis.configuration.onUnavailable == .local {
            self.gateway.logger.warning(
                "Redis lost: serving degraded, on this node's share of every limit",
                metadata: ["live_nodes": .stringConvertible(redis.liveNodes)])
        } else {
            self.gateway.logger.warning("Redis lost: refusing requests until it is back (on_unavailable: reject)")
        }
    }
}

/// Flips readiness to draining when shutdown begins, before the server stops accepting.
public struct DrainService: Service {
    let gateway: Gateway
    /// How long `/readyz` answers 503 before the server stops accepting (lets a load balancer notice).
    let delay: Duration
    /// How long in-flight requests get after the drain; streams still open then are ended with an error
    /// event a little before it, so that they are settled before the server gives up on them.
    let shutdownTimeout: Duration

    public init(gateway: Gateway, delay: Duration, shutdownTimeout: Duration = .seconds(30)) {
        self.gateway = gateway
        self.delay = delay
        self.shutdownTimeout = shutdownTimeout
    }

    /// How long before the graceful-shutdown limit the streams still open are ended: their watchdog looks
    /// once a second, and ending, settling and closing takes a moment.
    static let streamMargin: Duration = .milliseconds(1500)

    public func run() async throws {
        try? await gracefulShutdown()
        let total = self.delay + self.shutdownTimeout
        self.gateway.state.setStreamDeadline(.now + max(.zero, total - Self.streamMargin))
        self.gateway.state.set(.draining)
        self.gateway.logger.info("draining", metadata: ["delay_ms": .stringConvertible(self.delay.millisecondsRoundedUp)])
        try? await Task.sleep(for: self.delay)
    }
}
