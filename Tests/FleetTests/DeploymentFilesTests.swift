import Foundation
import MultiplexerCore
import MultiplexerFleet
import MultiplexerGateway
import MultiplexerMockProvider
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing
import Yams

/// Static checks of deploy/ and docker-compose.yml (no Docker engine or cluster runs here): the files
/// parse, every service, file, port and secret they reference exists, the commands are real
/// subcommands with real flags of the built binary, the probes name the routes and port the gateway
/// serves, and `nginx -t` accepts the load balancer's configuration.
struct DeploymentFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func text(_ path: String) throws -> String {
        try String(contentsOfFile: "\(Self.root)/\(path)", encoding: .utf8)
    }

    static func yaml(_ path: String) throws -> [String: Any] {
        try #require(try Yams.load(yaml: Self.text(path)) as? [String: Any], "\(path) is a YAML mapping")
    }

    // MARK: docker-compose.yml

    @Test func composeReferencesRealServicesFilesPortsAndCommands() throws {
        let compose = try Self.yaml("docker-compose.yml")
        let services = try #require(compose["services"] as? [String: [String: Any]])
        #expect(Set(services.keys) == ["redis", "mock-a", "mock-b", "gateway-1", "gateway-2", "gateway-3", "nginx"])
        let volumes = (compose["volumes"] as? [String: Any?]) ?? [:]

        for (name, s) in services {
            for dep in Self.dependencies(s) { #expect(services[dep] != nil, "\(name) depends on unknown service \(dep)") }
            for v in (s["volumes"] as? [String]) ?? [] {
                let source = String(v.split(separator: ":")[0])
                if source.hasPrefix(".") {
                    #expect(FileManager.default.fileExists(atPath: "\(Self.root)/\(source)"), "\(name) mounts missing \(source)")
                } else {
                    #expect(volumes.keys.contains(source), "\(name) uses undeclared volume \(source)")
                }
            }
            if let build = s["build"] as? [String: Any] {
                #expect(FileManager.default.fileExists(atPath: "\(Self.root)/\(build["dockerfile"] as? String ?? "Dockerfile")"))
            }
        }
        // Redis for quota data: never evict, keep the counters.
        let redisCommand = try #require(services["redis"]?["command"] as? [String]).joined(separator: " ")
        #expect(redisCommand.contains("--maxmemory-policy noeviction") && redisCommand.contains("--appendonly yes"))

        // Mock providers: a real subcommand with real flags, on the port the gateway config points at.
        let config = try ConfigurationLoader.load(path: "\(Self.root)/deploy/multiplexer.yaml", environment: [:])
        for mock in ["mock-a", "mock-b"] {
            let command = try #require(services[mock]?["command"] as? [String])
            try Self.expectRealCommand(command)
            let port = try #require(Self.value(of: "--port", in: command))
            #expect(config.providers.contains { $0.baseURL == "http://\(mock):\(port)/v1" }, "a provider of the config is \(mock):\(port)")
            #expect(Self.value(of: "--host", in: command) == "0.0.0.0", "reachable from the other containers")
        }

        // Gateways: real command; the config they read is the mounted file; it reaches redis by service name.
        for g in ["gateway-1", "gateway-2", "gateway-3"] {
            let s = try #require(services[g])
            let command = try #require(s["command"] as? [String])
            try Self.expectRealCommand(command)
            #expect(command.first == "serve")
            let configPath = try #require(Self.value(of: "--config", in: command))
            let mounts = ((s["volumes"] as? [String]) ?? []).map { $0.split(separator: ":").map(String.init) }
            let mount = try #require(mounts.first { $0.count >= 2 && $0[1] == configPath }, "\(g) mounts its --config file")
            #expect(mount[0] == "./deploy/multiplexer.yaml")
            #expect(Self.value(of: "--node-id", in: command) == g)
            #expect(Self.value(of: "--drain-seconds", in: command) != nil)
        }
        guard case .standalone(let url)? = config.redis?.topology else {
            Issue.record("the compose config uses a standalone Redis")
            return
        }
        #expect(url == "redis://redis:6379/0")
        #expect(config.server.host == "0.0.0.0" && config.server.port == 8080)

        // nginx: the mounted config balances over the three gateway services on the port they serve.
        let nginx = try #require(services["nginx"])
        #expect((nginx["volumes"] as? [String])?.contains("./deploy/nginx.conf:/etc/nginx/nginx.conf:ro") == true)
        #expect((nginx["ports"] as? [String]) == ["8080:8080"])
        let conf = try Self.text("deploy/nginx.conf")
        for g in ["gateway-1", "gateway-2", "gateway-3"] { #expect(conf.contains("server \(g):\(config.server.port) ")) }
        #expect(conf.contains("listen 8080;"))
        // Rolling restarts: nginx drops idle upstream connections before a draining gateway closes them.
        let keepalive = try #require(conf.split(separator: "\n").first { $0.contains("keepalive_timeout") })
        let idle = Double(keepalive.filter { $0.isNumber }) ?? .infinity
        for g in ["gateway-1", "gateway-2", "gateway-3"] {
            let drain = Double(Self.value(of: "--drain-seconds", in: services[g]?["command"] as? [String] ?? []) ?? "") ?? 0
            #expect(idle < drain, "nginx keepalive_timeout \(idle) s < \(g) --drain-seconds \(drain)")
        }
    }

    /// Compose itself accepts the file: `docker compose config` (Compose v2, the Docker CLI plugin) or, where only
    /// Debian's packaged Compose is installed, `docker-compose config` (1.29, which reads the Compose
    /// Specification this file is written in: no `version:` key). No engine is needed to validate.
    @Test func composeConfigAcceptsTheFile() throws {
        let command: (String, [String])
        if let docker = ManagedProcess.which("docker"), (try? TracingFleetTests.run(docker, ["compose", "version"], stdin: "/dev/null").0) == 0 {
            command = (docker, ["compose"])
        } else {
            command = (try #require(ManagedProcess.which("docker-compose"), "docker compose or docker-compose (scripts/install-deps.sh)"), [])
        }
        let (status, output) = try TracingFleetTests.run(
            command.0, command.1 + ["--project-directory", Self.root, "-f", Self.root + "/docker-compose.yml", "config", "--quiet"], stdin: "/dev/null")
        #expect(status == 0, "\(output)")
    }

    // MARK: nginx

    @Test func nginxConfigPassesNginxTestAndNeverRetriesAPostThatReachedAGateway() throws {
        let conf = try Self.text("deploy/nginx.conf")
        let directives = conf.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.hasPrefix("#") }
        #expect(directives.contains("proxy_buffering off;"), "SSE passes through")
        #expect(directives.contains("proxy_http_version 1.1;") && directives.contains(#"proxy_set_header Connection "";"#), "keep-alive upstreams")
        #expect(directives.contains { $0.hasPrefix("keepalive ") })
        let next = try #require(directives.first { $0.hasPrefix("proxy_next_upstream ") })
        #expect(next == "proxy_next_upstream error timeout;")
        #expect(!directives.joined().contains("non_idempotent"), "a POST that reached a gateway is never sent to another one")

        // `nginx -t` on the file as compose mounts it, with the service names and system paths mapped to
        // this machine (nginx resolves upstream host names at load).
        let dir = NSTemporaryDirectory() + "nginx-t-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rendered = conf
        for g in ["gateway-1", "gateway-2", "gateway-3"] { rendered = rendered.replacingOccurrences(of: "server \(g):", with: "server 127.0.0.1:") }
        rendered = rendered.replacingOccurrences(of: "/var/log/nginx/", with: "\(dir)/").replacingOccurrences(of: "/var/run/nginx.pid", with: "\(dir)/nginx.pid")
        rendered = rendered.replacingOccurrences(of: "http {", with: "http {\n    client_body_temp_path \(dir)/cb; proxy_temp_path \(dir)/p; fastcgi_temp_path \(dir)/f; uwsgi_temp_path \(dir)/u; scgi_temp_path \(dir)/s;")
        try rendered.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        let out = try NginxBalancer.test(configuration: dir + "/nginx.conf", prefix: dir)
        #expect(out.contains("test is successful"))

        // The local fleet's generated configuration too (same proxy settings).
        let local = NginxBalancer.configuration(listenPort: LocalPorts.free(), upstreamPorts: [18001, 18002, 18003], directory: dir)
        try local.write(toFile: dir + "/local.conf", atomically: true, encoding: .utf8)
        #expect(try NginxBalancer.test(configuration: dir + "/local.conf", prefix: dir).contains("test is successful"))
        #expect(local.contains("proxy_next_upstream error timeout;") && local.contains("proxy_buffering off;") && !local.contains("non_idempotent"))
    }

    // MARK: Prometheus alerts

    /// The three alerts of docs/observability.md: valid rules, and each fires on the synthetic series of its unit
    /// test (and not before its `for`), by Prometheus's own `promtool`. Every metric they name is one the gateway
    /// exports.
    @Test func theAlertRulesPassPromtoolsCheckAndTheirUnitTests() throws {
        let promtool = try #require(ManagedProcess.which("promtool"), "promtool (Debian's prometheus package; scripts/install-deps.sh)")
        let dir = Self.root + "/deploy/prometheus"
        let check = try TracingFleetTests.run(promtool, ["check", "rules", dir + "/alerts.yml"], stdin: "/dev/null")
        #expect(check.0 == 0 && check.1.contains("SUCCESS: 3 rules found"), "\(check.1)")
        let test = try TracingFleetTests.run(promtool, ["test", "rules", dir + "/alerts-test.yml"], stdin: "/dev/null")
        #expect(test.0 == 0 && test.1.contains("SUCCESS"), "\(test.1)")
        let rules = try Self.text("deploy/prometheus/alerts.yml")
        let named = Set(rules.matches(of: /multiplexer_[a-z_]+/).map { String($0.output) })
        let metrics = try Self.text("Sources/MultiplexerGateway/Metrics/GatewayMetrics.swift")
        for m in named {
            #expect(metrics.contains("`\(m)"), "\(m) is a series the gateway exports")
        }
    }

    // MARK: Kubernetes

    @Test func kubernetesManifestsProbeTheRoutesAndPortTheGatewayServes() throws {
        var docs = try Self.kustomizedResources()
        // What `kubectl apply -k` applies never holds a Secret (the placeholders would overwrite real keys);
        // the example the Deployment's envFrom names is applied out of band.
        #expect(!docs.contains { $0["kind"] as? String == "Secret" }, "no Secret in the kustomization")
        docs += try Yams.load_all(yaml: Self.text("deploy/k8s/secret.example.yaml")).compactMap { $0 as? [String: Any] }
        func resource(_ kind: String, _ name: String) throws -> [String: Any] {
            try #require(docs.first { $0["kind"] as? String == kind && ($0["metadata"] as? [String: Any])?["name"] as? String == name }, "\(kind)/\(name)")
        }
        let deployment = try resource("Deployment", "multiplexer")
        let spec = try #require(deployment["spec"] as? [String: Any])
        #expect(spec["replicas"] as? Int == 3)
        let pod = try #require((spec["template"] as? [String: Any])?["spec"] as? [String: Any])
        let container = try #require((pod["containers"] as? [[String: Any]])?.first)
        let args = try #require(container["args"] as? [String])
        try Self.expectRealCommand(args)
        #expect(args.first == "serve")

        // The configuration the pods read: mounted from the ConfigMap at --config's path; it loads with the
        // Secret's keys in the environment, and listens on the container port.
        let configPath = try #require(Self.value(of: "--config", in: args))
        let mount = try #require((container["volumeMounts"] as? [[String: Any]])?.first)
        #expect(configPath.hasPrefix((mount["mountPath"] as? String ?? "?") + "/"))
        let volume = try #require((pod["volumes"] as? [[String: Any]])?.first { $0["name"] as? String == mount["name"] as? String })
        let mapName = try #require((volume["configMap"] as? [String: Any])?["name"] as? String)
        let configMap = try resource("ConfigMap", mapName)
        let fileName = String(configPath.split(separator: "/").last!)
        let configText = try #require((configMap["data"] as? [String: String])?[fileName])
        let secret = try resource("Secret", "multiplexer-secrets")
        let secretKeys = try #require(secret["stringData"] as? [String: String])
        var env = secretKeys
        for e in (container["env"] as? [[String: Any]]) ?? [] { if let n = e["name"] as? String { env[n] = "value-of-\(n)" } }
        let config = try ConfigurationLoader.parse(yaml: configText, environment: env)
        #expect(config.adminKey != nil && config.keys.count == 1)
        let envFrom = try #require(container["envFrom"] as? [[String: Any]])
        #expect(envFrom.contains { ($0["secretRef"] as? [String: Any])?["name"] as? String == "multiplexer-secrets" })

        let ports = try #require(container["ports"] as? [[String: Any]])
        let http = try #require(ports.first { $0["name"] as? String == "http" })
        #expect(http["containerPort"] as? Int == config.server.port)
        #expect(config.server.host == "0.0.0.0")
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = try #require((container[probe] as? [String: Any])?["httpGet"] as? [String: Any], "\(probe)")
            #expect(get["path"] as? String == path)
            #expect(get["port"] as? String == "http")
        }
        // Graceful rolling restarts: preStop, then drain, then in-flight requests, all within the grace period.
        let preStop = try #require(((container["lifecycle"] as? [String: Any])?["preStop"] as? [String: Any])?["exec"] as? [String: Any])
        let sleep = Double((preStop["command"] as? [String])?.last ?? "") ?? 0
        let drain = Double(Self.value(of: "--drain-seconds", in: args) ?? "") ?? 0
        let shutdown = Double(Self.value(of: "--shutdown-timeout", in: args) ?? "") ?? 30
        #expect(sleep > 0 && drain > 0)
        #expect(Double(pod["terminationGracePeriodSeconds"] as? Int ?? 30) > sleep + drain + shutdown)

        // The Services select the pods and target the named port; the config's Redis host is the Redis Service.
        let labels = try #require(((spec["template"] as? [String: Any])?["metadata"] as? [String: Any])?["labels"] as? [String: String])
        let service = try #require(try resource("Service", "multiplexer")["spec"] as? [String: Any])
        #expect((service["selector"] as? [String: String]).map { $0.allSatisfy { labels[$0.key] == $0.value } } == true)
        #expect((service["ports"] as? [[String: Any]])?.first?["targetPort"] as? String == "http")
        guard case .standalone(let url)? = config.redis?.topology else {
            Issue.record("standalone Redis expected")
            return
        }
        let redisService = try resource("Service", "multiplexer-redis")
        #expect(url.contains("@multiplexer-redis:6379/"))
        #expect(((redisService["spec"] as? [String: Any])?["ports"] as? [[String: Any]])?.first?["port"] as? Int == 6379)
        let redisSet = try resource("StatefulSet", "multiplexer-redis")
        let redisArgs = try #require(
            (((redisSet["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any]).flatMap { ($0["containers"] as? [[String: Any]])?.first?["args"] as? [String] }
        ).joined(separator: " ")
        #expect(redisArgs.contains("--maxmemory-policy noeviction") && redisArgs.contains("--appendonly yes"))

        // Voluntary disruptions take one gateway at a time; the ServiceMonitor (its own overlay: it needs the
        // Prometheus Operator's CRDs) scrapes /metrics through the Service's named port.
        let pdb = try #require(try resource("PodDisruptionBudget", "multiplexer")["spec"] as? [String: Any])
        #expect(pdb["maxUnavailable"] as? Int == 1)
        #expect(((pdb["selector"] as? [String: Any])?["matchLabels"] as? [String: String]).map { $0.allSatisfy { labels[$0.key] == $0.value } } == true)
        let overlay = try Self.yaml("deploy/k8s/monitoring/kustomization.yaml")
        #expect((overlay["resources"] as? [String]) == ["..", "servicemonitor.yaml"])
        let monitor = try Self.yaml("deploy/k8s/monitoring/servicemonitor.yaml")
        #expect(monitor["kind"] as? String == "ServiceMonitor")
        let monitorSpec = try #require(monitor["spec"] as? [String: Any])
        let serviceLabels = try #require((try resource("Service", "multiplexer")["metadata"] as? [String: Any])?["labels"] as? [String: String])
        #expect(((monitorSpec["selector"] as? [String: Any])?["matchLabels"] as? [String: String]).map { $0.allSatisfy { serviceLabels[$0.key] == $0.value } } == true)
        let endpoint = try #require((monitorSpec["endpoints"] as? [[String: Any]])?.first)
        #expect(endpoint["port"] as? String == "http" && endpoint["path"] as? String == "/metrics")
    }

    /// Every manifest `kubectl apply -k deploy/k8s` applies (the generated ConfigMap included) and the Secret
    /// example pass `kubernetes-validate --strict` against the schemas of Kubernetes 1.30 (unknown fields,
    /// wrong types and missing required fields fail: shown on a copy of the Deployment with a misspelt field).
    /// The ServiceMonitor is a CRD the tool has no schema for: the test above checks it.
    @Test func kubernetesManifestsPassSchemaValidation() throws {
        let tool = try #require(Self.tool("kubernetes-validate"), "kubernetes-validate (PyPI; scripts/install-deps.sh installs it)")
        let dir = NSTemporaryDirectory() + "k8s-validate-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var files: [String] = []
        for (i, doc) in try Self.kustomizedResources().enumerated() {
            let path = "\(dir)/\(i).yaml"
            try Yams.dump(object: doc).write(toFile: path, atomically: true, encoding: .utf8)
            files.append(path)
        }
        files.append(Self.root + "/deploy/k8s/secret.example.yaml")
        let (status, output) = try TracingFleetTests.run(tool, ["--strict", "--kubernetes-version", "1.30.0"] + files, stdin: "/dev/null")
        #expect(status == 0, "\(output)")
        #expect(!output.contains("ERROR") && output.components(separatedBy: " passed for resource ").count - 1 == files.count, "\(output)")

        let broken = try Self.text("deploy/k8s/deployment.yaml").replacingOccurrences(of: "readinessProbe:", with: "readinesProbe:")
        try broken.write(toFile: dir + "/broken.yaml", atomically: true, encoding: .utf8)
        let refused = try TracingFleetTests.run(tool, ["--strict", "--kubernetes-version", "1.30.0", dir + "/broken.yaml"], stdin: "/dev/null")
        #expect(refused.0 != 0 && refused.1.contains("readinesProbe"), "the validator refuses an unknown field: \(refused.1)")
    }

    /// The resources `kubectl apply -k deploy/k8s` applies: the listed files, and the ConfigMap its
    /// configMapGenerator makes from the configuration file (kustomize then appends a hash of its content to
    /// the name, and to every reference of it).
    static func kustomizedResources() throws -> [[String: Any]] {
        var docs: [[String: Any]] = []
        let kustomization = try Self.yaml("deploy/k8s/kustomization.yaml")
        let resources = try #require(kustomization["resources"] as? [String])
        for r in resources {
            for d in try Yams.load_all(yaml: Self.text("deploy/k8s/\(r)")) {
                docs.append(try #require(d as? [String: Any], "deploy/k8s/\(r) holds mappings"))
            }
        }
        for generator in try #require(kustomization["configMapGenerator"] as? [[String: Any]]) {
            var data: [String: String] = [:]
            for file in try #require(generator["files"] as? [String]) { data[file] = try Self.text("deploy/k8s/\(file)") }
            docs.append(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": try #require(generator["name"] as? String)], "data": data])
        }
        return docs
    }

    /// An executable on PATH or in the project's tool environment (`.build/tools-venv`, where
    /// scripts/install-deps.sh puts the PyPI tools).
    static func tool(_ name: String) -> String? {
        let local = Self.root + "/.build/tools-venv/bin/" + name
        return FileManager.default.isExecutableFile(atPath: local) ? local : ManagedProcess.which(name)
    }

    // MARK: Dockerfile, systemd

    @Test func theDockerfileBuildsASlimNonRootImageWithAHealthcheck() throws {
        let file = try Self.text("deploy/Dockerfile")
        let lines = file.split(separator: "\n").map(String.init)
        let froms = lines.filter { $0.hasPrefix("FROM ") }
        #expect(froms.count == 2)
        #expect(froms[0].contains("swift:${SWIFT_VERSION}-bookworm AS build") && file.contains("ARG SWIFT_VERSION=6."))
        #expect(froms[1] == "FROM debian:bookworm-slim")
        #expect(file.contains("libhiredis0.14") && file.contains("libcurl4 "))
        let user = try #require(lines.last { $0.hasPrefix("USER ") })
        #expect(!user.contains("root"))
        #expect(file.contains("HEALTHCHECK") && file.contains("http://127.0.0.1:8080/healthz"))
        #expect(lines.contains("EXPOSE 8080"))
        for line in lines where line.hasPrefix("COPY ") && !line.contains("--from=") {
            for source in line.split(separator: " ").dropFirst().dropLast() where !source.hasSuffix("*") {
                #expect(FileManager.default.fileExists(atPath: "\(Self.root)/\(source)"), "COPY \(source)")
            }
        }
        // The build stage copies every folder the package manifest's targets live in (SwiftPM refuses to
        // load a manifest whose target folders are missing).
        let copied = Set(lines.filter { $0.hasPrefix("COPY ") && !$0.contains("--from=") }.compactMap { $0.split(separator: " ").dropFirst().first.map(String.init) })
        let manifest = try Self.text("Package.swift")
        var folders: Set<String> = ["Sources", "Tests"]
        for match in manifest.split(separator: "\n") where match.contains("path: \"") {
            if let start = match.range(of: "path: \"")?.upperBound, let top = match[start...].split(separator: "/").first {
                folders.insert(String(top))
            }
        }
        for folder in folders { #expect(copied.contains(folder), "the Dockerfile does not COPY \(folder)/, which Package.swift needs") }
        // CMD is a real command.
        let cmd = try #require(lines.first { $0.hasPrefix("CMD ") })
        let parsed = try JSONSerialization.jsonObject(with: Data(cmd.dropFirst(4).utf8))
        let args = try #require(parsed as? [String])
        try Self.expectRealCommand(args)
        #expect(try Self.text(".dockerignore").contains(".build"))
    }

    @Test func theSystemdUnitRunsRealCommands() throws {
        let unit = try Self.text("deploy/systemd/multiplexer.service")
        let exec = unit.split(separator: "\n").filter { $0.hasPrefix("ExecStart=") || $0.hasPrefix("ExecStartPre=") }
        #expect(exec.count == 2)
        for line in exec {
            let words = line.split(separator: "=", maxSplits: 1)[1].split(separator: " ").map(String.init)
            #expect(words[0] == "/usr/local/bin/multiplexer")
            try Self.expectRealCommand(Array(words.dropFirst()))
        }
        #expect(unit.contains("KillSignal=SIGTERM") && unit.contains("TimeoutStopSec="))
        #expect(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"), "systemctl reload is a configuration reload")
        // A DynamicUser owns no file: the unit's own install steps must leave the configuration readable to it.
        #expect(unit.contains("DynamicUser=yes"))
        #expect(unit.contains("install -m 0644 multiplexer.yaml /etc/multiplexer/") && !unit.contains("0640"))
    }

    /// `systemd-analyze verify` accepts the unit as written (unknown keys, bad values and missing executables
    /// fail), with the binary path pointed at the built one.
    @Test func theSystemdUnitPassesSystemdAnalyzeVerify() throws {
        let tool = try #require(ManagedProcess.which("systemd-analyze"), "systemd-analyze (Debian's systemd package)")
        let dir = NSTemporaryDirectory() + "unit-verify-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let unit = try Self.text("deploy/systemd/multiplexer.service").replacingOccurrences(of: "/usr/local/bin/multiplexer", with: try LocalFleet.locateBinary())
        try unit.write(toFile: dir + "/multiplexer.service", atomically: true, encoding: .utf8)
        let (status, output) = try TracingFleetTests.run(tool, ["verify", dir + "/multiplexer.service"], stdin: "/dev/null")
        #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(output)")
    }

    // MARK: Helpers

    static func dependencies(_ service: [String: Any]) -> [String] {
        if let list = service["depends_on"] as? [String] { return list }
        if let map = service["depends_on"] as? [String: Any] { return Array(map.keys) }
        return []
    }

    static func value(of flag: String, in args: [String]) -> String? {
        guard let i = args.firstIndex(of: flag), i + 1 < args.count else { return nil }
        return args[i + 1]
    }

    /// `args` starts with a subcommand of the built binary and uses only flags that subcommand has.
    static func expectRealCommand(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let sub = try #require(args.first)
        let top = try Self.help([])
        #expect(top.contains("  \(sub) "), "`multiplexer \(sub)` is a subcommand", sourceLocation: sourceLocation)
        let help = try Self.help([sub])
        for flag in args where flag.hasPrefix("--") {
            #expect(help.contains(flag + " ") || help.contains(flag + "\n"), "`multiplexer \(sub)` has \(flag)", sourceLocation: sourceLocation)
        }
    }

    static func help(_ args: [String]) throws -> String {
        try TracingFleetTests.run(try LocalFleet.locateBinary(), args + ["--help"], stdin: "/dev/null").1
    }
}
