public import ArgumentParser
import Foundation
public import Logging
import MultiplexerGateway
import MultiplexerTelemetry

/// The `multiplexer` command line (ARCHITECTURE §5). Each subcommand parses its arguments and calls
/// into MultiplexerGateway; nothing else lives here.
@main
struct MultiplexerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "multiplexer",
        abstract: "An OpenAI-compatible LLM gateway cluster: one endpoint, many providers, exact fleet-wide quotas.",
        version: MultiplexerVersion.current,
        subcommands: [Serve.self, Check.self, Stats.self, Keys.self, MockProvider.self, Demo.self]
    )
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Bootstraps logging once per process.
func bootstrapLogging(level: Logger.Level, json: Bool = false) -> Logger {
    LoggingSystem.bootstrap { label in
        var h = GatewayLogHandler(label: label, json: json)
        h.logLevel = level
        return h
    }
    // Lines below `warning` are written by a background thread; write what is queued when the process exits.
    atexit { LogOutput.standardError.flush() }
    return Logger(label: "multiplexer")
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a gateway node.")

    @Option(help: "The configuration file (default: $MULTIPLEXER_CONFIG).") var config: String?
    @Option(help: "Listen on this address (overrides server.host).") var host: String?
    @Option(help: "Listen on this port (overrides server.port).") var port: Int?
    @Option(help: "This node's id in the fleet (overrides server.node_id).") var nodeId: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: Logger.Level = .info
    @Option(help: "Seconds /readyz answers 503 before the server stops accepting at shutdown.") var drainSeconds: Double = 0
    @Option(help: "Seconds in-flight requests may take to finish at shutdown.") var shutdownTimeout: Double = 30
    @Flag(help: "Reload the configuration when its file changes (SIGHUP and POST /admin/reload always do).") var watch = false

    func run() async throws {
        guard let path = self.config ?? ProcessInfo.processInfo.environment["MULTIPLEXER_CONFIG"] else {
            throw ValidationError("give --config PATH or set MULTIPLEXER_CONFIG")
        }
        let source = ConfigurationSource(path: path, host: self.host, port: self.port, nodeID: self.nodeId)
        let configuration: GatewayConfiguration
        do {
            configuration = try source.load()
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(1)
        }
        let logger = bootstrapLogging(level: self.logLevel, json: configuration.server.logFormat == .json)
        do {
            try await GatewayRunner.serve(
                configuration: configuration, source: source, watch: self.watch, logger: logger, drain: .milliseconds(Int64(self.drainSeconds * 1000)),
                shutdownTimeout: .milliseconds(Int64(self.shutdownTimeout * 1000)), tracing: OTLPTracing.backend)
        } catch {
            logger.critical("gateway stopped", metadata: ["error": .string("\(error)")])
            throw ExitCode(1)
        }
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a configuration file; exit 1 listing every error.")

    @Option(help: "The configuration file (default: $MULTIPLEXER_CONFIG).") var config: String?

    func run() async throws {
        guard let path = self.config ?? ProcessInfo.processInfo.environment["MULTIPLEXER_CONFIG"] else {
            throw ValidationError("give --config PATH or set MULTIPLEXER_CONFIG")
        }
        do {
            let c = try ConfigurationLoader.load(path: path)
            _ = try c.routingTable()
            for w in c.warnings { print("warning: \(w)") }
            print("\(path): OK — \(c.providers.count) providers, \(c.models.count) model groups, \(c.keys.count) keys, store: \(c.redis == nil ? "in-memory" : "redis")")
        } catch {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the fleet's usage, windows, cooldowns and live nodes from Redis.")

    @Option(help: "Read the Redis settings and names from this configuration file (default: $MULTIPLEXER_CONFIG).") var config: String?
    @Option(help: "Redis URL (instead of --config).") var redis: String?
    @Option(help: "Namespace (with --redis).") var namespace: String = "mux"
    @Flag(help: "Print JSON for scripts.") var json = false
    @Flag(help: "Refresh in place every second until interrupted (a terminal view).") var watch = false

    func run() async throws {
        let config = self.config ?? (self.redis == nil ? ProcessInfo.processInfo.environment["MULTIPLEXER_CONFIG"] : nil)
        repeat {
            do {
                let text = try await StatsReport.render(configPath: config, redisURL: self.redis, namespace: self.namespace, json: self.json)
                // Home, clear the screen below: the view is redrawn in place.
                if self.watch {
                    // Written at once (not buffered): the view must appear even when stdout is a pipe.
                    FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + text + "\n\n(refreshing every second; Ctrl-C to stop)\n").utf8))
                } else {
                    print(text)
                }
            } catch {
                FileHandle.standardError.write(Data("multiplexer stats: \(error)\n".utf8))
                if !self.watch { throw ExitCode(1) }
            }
            if self.watch { try await Task.sleep(for: .seconds(1)) }
        } while self.watch
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke run-time client keys, fleet-wide, in Redis.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Target: ParsableArguments {
        @Option(help: "Read the Redis settings from this configuration file (default: $MULTIPLEXER_CONFIG).") var config: String?
        @Option(help: "Redis URL (instead of --config).") var redis: String?
        @Option(help: "Namespace (with --redis).") var namespace: String = "mux"

        func admin() throws -> KeyAdmin {
            let config = self.config ?? (self.redis == nil ? ProcessInfo.processInfo.environment["MULTIPLEXER_CONFIG"] : nil)
            return try KeyAdmin(configPath: config, redisURL: self.redis, namespace: self.namespace)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; prints its secret alone on the first line (shown once).")
        @Argument(help: "The key's name (a-z, 0-9, '.', '_', '-').") var name: String
        @Option(help: "Requests per rolling minute.") var rpm: Int?
        @Option(help: "Tokens per rolling minute.") var tpm: Int?
        @Option(help: "Daily budget in USD.") var dailyUsd: Double?
        @Option(help: "Monthly budget in USD.") var monthlyUsd: Double?
        @Option(help: "Allowed model groups, comma separated.") var models: String?
        @OptionGroup var target: Target

        func run() async throws {
            do {
                let admin = try self.target.admin()
                let (secret, summary) = try await admin.create(
                    name: self.name, rpm: self.rpm, tpm: self.tpm, dailyUSD: self.dailyUsd, monthlyUSD: self.monthlyUsd,
                    models: self.models.map { Set($0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }) })
                print(secret)
                FileHandle.standardError.write(Data("\(summary)\n".utf8))
            } catch {
                FileHandle.standardError.write(Data("multiplexer keys create: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the run-time keys (never their secrets).")
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var target: Target

        func run() async throws {
            do {
                print(try await self.target.admin().list(json: self.json))
            } catch {
                FileHandle.standardError.write(Data("multiplexer keys list: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a run-time key on every node (within a second).")
        @Argument(help: "The key's name.") var name: String
        @OptionGroup var target: Target

        func run() async throws {
            do {
                guard try await self.target.admin().revoke(name: self.name) else {
                    FileHandle.standardError.write(Data("multiplexer keys revoke: no run-time key named '\(self.name)'\n".utf8))
                    throw ExitCode(1)
                }
                print("revoked \(self.name)")
            } catch let e as ExitCode {
                throw e
            } catch {
                FileHandle.standardError.write(Data("multiplexer keys revoke: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
