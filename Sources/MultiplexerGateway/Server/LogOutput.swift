import Foundation
public import Logging
import MultiplexerCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Log lines for a file descriptor (standard error), written by a background thread.
///
/// A gateway logs one line per request; formatting it with `StreamLogHandler` and writing it with one
/// `write(2)` per line cost ~8 % of the gateway's CPU at 7k requests/s (perf, `docs/benchmarks.md`). Here a
/// caller only appends the line's bytes to a buffer under a lock, and a dedicated thread writes the buffer
/// every ``flushInterval`` (or at once when it passes ``flushThreshold``). Lines at `warning` and above are
/// written before ``GatewayLogHandler/log(event:)`` returns, with everything queued before them.
///
/// A caller of a line below `warning` never blocks on the descriptor: if it stops draining (a full pipe) the
/// buffer grows to ``maximumBufferedBytes`` (8 MB) and further lines are dropped and counted; the next write
/// reports how many. (A `warning` or worse waits for its write, as it would with `StreamLogHandler`.)
public final class LogOutput: Sendable {
    /// Standard error, shared by every handler of the process.
    public static let standardError = LogOutput(fileDescriptor: 2)

    /// Seconds between two writes of the background thread.
    static let flushInterval = 0.05
    /// A buffer this large is written at once by the appending thread.
    static let flushThreshold = 64 * 1024

    private struct State {
        var buffer: [UInt8] = []
        var dropped = 0
        var writerStarted = false
    }

    private let fileDescriptor: Int32
    /// Lines that would grow the buffer beyond this are dropped (and counted).
    let maximumBufferedBytes: Int
    private let state = Mutex(State())
    /// Serialises writers (the background thread and urgent lines) so lines keep their order.
    private let writeLock = Mutex(())

    init(fileDescriptor: Int32, maximumBufferedBytes: Int = 8 * 1024 * 1024) {
        self.fileDescriptor = fileDescriptor
        self.maximumBufferedBytes = maximumBufferedBytes
    }

    /// Queues one line (a newline is added); `urgent` writes it, and everything before it, at once.
    func append(_ line: inout String, urgent: Bool) {
        let (startWriter, flushNow) = self.state.withLock { s -> (Bool, Bool) in
            if s.buffer.count + line.utf8.count + 1 > self.maximumBufferedBytes {
                s.dropped += 1
                return (false, false)
            }
            line.withUTF8 { s.buffer.append(contentsOf: $0) }
            s.buffer.append(UInt8(ascii: "\n"))
            let start = !s.writerStarted
            s.writerStarted = true
            return (start, urgent || s.buffer.count >= Self.flushThreshold)
        }
        if startWriter { self.startWriter() }
        if flushNow { self.flush() }
    }

    /// Writes what is queued. Called by the background thread, for urgent lines, and at shutdown.
    public func flush() {
        self.writeLock.withLock { _ in
            var (bytes, dropped) = self.state.withLock { s -> ([UInt8], Int) in
                var taken: [UInt8] = []
                swap(&taken, &s.buffer)
                defer { s.dropped = 0 }
                return (taken, s.dropped)
            }
            if dropped > 0 { bytes += Array("[log output was blocked: \(dropped) lines dropped]\n".utf8) }
            guard !bytes.isEmpty else { return }
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = write(self.fileDescriptor, raw.baseAddress! + offset, raw.count - offset)
                    if n > 0 {
                        offset += n
                    } else if n < 0 && errno == EINTR {
                        continue
                    } else {
                        return
                    }
                }
            }
        }
    }

    /// Starts the background writer (`log-writer`), at the first line. It holds the output weakly and ends
    /// within one flush interval after the output is released; the process-wide ``standardError`` is never
    /// released, so its writer runs for the life of the process (nothing to join: it only ever sleeps or writes).
    private func startWriter() {
        let interval = UInt32(Self.flushInterval * 1_000_000)
        _ = DedicatedThread(name: "log-writer") { [weak self] in
            while true {
                usleep(interval)
                guard let output = self else { return }
                output.flush()
            }
        }
    }
}

/// A `LogHandler` that writes through a ``LogOutput``, cheap to call on the request path, in one of two
/// formats (`server.log_format`):
///
/// - `text`: `StreamLogHandler`'s (`time level label : key=value … message`, metadata sorted);
/// - `json`: one JSON object per line — `timestamp`, `level`, `logger`, `message`, then every metadata field
///   by its name (integers as numbers, everything else as strings), for log shippers.
public struct GatewayLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let output: LogOutput
    private let json: Bool

    public init(label: String, output: LogOutput = .standardError, json: Bool = false) {
        self.label = label
        self.output = output
        self.json = json
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        if self.json { return self.logJSON(event) }
        var line = String()
        line.reserveCapacity(256)
        Self.appendTimestamp(to: &line)
        line += " "
        line += event.level.rawValue
        line += " "
        line += self.label
        line += " :"
        var all = self.metadata
        if let provided = self.metadataProvider?.get() { all.merge(provided) { _, b in b } }
        if let explicit = event.metadata { all.merge(explicit) { _, b in b } }
        if !all.isEmpty {
            for (k, v) in all.sorted(by: { $0.key < $1.key }) {
                line += " "
                line += k
                line += "="
                line += v.description
            }
        }
        line += " "
        line += event.message.description
        self.output.append(&line, urgent: event.level >= .warning)
    }

    /// The fields every JSON record has; metadata of these names is left out (it cannot overwrite them).
    static let reservedJSONFields: Set<String> = ["timestamp", "level", "logger", "message"]

    private func logJSON(_ event: LogEvent) {
        var line = "{\"timestamp\":\""
        line.reserveCapacity(320)
        Self.appendTimestamp(to: &line)
        line += "\",\"level\":\""
        line += event.level.rawValue
        line += "\",\"logger\":"
        JSONValue.writeString(self.label, into: &line)
        line += ",\"message\":"
        JSONValue.writeString(event.message.description, into: &line)
        var all = self.metadata
        if let provided = self.metadataProvider?.get() { all.merge(provided) { _, b in b } }
        if let explicit = event.metadata { all.merge(explicit) { _, b in b } }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) where !Self.reservedJSONFields.contains(k) {
            line += ","
            JSONValue.writeString(k, into: &line)
            line += ":"
            switch v {
            case .stringConvertible(let c) where c is any BinaryInteger:
                line += c.description
            default:
                JSONValue.writeString(v.description, into: &line)
            }
        }
        line += "}"
        self.output.append(&line, urgent: event.level >= .warning)
    }

    /// `2026-11-25T23:35:10.220Z` (UTC, milliseconds).
    static func appendTimestamp(to line: inout String) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var seconds = ts.tv_sec
        var t = tm()
        gmtime_r(&seconds, &t)
        func two(_ v: Int32) {
            if v < 10 { line += "0" }
            line += String(v)
        }
        line += String(t.tm_year + 1900)
        line += "-"
        two(t.tm_mon + 1)
        line += "-"
        two(t.tm_mday)
        line += "T"
        two(t.tm_hour)
        line += ":"
        two(t.tm_min)
        line += ":"
        two(t.tm_sec)
        line += "."
        let ms = Int(ts.tv_nsec) / 1_000_000
        if ms < 100 { line += "0" }
        if ms < 10 { line += "0" }
        line += String(ms)
        line += "Z"
    }
}
