public import Logging
public import MultiplexerGateway
import OTel
import ServiceLifecycle
import Tracing

/// The `tracing:` section as swift-otel's tracer and OTLP/HTTP (protobuf) exporter (ARCHITECTURE §10).
///
/// - Head sampling: parent-based, `sample_ratio` for the traces this node starts; a client's `traceparent`
///   decides for the traces it continues, and is propagated either way.
/// - The export never blocks a request: ending a span hands it to the exporter's task; the batch processor
///   keeps at most 2,048 spans and drops what would not fit (queue full) or what the collector refused or
///   never answered (export failed). Both are counted in `multiplexer_trace_spans_dropped_total` (read from the
///   exporter's own diagnostics) and logged at warning.
/// - The OpenTelemetry environment variables (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_EXPORTER_OTLP_HEADERS`,
///   `OTEL_EXPORTER_OTLP_TIMEOUT`, …) override the file, as the OpenTelemetry specification says.
public enum OTLPTracing {
    /// The factory the `multiplexer serve` command passes to ``GatewayRunner``.
    public static let backend: TracingBackendFactory = { tracing, metrics, logger in
        try Self.make(tracing, dropped: { metrics.droppedSpans($0) }, logger: logger)
    }

    /// A tracer exporting to `tracing.otlpEndpoint` and the service that runs its export.
    ///
    /// - Parameters:
    ///   - tracing: endpoint, service name, sample ratio.
    ///   - dropped: told of every span the exporter dropped.
    ///   - logger: where the exporter's warnings go.
    public static func make(
        _ tracing: GatewayConfiguration.Tracing, dropped: @escaping @Sendable (Int) -> Void, logger: Logger
    ) throws -> TracingBackend {
        var config = OTel.Configuration.default
        config.serviceName = tracing.serviceName
        config.resourceAttributes["service.version"] = MultiplexerVersion.current
        config.metrics.enabled = false
        config.logs.enabled = false
        config.traces.sampler = .parentBasedTraceIDRatio(ratio: tracing.sampleRatio) ?? .parentBasedAlwaysOn
        config.traces.otlpExporter.endpoint = tracing.tracesURL
        config.traces.otlpExporter.protocol = .httpProtobuf
        config.traces.otlpExporter.timeout = .seconds(5)
        config.traces.batchSpanProcessor.exportTimeout = .seconds(10)
        config.diagnosticLogLevel = .warning
        var diagnostics = Logger(label: "otel") { label in DropCountingLogHandler(label: label, base: logger, dropped: dropped) }
        diagnostics.logLevel = .warning
        config.diagnosticLogger = .custom(diagnostics)
        let (tracer, service) = try OTel.makeTracingBackend(configuration: config)
        return TracingBackend(tracer: tracer, service: service)
    }
}

/// swift-otel's diagnostics, forwarded to the gateway's logger, with the spans its batch processor reports
/// dropped (`dropped_count` when its queue was full, `batch_size` when an export failed) counted.
struct DropCountingLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .warning
    let label: String
    let base: Logger
    let dropped: @Sendable (Int) -> Void

    init(label: String, base: Logger, dropped: @escaping @Sendable (Int) -> Void) {
        self.label = label
        self.base = base
        self.dropped = dropped
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = self.metadata
        if let m = event.metadata { all.merge(m) { _, b in b } }
        let text = event.message.description
        if text.hasPrefix("Spans were dropped"), let n = all["dropped_count"].flatMap({ Int($0.description) }) {
            self.dropped(n)
        } else if text.hasPrefix("Failed to export batch"), let n = all["batch_size"].flatMap({ Int($0.description) }) {
            self.dropped(n)
        }
        var forwarded: Logger.Metadata = ["component": .string("otel")]
        for k in ["dropped_count", "batch_size", "queue_size", "error"] { if let v = all[k] { forwarded[k] = v } }
        self.base.log(level: event.level, "trace export: \(text)", metadata: forwarded)
    }
}
