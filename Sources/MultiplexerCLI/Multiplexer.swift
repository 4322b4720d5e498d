public import ArgumentParser
import Foundation
public import Logging
import MultiplexerGateway

/// The `multiplexer` command line (ARCHITECTURE §5). Each subcommand parses its arguments and calls
/// into MultiplexerGateway; nothing else lives here.
@main
struct MultiplexerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "multiplexer",
        abstract: "An OpenAI-compatible LLM gateway cluster: one endpoint, many providers, exact fleet-wide quotas.",
        subcommands: [Serve.self, Check.self, Stats.self, MockProvider.self, Demo.self]
    )
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Bootstraps logging once per process.
func bootstrapLogging(level: Logger.Level) -> Logger {
    LoggingSystem.bootstrap { label in
        var h = GatewayLogHandler(label: label)
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

    func run() async throws {
        let logger = bootstrapLogging(level: self.logLevel)
        guard let path = self.config ?? ProcessInfo.processInfo.environment["MULTIPLEXER_CONFIG"] else {
            throw ValidationError("give --config PATH or set MULTIPLEXER_CONFIG")
        }
        var configuration: GatewayConfiguration
        do {
            configuration = try ConfigurationLoader.load(path: path)
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(1)
        }
        if let h = self.host { configuration.server.host = h }
        if let p = self.port { configuration.server.port = p }
        if let n = self.nodeId { configuration.server.nodeID = n }
        do {
            try await GatewayRunner.serve(
                configuration: configuration, logger: logger, drain: .milliseconds(Int64(self.drainSeconds * 1000)),
                shutdownTimeout: .milliseconds(Int64(self.shutdownTimeout * 1000)))
        } catch {
            logger.critical("gateway stopped", metadata: ["error": .string("\(error)")])
            throw ExitCode(1)
        }
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a configuration file; exit 1 listing every error.")

    @Option(help: "The configuration file.") var config: String

    func run() async throws {
        do {
            let c = try ConfigurationLoader.load(path: self.config)
            _ = try c.routingTable()
            for w in c.warnings { print("warning: \(w)") }
            print("\(self.config): OK — \(c.providers.count) providers, \(c.models.count) model groups, \(c.keys.count) keys, store: \(c.redis == nil ? "in-memory" : "redis")")
        } catch {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the fleet's usage, windows, cooldowns and live nodes from Redis.")

    @Option(help: "Read the Redis settings and names from this configuration file.") var config: String?
    @Option(help: "Redis URL (instead of --config).") var redis: String?
    @Option(help: "Namespace (with --redis).") var namespace: String = "mux"
    @Flag(help: "Print JSON for scripts.") var json = false

    func run() async throws {
        do {
            print(try await StatsReport.render(configPath: self.config, redisURL: self.redis, namespace: self.namespace, json: self.json))
        } catch {
            FileHandle.standardError.write(Data("multiplexer stats: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
