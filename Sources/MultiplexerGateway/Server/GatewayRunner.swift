import Foundation
public import Logging
import MultiplexerCore
import MultiplexerUpstream
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// Runs a gateway node until SIGTERM or SIGINT, then shuts down gracefully: `/readyz` turns 503
/// (for `drain`), the server stops accepting and lets in-flight requests finish (up to
/// `shutdownTimeout`), streams settle their reservations, then the store and the upstream client stop.
public enum GatewayRunner {
    /// - Parameters:
    ///   - source: the file (and overrides) a reload re-reads; `nil` disables reloads.
    ///   - watch: reload when the file changes.
    public static func serve(
        configuration: GatewayConfiguration, source: ConfigurationSource? = nil, watch: Bool = false, logger: Logger, drain: Duration,
        shutdownTimeout: Duration
    ) async throws {
        // libcurl's TLS may write to a closed socket; a dead peer must not kill the process.
        signal(SIGPIPE, SIG_IGN)
        for warning in configuration.warnings {
            logger.warning("configuration: \(warning)")
        }
        let client = try CurlClient(configuration: configuration.upstreamClientConfiguration)
        let gateway = try Gateway(configuration: configuration, client: client, logger: logger, source: source)
        let app = buildApplication(gateway: gateway, client: client, watch: watch)
        logger.info(
            "starting",
            metadata: [
                "node": .string(gateway.nodeID), "address": .string("\(configuration.server.host):\(configuration.server.port)"),
                "store": .string(configuration.redis == nil ? "memory" : "redis"), "providers": .stringConvertible(configuration.providers.count),
            ])
        // Shutdown runs in reverse order: the drain flag first, then the application (server, then its services).
        var config = ServiceGroupConfiguration(
            services: [.init(service: app), .init(service: DrainService(gateway: gateway, delay: drain, shutdownTimeout: shutdownTimeout))],
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        // In-flight requests get `shutdownTimeout` after the drain; then they are cancelled (and release
        // their reservations) so that the node always exits.
        config.maximumGracefulShutdownDuration = drain + shutdownTimeout
        config.maximumCancellationDuration = .seconds(5)
        let group = ServiceGroup(configuration: config)
        try await group.run()
    }
}
