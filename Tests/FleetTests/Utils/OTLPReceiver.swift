import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MultiplexerProcesses
import MultiplexerTestSupport
import NIOCore
import ServiceLifecycle
import Synchronization

/// A span as an OTLP/HTTP export carried it (`opentelemetry.proto.trace.v1.Span`).
struct ReceivedSpan: Sendable, CustomStringConvertible {
    var traceID = ""
    var spanID = ""
    var parentSpanID: String?
    var name = ""
    /// 1 internal, 2 server, 3 client.
    var kind = 0
    var attributes: [String: AttributeValue] = [:]
    /// 0 unset, 1 ok, 2 error.
    var statusCode = 0
    /// `service.name` and the other attributes of the span's resource.
    var resource: [String: AttributeValue] = [:]

    subscript(_ key: String) -> AttributeValue? { self.attributes[key] }

    var description: String { "\(self.name) [\(self.spanID) ← \(self.parentSpanID ?? "-")] \(self.attributes)" }
}

enum AttributeValue: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case other

    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var int: Int64? { if case .int(let i) = self { return i } else { return nil } }
    var double: Double? { if case .double(let d) = self { return d } else { return nil } }
    var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }

    var description: String {
        switch self {
        case .string(let s): "\"\(s)\""
        case .bool(let b): "\(b)"
        case .int(let i): "\(i)"
        case .double(let d): "\(d)"
        case .other: "?"
        }
    }
}

/// Decodes `ExportTraceServiceRequest` (OTLP/HTTP protobuf) by the field numbers of the public
/// opentelemetry-proto definitions: only what the tests read.
struct OTLPDecoder {
    struct Malformed: Error {}

    private var bytes: [UInt8]
    private var i: Int
    private let end: Int

    private init(_ bytes: [UInt8], _ range: Range<Int>) {
        self.bytes = bytes
        self.i = range.lowerBound
        self.end = range.upperBound
    }

    /// The spans of one export request.
    static func spans(in body: [UInt8]) throws -> [ReceivedSpan] {
        var out: [ReceivedSpan] = []
        var request = OTLPDecoder(body, 0..<body.count)
        try request.fields { field, r in
            guard field == 1 else { return }  // resource_spans
            var resource: [String: AttributeValue] = [:]
            var spans: [ReceivedSpan] = []
            var rs = OTLPDecoder(body, r)
            try rs.fields { field, r in
                switch field {
                case 1:  // resource
                    var res = OTLPDecoder(body, r)
                    try res.fields { f, r in if f == 1 { let (k, v) = try Self.keyValue(body, r); resource[k] = v } }
                case 2:  // scope_spans
                    var ss = OTLPDecoder(body, r)
                    try ss.fields { f, r in if f == 2 { spans.append(try Self.span(body, r)) } }
                default: break
                }
            }
            out += spans.map { var s = $0; s.resource = resource; return s }
        }
        return out
    }

    private static func span(_ body: [UInt8], _ range: Range<Int>) throws -> ReceivedSpan {
        var span = ReceivedSpan()
        var d = OTLPDecoder(body, range)
        try d.fields(varint: { f, v in if f == 6 { span.kind = Int(v) } }) { f, r in
            switch f {
            case 1: span.traceID = Self.hex(body[r])
            case 2: span.spanID = Self.hex(body[r])
            case 4: span.parentSpanID = r.isEmpty ? nil : Self.hex(body[r])
            case 5: span.name = String(decoding: body[r], as: UTF8.self)
            case 9:
                let (k, v) = try Self.keyValue(body, r)
                span.attributes[k] = v
            case 15:
                var st = OTLPDecoder(body, r)
                try st.fields(varint: { f, v in if f == 3 { span.statusCode = Int(v) } }) { _, _ in }
            default: break
            }
        }
        return span
    }

    private static func keyValue(_ body: [UInt8], _ range: Range<Int>) throws -> (String, AttributeValue) {
        var key = ""
        var value = AttributeValue.other
        var d = OTLPDecoder(body, range)
        try d.fields { f, r in
            switch f {
            case 1: key = String(decoding: body[r], as: UTF8.self)
            case 2:
                var any = OTLPDecoder(body, r)
                try any.fields(
                    varint: { f, v in
                        if f == 2 { value = .bool(v != 0) }
                        if f == 3 { value = .int(Int64(bitPattern: v)) }
                    },
                    fixed64: { f, v in if f == 4 { value = .double(Double(bitPattern: v)) } }
                ) { f, r in if f == 1 { value = .string(String(decoding: body[r], as: UTF8.self)) } }
            default: break
            }
        }
        return (key, value)
    }

    private static func hex(_ b: ArraySlice<UInt8>) -> String {
        b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    private mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard self.i < self.end, shift < 64 else { throw Malformed() }
            let b = self.bytes[self.i]
            self.i += 1
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }

    /// Calls `lengthDelimited` for every length-delimited field (with its byte range), `varint` and `fixed64` for
    /// those; skips 32-bit fields.
    private mutating func fields(
        varint: (Int, UInt64) throws -> Void = { _, _ in }, fixed64: (Int, UInt64) throws -> Void = { _, _ in },
        _ lengthDelimited: (Int, Range<Int>) throws -> Void
    ) throws {
        while self.i < self.end {
            let tag = try self.varint()
            let field = Int(tag >> 3)
            switch tag & 7 {
            case 0: try varint(field, try self.varint())
            case 1:
                guard self.i + 8 <= self.end else { throw Malformed() }
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(self.bytes[self.i + k]) << (8 * UInt64(k)) }
                self.i += 8
                try fixed64(field, v)
            case 2:
                let n = Int(try self.varint())
                guard n >= 0, self.i + n <= self.end else { throw Malformed() }
                let r = self.i..<(self.i + n)
                self.i += n
                try lengthDelimited(field, r)
            case 5:
                guard self.i + 4 <= self.end else { throw Malformed() }
                self.i += 4
            default: throw Malformed()
            }
        }
    }
}

/// An OTLP/HTTP collector for the tests: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`, decoded
/// into ``ReceivedSpan``s. It can be told to fail (500) to test what the exporter does then.
final class OTLPReceiver: Sendable {
    let port: Int
    private let received = Mutex<[ReceivedSpan]>([])
    private let exports = Atomic<Int>(0)
    private let failing = Atomic<Bool>(false)
    private let undecodable = Atomic<Int>(0)

    private init(port: Int) {
        self.port = port
    }

    var spans: [ReceivedSpan] { self.received.withLock { $0 } }
    var exportCount: Int { self.exports.load(ordering: .relaxed) }
    var malformedCount: Int { self.undecodable.load(ordering: .relaxed) }
    func setFailing(_ fail: Bool) { self.failing.store(fail, ordering: .relaxed) }
    func clear() { self.received.withLock { $0 = [] } }

    /// The base URL (`tracing.otlp_endpoint`).
    var endpoint: String { "http://127.0.0.1:\(self.port)" }

    /// Runs a receiver on a free port for the duration of `body`.
    static func run<R: Sendable>(_ body: (OTLPReceiver) async throws -> R) async throws -> R {
        let receiver = OTLPReceiver(port: LocalPorts.free())
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            receiver.exports.add(1, ordering: .relaxed)
            var req = request
            let body = try await req.collectBody(upTo: 64 << 20)
            if receiver.failing.load(ordering: .relaxed) { return Response(status: .internalServerError) }
            do {
                let spans = try OTLPDecoder.spans(in: Array(body.readableBytesView))
                receiver.received.withLock { $0 += spans }
            } catch {
                receiver.undecodable.add(1, ordering: .relaxed)
                return Response(status: .badRequest)
            }
            var h = HTTPFields()
            h[.contentType] = "application/x-protobuf"
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer()))
        }
        var logger = Logger(label: "otlp-receiver")
        logger.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: receiver.port)), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], cancellationSignals: [], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self, returning: R.self) { tasks in
            tasks.addTask { try await group.run() }
            defer { tasks.cancelAll() }
            do {
                let result = try await body(receiver)
                await group.triggerGracefulShutdown()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
        }
    }
}
