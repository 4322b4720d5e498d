public import MultiplexerCore
public import MultiplexerRedis
import MultiplexerUpstream
import Synchronization
public import Tracing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Spreads OpenAI-compatible calls over several registered models by weight, falls back to a second tier
/// when the first is out of quota, and keeps every limit, cooldown and counter in a quota store — in this
/// process, or in Redis, shared with every gateway and embedding service on the same namespace.
///
/// It is the reference design's `Multiplexer` in Swift: register models with
/// ``addModel(_:weight:modelName:maxConcurrent:)`` and ``addFallbackModel(_:weight:modelName:maxConcurrent:)``,
/// then call ``chat`` `.completions.create(…)` as you would call one OpenAI client.
///
/// ```swift
/// try await Multiplexer.withMultiplexer(store: try .redis(url: "redis://127.0.0.1:6379/0", namespace: "mux")) { mux in
///     try mux.addModel(OpenAICompatibleEndpoint(baseURL: "https://api.model1.com/v1", apiKey: key1), weight: 5, modelName: "model1-large")
///     try mux.addModel(OpenAICompatibleEndpoint(baseURL: "https://api.model2.org/v1", apiKey: key2), weight: 3, modelName: "model2-base")
///     let completion = try await mux.chat.completions.create(messages: [
///         .system("You are a helpful assistant."),
///         .user("What is the capital of France?"),
///     ])
///     print(completion.choices[0].message.content?.text ?? "")
///     print("Model usage stats:", try await mux.stats())
/// }
/// ```
///
/// ## Running a multiplexer
/// A multiplexer sends its calls through one libcurl client whose loop runs on its own thread, and a Redis
/// store sends heartbeats (so gateways count this process as a live node) and replays counters buffered
/// while Redis was away. Both run inside ``run()``: calls made while ``run()`` is not active wait for it.
/// Either
/// - scope it: ``withMultiplexer(store:configuration:isolation:_:)`` runs it around a closure and shuts it
///   down afterwards; or
/// - run it like a service: call ``run()`` in a task of your own (a task group, or a ServiceLifecycle
///   `ServiceGroup` — `run()` has the shape of `Service.run()`, so `extension Multiplexer: @retroactive Service {}`
///   is all a service needs) and end it with ``shutdown()`` or by cancelling that task.
///
/// A multiplexer spawns no unstructured tasks: everything it runs lives in ``run()``'s task group.
///
/// ### Threading
/// All methods may be called from any task or thread. Registration takes effect for the next request;
/// requests in flight keep the models they started with.
///
/// ### Cleanup
/// After ``run()`` returns, calls fail with ``MultiplexerError/Code/serviceUnavailable``. Nothing is wiped:
/// registered models stay, and counters stay in the store (the reference dropped both on exit). A
/// multiplexer released without ever running stops the client and the Redis connection its initializer
/// started.
public final class Multiplexer: Sendable {
    /// Routing settings shared by every request of one multiplexer.
    public struct Configuration: Sendable, Hashable {
        /// The model group name the multiplexer's requests are counted under in the store
        /// (`{ns}:model:<name>:usage`). Give each embedding service its own name.
        public var name: String
        /// How long a request waits for a primary model that frees up soon (e.g. after a short `Retry-After`)
        /// before it uses a fallback model. Zero uses fallbacks as soon as no primary can serve, as the
        /// reference does.
        public var tierWait: Duration
        /// Transient failures (5xx, reset) retried on the same primary when only fallbacks are left.
        public var retriesPerProvider: Int
        /// Upstream calls per request, both tiers together; `nil`: every registered model once, plus
        /// ``retriesPerProvider``.
        public var maxAttempts: Int?
        /// How long a request may wait for capacity when every model is exhausted (zero: fail at once with
        /// ``MultiplexerError/Code/allModelsExhausted`` and a ``MultiplexerError/retryAfter``).
        public var queueTimeout: Duration
        /// The multiplexer's budgets in USD per UTC day and month (ARCHITECTURE §8): its calls spend on the models'
        /// ``OpenAICompatibleEndpoint/pricing``; once a budget is spent, calls fail with
        /// ``MultiplexerError/Code/insufficientQuota`` until the period ends. Counted in the store under ``name``
        /// (`{ns}:key:<name>:spend:*`), so every multiplexer of one name shares it.
        public var dailyBudgetUSD: Double?
        public var monthlyBudgetUSD: Double?

        /// - Parameters:
        ///   - name: the model group name in the store.
        ///   - tierWait: the wait for a primary before using fallbacks.
        ///   - retriesPerProvider: transient failures retried on one primary.
        ///   - maxAttempts: upstream calls per request.
        ///   - queueTimeout: the wait for capacity when everything is exhausted.
        ///   - dailyBudgetUSD: spend per UTC day.
        ///   - monthlyBudgetUSD: spend per UTC month.
        public init(
            name: String = "library", tierWait: Duration = .seconds(3), retriesPerProvider: Int = 1, maxAttempts: Int? = nil,
            queueTimeout: Duration = .zero, dailyBudgetUSD: Double? = nil, monthlyBudgetUSD: Double? = nil
        ) {
            self.dailyBudgetUSD = dailyBudgetUSD
            self.monthlyBudgetUSD = monthlyBudgetUSD
            self.name = name
            self.tierWait = tierWait
            self.retriesPerProvider = retriesPerProvider
            self.maxAttempts = maxAttempts
            self.queueTimeout = queueTimeout
        }
    }

    /// Where limits, cooldowns and counters live.
    public struct Store: Sendable {
        enum Backing: Sendable {
            case memory
            case redis(RedisQuotaStore, owned: Bool)
            case custom(any QuotaStore)
        }

        let backing: Backing

        /// This process only (the default).
        public static var inMemory: Store { Store(backing: .memory) }

        /// Redis, shared with every gateway and embedding service that uses the same server and namespace:
        /// same names, same limits, one set of rolling windows, cooldowns and counters.
        ///
        /// The multiplexer owns the store: ``Multiplexer/run()`` connects it and sends heartbeats, and stops
        /// it when it returns.
        ///
        /// - Parameters:
        ///   - url: `redis://[:password@]host:port/db`.
        ///   - namespace: the key namespace, as in the gateways' `redis.namespace`.
        ///   - nodeID: this process's id among the live nodes; default `lib-<host>-<pid>`.
        ///   - onUnavailable: while Redis is unreachable, serve on this node's share of each limit (`.local`)
        ///     or fail with ``MultiplexerError/Code/serviceUnavailable`` (`.reject`).
        ///   - commandTimeout: how long one Redis command may take before Redis counts as unreachable.
        /// - Throws: ``MultiplexerError`` (``MultiplexerError/Code/invalidArgument``) for a malformed URL.
        public static func redis(
            url: String, namespace: String = "mux", nodeID: String? = nil, onUnavailable: RedisQuotaStore.UnavailablePolicy = .local,
            commandTimeout: Duration = .milliseconds(50)
        ) throws(MultiplexerError) -> Store {
            let endpoint: RedisEndpoint
            do {
                endpoint = try RedisEndpoint(url: url)
            } catch {
                throw MultiplexerError(.invalidArgument, "Invalid Redis URL: \(error)", underlyingError: error)
            }
            guard !namespace.isEmpty else { throw MultiplexerError(.invalidArgument, "The Redis namespace must not be empty.") }
            let store = RedisQuotaStore(configuration: .init(
                endpoint: endpoint, namespace: namespace, connectTimeout: max(.milliseconds(200), commandTimeout), commandTimeout: commandTimeout,
                onUnavailable: onUnavailable, nodeID: nodeID ?? Multiplexer.defaultNodeID()))
            return Store(backing: .redis(store, owned: true))
        }

        /// A Redis store you created (for Sentinel or Cluster topologies, or custom timeouts). While
        /// ``Multiplexer/run()`` runs it sends the store's heartbeats; you shut the store down.
        ///
        /// - Parameter store: the store.
        public static func redis(_ store: RedisQuotaStore) -> Store { Store(backing: .redis(store, owned: false)) }

        /// Any ``MultiplexerCore/QuotaStore``.
        ///
        /// - Parameter store: the store.
        public static func custom(_ store: any QuotaStore) -> Store { Store(backing: .custom(store)) }
    }

    /// A registered model.
    struct Entry: Sendable {
        var name: String
        var weight: Int
        var isFallback: Bool
        var endpoint: OpenAICompatibleEndpoint
        var provider: Provider
    }

    /// The router over the models registered so far.
    struct Routing: Sendable {
        let router: Router<ContinuousClock>
        let group: ModelGroup
        let entries: [String: Entry]
    }

    private struct Registry {
        var entries: [Entry] = []
        var routing: Routing?
    }

    /// Work that outlives a call and runs in ``run()`` (settling a stream its consumer dropped).
    enum Job: Sendable {
        case settle(PendingSettlement, SettlementResult)

        func perform() async {
            switch self {
            case .settle(let pending, let result): await pending.settle(result)
            }
        }
    }

    /// The routing settings.
    public let configuration: Configuration
    /// The quota store every limit, cooldown and counter lives in.
    public let store: any QuotaStore
    let client: CurlClient
    let transport: OpenAIUpstreamTransport
    private let redis: RedisQuotaStore?
    private let ownsRedis: Bool
    private let registry = Mutex(Registry())
    private let runCalled = Atomic<Bool>(false)
    /// Traces calls; `nil`: none.
    let tracer: (any Tracer)?
    private let jobs: AsyncStream<Job>
    let jobSink: AsyncStream<Job>.Continuation
    /// Renews the leases of handed-out streams while ``run()`` runs.
    let leaseKeeper = LeaseKeeper()

    /// Creates a multiplexer with no models. It sends nothing until ``run()`` runs.
    ///
    /// - Parameters:
    ///   - store: where limits, cooldowns and counters live; in this process by default.
    ///   - configuration: routing settings.
    ///   - tracer: traces every call (swift-distributed-tracing; e.g. swift-otel's, the one a gateway uses): a
    ///     span per call, child of the caller's current span, with the admission and each upstream attempt
    ///     as its children (ARCHITECTURE §10); `nil` for none.
    /// - Throws: ``MultiplexerError`` (``MultiplexerError/Code/invalidArgument``) when libcurl cannot be
    ///   initialised.
    public init(store: Store = .inMemory, configuration: Configuration = Configuration(), tracer: (any Tracer)? = nil) throws(MultiplexerError) {
        self.tracer = tracer
        guard Provider.isValidName(configuration.name) else {
            throw MultiplexerError(.invalidArgument, "The configuration name '\(configuration.name)' must consist of a-z, 0-9, '.', '_' and '-'.")
        }
        self.configuration = configuration
        switch store.backing {
        case .memory:
            self.store = InMemoryQuotaStore()
            self.redis = nil
            self.ownsRedis = false
        case .redis(let r, let owned):
            self.store = r
            self.redis = r
            self.ownsRedis = owned
        case .custom(let s):
            self.store = s
            self.redis = s as? RedisQuotaStore
            self.ownsRedis = false
        }
        do {
            self.client = try CurlClient()
        } catch {
            if case .redis(let r, owned: true) = store.backing { r.shutdown() }
            throw MultiplexerError(.invalidArgument, "The HTTP client could not be created: \(error)", underlyingError: error)
        }
        self.transport = OpenAIUpstreamTransport(client: self.client)
        (self.jobs, self.jobSink) = AsyncStream.makeStream(of: Job.self)
    }

    deinit {
        // Never run (a running multiplexer is kept alive by run()): stop what init started.
        self.client.shutdown()
        if self.ownsRedis { self.redis?.shutdown() }
    }

    // MARK: Lifecycle

    /// Runs the multiplexer's background work until ``shutdown()`` is called or the calling task is cancelled:
    /// the upstream client's loop, and for a Redis store its connection check, heartbeats and counter replay.
    ///
    /// Call it once. Calls made before it starts wait for it; calls after it returned fail. For a Redis store
    /// it owns, it also stops the store's connection when it returns. If Redis is unreachable at start, the
    /// multiplexer serves in degraded mode (see ``Store/redis(url:namespace:nodeID:onUnavailable:commandTimeout:)``).
    public func run() async {
        let alreadyRunning = self.runCalled.exchange(true, ordering: .relaxed)
        precondition(!alreadyRunning, "Multiplexer.run() must be called only once")
        if let redis = self.redis {
            // Unreachable Redis is not fatal: the store serves on local shares and reconnects by itself.
            try? await redis.connect()
        }
        await withTaskGroup(of: Void.self) { outer in
            let jobs = self.jobs
            outer.addTask {
                for await job in jobs { await job.perform() }
            }
            await withTaskGroup(of: Void.self) { inner in
                inner.addTask { await self.client.run() }
                inner.addTask { await self.leaseKeeper.run() }
                if let redis = self.redis {
                    inner.addTask { await redis.run() }
                }
                // The client's loop ends at shutdown() or cancellation; then stop the heartbeats too.
                _ = await inner.next()
                inner.cancelAll()
            }
            // Let queued settlements finish, then end the job loop.
            self.jobSink.finish()
        }
        if self.ownsRedis { self.redis?.shutdown() }
    }

    /// Stops the multiplexer: ``run()`` returns after pending calls have failed. Safe to call more than once,
    /// from any thread.
    public func shutdown() {
        self.client.shutdown()
        if self.ownsRedis, !self.runCalled.load(ordering: .relaxed) {
            // run() never ran, so it will not stop the store's connection thread.
            self.redis?.shutdown()
        }
    }

    /// Creates a multiplexer, runs it while `body` runs, and shuts it down afterwards.
    ///
    /// The reference's `async with Multiplexer() as mux:` in structured-concurrency form.
    ///
    /// - Parameters:
    ///   - store: where limits, cooldowns and counters live.
    ///   - configuration: routing settings.
    ///   - tracer: traces every call (see ``init(store:configuration:tracer:)``).
    ///   - isolation: the caller's actor isolation (inherited).
    ///   - body: registers models and makes calls.
    /// - Returns: what `body` returns.
    /// - Throws: what `body` throws, or ``MultiplexerError`` if the multiplexer cannot be created.
    public static func withMultiplexer<Result: Sendable>(
        store: Store = .inMemory,
        configuration: Configuration = Configuration(),
        tracer: (any Tracer)? = nil,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (Multiplexer) async throws -> Result
    ) async throws -> Result {
        let mux = try Multiplexer(store: store, configuration: configuration, tracer: tracer)
        return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
            group.addTask { await mux.run() }
            defer { mux.shutdown() }
            return try await body(mux)
        }
    }

    // MARK: Registration

    /// Registers a primary model: used while any primary can serve, chosen with probability
    /// `weight / Σ weights` of the primaries that can.
    ///
    /// `modelName` is the model's identity — in stats, cooldowns and limits, and in the quota store, where a
    /// gateway provider of the same name shares them. It is also the model id sent upstream unless the
    /// endpoint sets ``OpenAICompatibleEndpoint/model``.
    ///
    /// A name that is already registered (in either tier) is skipped and the first registration wins, as in
    /// the reference; the return value tells.
    ///
    /// - Parameters:
    ///   - client: where and how to call the model.
    ///   - weight: a positive integer.
    ///   - modelName: a unique name, `[a-z0-9._-]+`.
    ///   - maxConcurrent: requests in flight at once (across every process sharing the store); `nil` or 0:
    ///     the endpoint's ``OpenAICompatibleEndpoint/Limits/maxConcurrent``, else unlimited.
    /// - Returns: `true` if registered, `false` if the name was taken.
    /// - Throws: ``MultiplexerError`` (``MultiplexerError/Code/invalidArgument``) with the reference's messages:
    ///   "Weight must be a positive integer.", "model_name must be a non-empty string.", "max_concurrent
    ///   must be a non-negative integer or nil."
    @discardableResult
    public func addModel(_ client: OpenAICompatibleEndpoint, weight: Int, modelName: String, maxConcurrent: Int? = nil) throws(MultiplexerError) -> Bool {
        try self.register(client, weight: weight, modelName: modelName, maxConcurrent: maxConcurrent, fallback: false)
    }

    /// Registers a fallback model: used only when no primary can serve (all cooling down or at a limit,
    /// for longer than ``Configuration/tierWait``), chosen by weight among the fallbacks that can.
    ///
    /// - Parameters:
    ///   - client: where and how to call the model.
    ///   - weight: a positive integer.
    ///   - modelName: a unique name, `[a-z0-9._-]+`.
    ///   - maxConcurrent: requests in flight at once; `nil` or 0: the endpoint's limit, else unlimited.
    /// - Returns: `true` if registered, `false` if the name was taken.
    /// - Throws: ``MultiplexerError`` (``MultiplexerError/Code/invalidArgument``), as
    ///   ``addModel(_:weight:modelName:maxConcurrent:)``.
    @discardableResult
    public func addFallbackModel(
        _ client: OpenAICompatibleEndpoint, weight: Int, modelName: String, maxConcurrent: Int? = nil
    ) throws(MultiplexerError) -> Bool {
        try self.register(client, weight: weight, modelName: modelName, maxConcurrent: maxConcurrent, fallback: true)
    }

    /// Unregisters every model (counters stay in the store). The reference's `reset()`.
    public func removeAllModels() {
        self.registry.withLock { $0 = Registry() }
    }

    /// The registered names: primaries, then fallbacks, each in registration order.
    public var modelNames: [String] {
        self.registry.withLock { r in r.entries.filter { !$0.isFallback }.map(\.name) + r.entries.filter(\.isFallback).map(\.name) }
    }

    private func register(
        _ endpoint: OpenAICompatibleEndpoint, weight: Int, modelName: String, maxConcurrent: Int?, fallback: Bool
    ) throws(MultiplexerError) -> Bool {
        guard weight > 0 else { throw MultiplexerError(.invalidArgument, "Weight must be a positive integer.") }
        guard !modelName.isEmpty else { throw MultiplexerError(.invalidArgument, "model_name must be a non-empty string.") }
        if let m = maxConcurrent, m < 0 { throw MultiplexerError(.invalidArgument, "max_concurrent must be a non-negative integer or nil.") }
        guard Provider.isValidName(modelName) else {
            throw MultiplexerError(
                .invalidArgument,
                "model_name '\(modelName)' must consist of a-z, 0-9, '.', '_' and '-': it names the model in the quota store. "
                    + "Put the upstream model id in the endpoint's `model`.")
        }
        try Self.validate(endpoint, name: modelName)
        var limits = endpoint.limits
        if let m = maxConcurrent, m > 0 { limits.maxConcurrent = m }
        limits.dailyBudgetMicroUSD = endpoint.dailyBudgetUSD.map { Int64(($0 * 1_000_000).rounded()) }
        let t = endpoint.timeouts
        let provider = Provider(
            name: modelName, baseURL: endpoint.baseURL, apiKey: endpoint.apiKey, model: endpoint.model ?? modelName, limits: limits,
            cooldown: endpoint.cooldown, failureThreshold: endpoint.failureThreshold, failureCooldown: endpoint.failureCooldown,
            defaultMaxTokens: endpoint.defaultMaxTokens, contextWindow: endpoint.contextWindow, connectTimeout: t.connect, timeout: t.request,
            timeToFirstTokenTimeout: t.firstToken, streamIdleTimeout: t.streamIdle, supportsPrefill: endpoint.supportsPrefill, headers: endpoint.headers,
            pricing: endpoint.pricing)
        let entry = Entry(name: modelName, weight: weight, isFallback: fallback, endpoint: endpoint, provider: provider)
        return try self.registry.withLock { (r: inout Registry) throws(MultiplexerError) -> Bool in
            guard !r.entries.contains(where: { $0.name == modelName }) else { return false }
            var entries = r.entries
            entries.append(entry)
            r.routing = try self.makeRouting(entries)
            r.entries = entries
            return true
        }
    }

    private static func validate(_ e: OpenAICompatibleEndpoint, name: String) throws(MultiplexerError) {
        let url = e.baseURL.lowercased()
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw MultiplexerError(.invalidArgument, "The base URL of '\(name)' must start with http:// or https://.")
        }
        let limits = [("rpm", e.limits.rpm), ("rpd", e.limits.rpd), ("tpm", e.limits.tpm), ("tpd", e.limits.tpd), ("maxConcurrent", e.limits.maxConcurrent)]
        for (key, value) in limits {
            if let v = value, v <= 0 { throw MultiplexerError(.invalidArgument, "The \(key) limit of '\(name)' must be a positive integer or nil.") }
        }
        guard e.failureThreshold >= 1 else { throw MultiplexerError(.invalidArgument, "The failureThreshold of '\(name)' must be at least 1.") }
        guard e.defaultMaxTokens >= 0 else { throw MultiplexerError(.invalidArgument, "The defaultMaxTokens of '\(name)' must not be negative.") }
        if let b = e.dailyBudgetUSD {
            guard b >= 0, b.isFinite else { throw MultiplexerError(.invalidArgument, "The dailyBudgetUSD of '\(name)' must not be negative.") }
            guard e.pricing != nil else { throw MultiplexerError(.invalidArgument, "The dailyBudgetUSD of '\(name)' needs its pricing.") }
        }
    }

    /// The multiplexer's budgets, as the client key its calls are admitted under (`nil` without a budget).
    var budgetKey: ClientKey? {
        let c = self.configuration
        guard c.dailyBudgetUSD != nil || c.monthlyBudgetUSD != nil else { return nil }
        func micro(_ usd: Double?) -> Int64? { usd.map { Int64((max(0, $0) * 1_000_000).rounded()) } }
        return ClientKey(name: c.name, limits: KeyLimits(dailyBudgetMicroUSD: micro(c.dailyBudgetUSD), monthlyBudgetMicroUSD: micro(c.monthlyBudgetUSD)))
    }

    private func makeRouting(_ entries: [Entry]) throws(MultiplexerError) -> Routing {
        let primary = entries.filter { !$0.isFallback }.map { WeightedProvider(provider: $0.name, weight: $0.weight) }
        let fallback = entries.filter(\.isFallback).map { WeightedProvider(provider: $0.name, weight: $0.weight) }
        let c = self.configuration
        // A group needs a primary tier: with fallbacks only, they serve as the primary tier.
        let group = ModelGroup(
            name: c.name, primary: primary.isEmpty ? fallback : primary, fallback: primary.isEmpty ? [] : fallback,
            maxAttempts: c.maxAttempts ?? (entries.count + max(0, c.retriesPerProvider)), retriesPerProvider: max(0, c.retriesPerProvider),
            tierWait: c.tierWait, queueTimeout: c.queueTimeout)
        do {
            let table = try RoutingTable(providers: entries.map(\.provider), groups: [group])
            let router = Router(table: table, store: self.store, clock: ContinuousClock(), wallClock: Self.epochSeconds, tracer: self.tracer)
            return Routing(router: router, group: group, entries: Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0) }))
        } catch {
            throw MultiplexerError(.invalidArgument, "\(error)", underlyingError: error)
        }
    }

    var routing: Routing? { self.registry.withLock { $0.routing } }

    // MARK: Stats

    /// Per registered model, the reference's three counters: attempts that succeeded, were rate limited
    /// (429/529), or failed (anything else).
    ///
    /// Counters count attempts, not requests, and live in the store: with Redis they include every process
    /// that uses the same name on the same namespace, and they survive this multiplexer.
    ///
    /// - Returns: `[modelName: SeedStats]` for every registered model (``modelNames`` gives their order).
    /// - Throws: ``MultiplexerError`` (``MultiplexerError/Code/serviceUnavailable``) when the store cannot be read.
    public func stats() async throws(MultiplexerError) -> [String: SeedStats] {
        try await self.fleetStats().seedStats
    }

    /// The richer view: per registered model its lifetime usage (requests, tokens, fallback use), current
    /// window use (rpm, tpm, in flight), cooldown and consecutive failures; this multiplexer's group
    /// counters; and the live nodes sharing the store.
    ///
    /// - Throws: ``MultiplexerError`` (``MultiplexerError/Code/serviceUnavailable``) when the store cannot be read.
    public func fleetStats() async throws(MultiplexerError) -> FleetStats {
        let names = self.modelNames
        do {
            return try await self.store.stats(StatsQuery(providers: names, keys: [], models: [self.configuration.name]))
        } catch {
            throw MultiplexerError(.serviceUnavailable, "The quota store could not be read: \(error)", underlyingError: error)
        }
    }

    // MARK: Helpers

    static func defaultNodeID() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buffer, buffer.count) == 0 ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "host"
        return "lib-\(host)-\(getpid())"
    }

    @Sendable static func epochSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
