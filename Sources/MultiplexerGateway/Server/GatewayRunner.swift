import Foundation
public import Logging
import MultiplexerCore
import MultiplexerUpstream
public import ServiceLifecycle
public import Tracing
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// A tracer and the service that exports its spans (run beside the gateway, stopped after it).
public struct TracingBackend: Sendable {
    public var tracer: any Tracer
    public var service: any Service
    public init(tracer: any Tracer, service: any Service) {
        self.tracer = tracer
        self.service = service
    }
}

/// Makes the ``TracingBackend`` of a `tracing:` section; its spans dropped by the exporter go to the metrics'
/// ``GatewayMetrics/droppedSpans(_:)``. (The `multiplexer` command passes swift-otel's OTLP/HTTP exporter.)
public typealias TracingBackendFactory = @Sendable (GatewayConfiguration.Tracing, GatewayMetrics, Logger) throws -> TracingBackend

/// Runs a gateway node until SIGTERM or SIGINT, then shuts down gracefully: `/readyz` turns 503
/// (for `drain`), the server stops accepting and lets in-flight requests finish (up to
/// `shutdownTimeout`), streams settle their reservations, then the store and the upstream client stop.
public enum GatewayRunner {
    /// - Parameters:
    ///   - source: the file (and overrides) a reload re-reads; `nil` disables reloads.
    ///   - watch: reload when the file changes.
    ///   - tracing: makes the tracer of a `tracing:` section.
    public static func serve(
        configuration: GatewayConfiguration, source: ConfigurationSource? = nil, watch: Bool = false, logger: Logger, drain: Duration,
        shutdownTimeout: Duration, tracing: TracingBackendFactory? = nil
    ) async throws {
        // libcurl's TLS may write to a closed socket; a dead peer must not kill the process.
        signal(SIGPIPE, SIG_IGN)
        for warning in configuration.warnings {
            logger.warning("configuration: \(warning)")
        }
        let client = try CurlClient(configuration: configuration.upstreamClientConfiguration)
        let metrics = GatewayMetrics()
        var backend: TracingBackend?
        if let t = configuration.tracing {
            if let tracing {
                // Traces are never a reason not to serve: an exporter that cannot start (OTEL_SDK_DISABLED, a bad
                // OTEL_* variable) is logged and the node serves without spans.
                do {
                    backend = try tracing(t, metrics, logger)
                    logger.info(
                        "tracing: spans go to \(t.tracesURL)",
                        metadata: ["sample_ratio": .stringConvertible(t.sampleRatio), "service.name": .string(t.serviceName)])
                } catch {
                    logger.error("tracing: the exporter could not start; serving without traces", metadata: ["error": .string("\(error)")])
                }
            } else {
                logger.warning("tracing: this build has no trace exporter; no spans are exported")
            }
        }
        let gateway = try Gateway(configuration: configuration, client: client, logger: logger, source: source, tracer: backend?.tracer, metrics: metrics)
        let app = buildApplication(gateway: gateway, client: client, watch: watch)
        logger.info(
            "starting",
            metadata: [
                "node": .string(gateway.nodeID), "address": .string("\(configuration.server.host):\(configuration.server.port)"),
                "store": .string(configuration.redis == nil ? "memory" : "redis"), "providers": .stringConvertible(configuration.providers.count),
            ])
        // Shutdown runs in reverse order: the drain flag first, then the application (server, then its services).
        // The exporter comes first, so it stops last: the spans of the last requests are sent.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = backend.map { [.init(service: $0.service)] } ?? []
        services += [.init(service: app), .init(service: DrainService(gateway: gateway, delay: drain, shutdownTimeout: shutdownTimeout))]
        var config = ServiceGroupConfiguration(
            services: services,
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
