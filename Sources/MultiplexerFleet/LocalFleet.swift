import Foundation
import Hummingbird
import Logging
public import MultiplexerCore
import MultiplexerGateway
public import MultiplexerMockProvider
import MultiplexerRedis
public import MultiplexerProcesses
public import MultiplexerUpstream
import ServiceLifecycle
import Synchronization

/// A whole fleet on loopback, made of real processes: a `redis-server`, N gateway nodes (`multiplexer
/// serve`, the built binary), an nginx load balancer in front of them, and mock providers with strict
/// limits (in this process, so their counters can be read directly).
///
/// Use ``run(_:binary:_:)``: it starts everything, waits until every node is ready, runs the body, and
/// stops every process it started — also when the body throws or the task is cancelled. (Children also
/// die with this process: each has a watchdog, see ``ManagedProcess``.)
public final class LocalFleet: Sendable {
    /// One gateway node.
    public struct Node: Sendable {
        public var id: String
        public var port: Int
        public var process: ManagedProcess
        /// `http://127.0.0.1:<port>`
        public var url: String { "http://127.0.0.1:\(self.port)" }
    }

    public enum Failure: Error, CustomStringConvertible {
        case binaryNotFound(String)
        case notReady(String)
        public var description: String {
            switch self {
            case .binaryNotFound(let s): "the multiplexer binary was not found (\(s)); build it with `swift build`"
            case .notReady(let s): s
            }
        }
    }

    public let plan: FleetPlan
    /// Configuration, logs and nginx files.
    public let directory: String
    /// The `multiplexer` executable the nodes run.
    public let binary: String
    public let redis: RedisServer?
    public let nginx: NginxBalancer?
    /// The mock providers by name.
    public let mocks: [String: MockProvider]
    public let mockPorts: [String: Int]
    /// For the fleet's own HTTP calls (readiness, load).
    public let client: CurlClient
    public let configPath: String
    /// The HTTPS fronts of providers with ``FleetPlan/Provider/tls``, by provider name.
    public let tlsFronts: [String: TLSFrontProxy]
    /// The authority of the fronts' certificates (when there are fronts).
    public let authority: TestCertificateAuthority?
    private let nodeList: Mutex<[Node]>

    private init(
        plan: FleetPlan, directory: String, binary: String, redis: RedisServer?, nginx: NginxBalancer?, mocks: [String: MockProvider],
        mockPorts: [String: Int], client: CurlClient, configPath: String, nodes: [Node], tlsFronts: [String: TLSFrontProxy] = [:],
        authority: TestCertificateAuthority? = nil
    ) {
        self.tlsFronts = tlsFronts
        self.authority = authority
        self.plan = plan
        self.directory = directory
        self.binary = binary
        self.redis = redis
        self.nginx = nginx
        self.mocks = mocks
        self.mockPorts = mockPorts
        self.client = client
        self.configPath = configPath
        self.nodeList = Mutex(nodes)
    }

    /// The gateway nodes, in order.
    public var nodes: [Node] { self.nodeList.withLock { $0 } }
    /// Where clients send requests: nginx, or the only node.
    public var entryURL: String { self.nginx?.url ?? self.nodes[0].url }
    /// The Redis namespace's hash tag, `{mux}`.
    public var keyPrefix: String { "{\(self.plan.namespace)}" }
    public var http: FleetHTTP { FleetHTTP(client: self.client) }

    // MARK: Running

    /// Starts the fleet of `plan`, runs `body`, and stops everything.
    ///
    /// - Parameters:
    ///   - plan: what to start.
    ///   - binary: the `multiplexer` executable (default: ``locateBinary()``).
    ///   - keepFiles: keep the fleet's folder (configuration, logs) afterwards; it is always kept when
    ///     `body` throws, and when `MULTIPLEXER_FLEET_KEEP_FILES` is set.
    ///   - body: uses the running fleet.
    public static func run<R: Sendable>(
        _ plan: FleetPlan, binary: String? = nil, keepFiles: Bool = false, _ body: @Sendable (LocalFleet) async throws -> R
    ) async throws -> R {
        let exe = try binary ?? Self.locateBinary()
        var mocks: [String: MockProvider] = [:]
        for p in plan.providers {
            var c = MockProvider.Configuration()
            c.port = 0
            c.rpm = p.mockLimits.rpm
            c.tpm = p.mockLimits.tpm
            c.maxConcurrent = p.mockLimits.maxConcurrent
            c.latency = p.latency
            p.mock(&c)
            mocks[p.name] = MockProvider(configuration: c)
        }
        let ports = Mutex<[String: Int]>([:])
        var logger = Logger(label: "fleet")
        logger.logLevel = .warning
        let services: [ServiceGroupConfiguration.ServiceConfiguration] = mocks.map { name, mock in
            .init(service: mock.buildApplication(onServerRunning: { port in ports.withLock { $0[name] = port } }))
        }
        let mockGroup = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [], cancellationSignals: [], logger: logger))
        let client = try CurlClient(configuration: .init(usesProxyEnvironment: false))

        return try await withThrowingTaskGroup(of: Void.self, returning: R.self) { group in
            group.addTask { try await mockGroup.run() }
            group.addTask { await client.run() }
            var fleet: LocalFleet?
            func teardown(keep: Bool) async {
                if let fleet { await fleet.stop(removeFiles: !keep) }
                await mockGroup.triggerGracefulShutdown()
                client.shutdown()
            }
            do {
                let deadline = ContinuousClock.now + .seconds(15)
                while ports.withLock({ $0.count }) < mocks.count {
                    guard ContinuousClock.now < deadline else { throw Failure.notReady("the mock providers did not start") }
                    try await Task.sleep(for: .milliseconds(10))
                }
                let f = try await Self.start(plan, binary: exe, mocks: mocks, mockPorts: ports.withLock { $0 }, client: client)
                fleet = f
                let result = try await body(f)
                let keep = keepFiles || ProcessInfo.processInfo.environment["MULTIPLEXER_FLEET_KEEP_FILES"] != nil
                if keep { FileHandle.standardError.write(Data("fleet files kept in \(f.directory)\n".utf8)) }
                await teardown(keep: keep)
                try await group.waitForAll()
                return result
            } catch {
                if let fleet { FileHandle.standardError.write(Data("fleet files kept in \(fleet.directory)\n".utf8)) }
                await teardown(keep: true)
                group.cancelAll()
                throw error
            }
        }
    }

    private static func start(
        _ plan: FleetPlan, binary: String, mocks: [String: MockProvider], mockPorts: [String: Int], client: CurlClient
    ) async throws -> LocalFleet {
        let dir = NSTemporaryDirectory() + "mux-fleet-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var redis: RedisServer?
        var nodes: [Node] = []
        var nginx: NginxBalancer?
        var fronts: [String: TLSFrontProxy] = [:]
        var authority: TestCertificateAuthority?
        do {
            if plan.redis {
                let persistent = plan.redisPersistence
                redis = try await offCooperativePool { try RedisServer(persistent: persistent) }
            }
            var endpoints: [String: FleetPlan.TLSEndpoint] = [:]
            let withTLS = plan.providers.filter { $0.tls != nil }
            if !withTLS.isEmpty {
                let ca = try await offCooperativePool { try TestCertificateAuthority() }
                authority = ca
                for p in withTLS {
                    let t = p.tls!
                    let config = TLSFrontProxy.Configuration(upstreamPort: mockPorts[p.name] ?? 0, certificate: t.certificate, requiresClientCertificate: t.mutual)
                    let front = try await offCooperativePool { try TLSFrontProxy(config, authority: ca) }
                    fronts[p.name] = front
                    endpoints[p.name] = .init(
                        url: front.url, caFile: t.trustsAuthority ? ca.caCertificatePath : nil, clientCertificate: t.mutual ? ca.client : nil)
                }
            }
            let configPath = dir + "/multiplexer.yaml"
            try plan.configurationYAML(mockPorts: mockPorts, redisURL: redis?.url, tls: endpoints).write(
                toFile: configPath, atomically: true, encoding: .utf8)
            for i in 1...max(1, plan.nodes) {
                nodes.append(try Self.launchNode(id: "gw-\(i)", port: LocalPorts.free(), plan: plan, binary: binary, configPath: configPath, directory: dir))
            }
            let fleet = LocalFleet(
                plan: plan, directory: dir, binary: binary, redis: redis, nginx: nil, mocks: mocks, mockPorts: mockPorts, client: client,
                configPath: configPath, nodes: nodes)
            for i in nodes.indices { try await fleet.waitUntilReady(node: i) }
            if plan.nginx {
                let ports = nodes.map(\.port)
                nginx = try await offCooperativePool { try NginxBalancer(upstreamPorts: ports, directory: dir) }
            }
            return LocalFleet(
                plan: plan, directory: dir, binary: binary, redis: redis, nginx: nginx, mocks: mocks, mockPorts: mockPorts, client: client,
                configPath: configPath, nodes: nodes, tlsFronts: fronts, authority: authority)
        } catch {
            for n in nodes { n.process.stop(signal: SIGKILL) }
            for f in fronts.values { f.stop() }
            nginx?.stop()
            redis?.stop()
            throw error
        }
    }

    private static func launchNode(id: String, port: Int, plan: FleetPlan, binary: String, configPath: String, directory: String) throws -> Node {
        let process = try ManagedProcess(
            name: id, executable: binary,
            arguments: [
                "serve", "--config", configPath, "--port", String(port), "--node-id", id, "--log-level", plan.logLevel,
                "--drain-seconds", String(plan.drainSeconds),
            ] + (plan.shutdownTimeoutSeconds.map { ["--shutdown-timeout", String($0)] } ?? []) + plan.serveArguments,
            logPath: "\(directory)/\(id).log",
            environment: ["NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"].merging(plan.nodeEnvironment) { $1 })
        return Node(id: id, port: port, process: process)
    }

    /// Stops every process (nginx, nodes with SIGTERM — SIGKILL after 10 s —, Redis) and removes the folder.
    public func stop(removeFiles: Bool = true) async {
        if let nginx { await offCooperativePool { nginx.stop() } }
        let nodes = self.nodes
        for n in nodes { n.process.send(SIGTERM) }
        let deadline = ContinuousClock.now + Duration.seconds(10)
        while nodes.contains(where: { $0.process.isRunning }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        await offCooperativePool {
            for n in nodes { n.process.stop(signal: SIGKILL) }
        }
        if let redis { await offCooperativePool { redis.stop() } }
        let fronts = self.tlsFronts
        await offCooperativePool { for f in fronts.values { f.stop() } }
        if removeFiles { try? FileManager.default.removeItem(atPath: self.directory) }
    }

    // MARK: Nodes

    /// Waits until node `index` answers `/readyz` with 200 (ready or degraded).
    public func waitUntilReady(node index: Int, timeout: Duration = .seconds(30)) async throws {
        let node = self.nodes[index]
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let r = await self.http.get(node.url + "/readyz", timeout: .seconds(2)), r.status == 200 { return }
            if !node.process.isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let log = (try? String(contentsOfFile: node.process.logPath, encoding: .utf8)) ?? ""
        throw Failure.notReady("gateway \(node.id) did not become ready on port \(node.port): \(log.suffix(2000))")
    }

    /// Sends `signal` to node `index` (SIGKILL: a crash; SIGTERM: a rolling restart's graceful stop).
    public func signal(node index: Int, _ signal: Int32) {
        self.nodes[index].process.send(signal)
    }

    /// Waits up to `timeout` for node `index` to exit; whether it did.
    public func waitForExit(node index: Int, timeout: Duration) async -> Bool {
        let p = self.nodes[index].process
        let deadline = ContinuousClock.now + timeout
        while p.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return !p.isRunning
    }

    /// Starts node `index` again (same id and port) after it stopped, and waits until it is ready.
    public func restart(node index: Int) async throws {
        let old = self.nodes[index]
        await offCooperativePool { old.process.stop(signal: SIGKILL) }
        let fresh = try Self.launchNode(id: old.id, port: old.port, plan: self.plan, binary: self.binary, configPath: self.configPath, directory: self.directory)
        self.nodeList.withLock { $0[index] = fresh }
        try await self.waitUntilReady(node: index)
    }

    // MARK: Observing

    /// Each mock's counters, by provider name.
    public func mockCounters() -> [String: MockProviderState.Counters] {
        self.mocks.mapValues { $0.state.counters }
    }

    /// Overshoot 429s over all mocks (a correct fleet never causes one).
    public var totalOvershoot: Int { self.mocks.values.reduce(0) { $0 + $1.state.counters.overshoot } }

    /// The fleet's counters, windows, cooldowns and live nodes from Redis.
    public func fleetStats() async throws -> FleetStats {
        guard let redis else { throw Failure.notReady("this fleet has no Redis") }
        let store = RedisQuotaStore(configuration: .init(
            endpoint: try RedisEndpoint(url: redis.url), namespace: self.plan.namespace, connectTimeout: .seconds(2), commandTimeout: .seconds(5),
            onUnavailable: .reject, nodeID: "fleet-observer"))
        defer { store.shutdown() }
        return try await store.stats(StatsQuery(providers: self.plan.providers.map(\.name), keys: [], models: [self.plan.model]))
    }

    /// Runs `redis-cli` against the fleet's Redis (off the concurrency pool).
    public func redisCLI(_ args: [String]) async throws -> String {
        guard let redis else { throw Failure.notReady("this fleet has no Redis") }
        return try await offCooperativePool { try redis.cli(args) }
    }

    /// Runs the `multiplexer` binary with `arguments` and returns its exit status and output.
    public func runBinary(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let exe = self.binary
        return try await offCooperativePool {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = arguments
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: data, as: UTF8.self))
        }
    }

    // MARK: The binary

    /// Finds the `multiplexer` executable: `$MULTIPLEXER_BINARY`; this process itself when it is
    /// `multiplexer`; a `multiplexer` next to this process's executable (the test bundle's folder in
    /// `.build`); `.build/debug/multiplexer` under the current directory.
    public static func locateBinary() throws -> String {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["MULTIPLEXER_BINARY"] {
            guard fm.isExecutableFile(atPath: env) else { throw Failure.binaryNotFound("MULTIPLEXER_BINARY=\(env) is not executable") }
            return env
        }
        let me = (try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let url = URL(fileURLWithPath: me)
        if url.lastPathComponent == "multiplexer", fm.isExecutableFile(atPath: url.path) { return url.path }
        var candidates = [url.deletingLastPathComponent().appendingPathComponent("multiplexer").path]
        candidates.append(fm.currentDirectoryPath + "/.build/debug/multiplexer")
        for c in candidates where fm.isExecutableFile(atPath: c) { return c }
        throw Failure.binaryNotFound("looked at \(candidates.joined(separator: ", "))")
    }
}
