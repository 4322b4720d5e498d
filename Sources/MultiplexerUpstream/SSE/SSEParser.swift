/// An incremental parser of `text/event-stream` bodies (the WHATWG server-sent events format), fed with
/// chunks split at arbitrary byte boundaries.
///
/// - Lines end with CRLF, LF or CR (also when a CRLF pair is split between two chunks).
/// - `data:` lines, with or without a space after the colon, are joined by `"\n"` into one event; a blank
///   line dispatches it. `event:` and `id:` fields are kept; `retry:` and unknown fields are ignored;
///   lines starting with `:` are comments and are ignored. A leading byte order mark is dropped.
/// - Payloads are not interpreted: a malformed (non-JSON) event comes out as raw text, never as an error.
/// - `data: [DONE]` is reported by ``SSEEvent/isDone`` and ``sawDone``; ``finish()`` tells whether the
///   stream ended with it. An event whose blank line never came is still dispatched by ``finish()`` (more
///   lenient than the WHATWG rules, so that a provider's last chunk is not lost).
public struct SSEParser: Sendable {
    private var line: [UInt8] = []
    private var lastWasCR = false
    private var atStart = true
    private var data: [UInt8] = []
    private var hasData = false
    private var eventType: String?
    private var lastEventID: String?
    /// Whether a `data: [DONE]` event was parsed.
    public private(set) var sawDone = false

    public init() {}

    /// Parses the next chunk and returns the events it completed.
    ///
    /// - Parameter bytes: the next bytes of the stream.
    public mutating func parse(_ bytes: some Sequence<UInt8>) -> [SSEEvent] {
        var events: [SSEEvent] = []
        self.parse(bytes, into: &events)
        return events
    }

    /// Parses the next chunk, appending the events it completed to `events`.
    ///
    /// - Parameters:
    ///   - bytes: the next bytes of the stream.
    ///   - events: receives the completed events.
    public mutating func parse(_ bytes: some Sequence<UInt8>, into events: inout [SSEEvent]) {
        let handled: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            self.parse(buffer: buffer, into: &events)
        }
        if handled == nil {
            Array(bytes).withUnsafeBufferPointer { self.parse(buffer: $0, into: &events) }
        }
    }

    /// Ends the stream: processes an unterminated last line and dispatches a pending event.
    ///
    /// - Returns: the events still pending, and whether the stream ended with `[DONE]`.
    public mutating func finish() -> (events: [SSEEvent], end: SSEStreamEnd) {
        var events: [SSEEvent] = []
        if !self.line.isEmpty {
            let line = self.line
            self.line = []
            line.withUnsafeBufferPointer { self.process(line: $0[...], into: &events) }
        }
        self.lastWasCR = false
        self.dispatch(into: &events)
        return (events, self.sawDone ? .done : .closedWithoutDone)
    }

    // MARK: - Lines

    private mutating func parse(buffer: UnsafeBufferPointer<UInt8>, into events: inout [SSEEvent]) {
        var index = 0
        let count = buffer.count
        while index < count {
            if self.lastWasCR {
                self.lastWasCR = false
                if buffer[index] == Self.lf {
                    index += 1
                    continue
                }
            }
            var end = index
            while end < count, buffer[end] != Self.lf, buffer[end] != Self.cr { end += 1 }
            if end == count {
                self.line.append(contentsOf: buffer[index..<count])
                return
            }
            if self.line.isEmpty {
                self.process(line: buffer[index..<end], into: &events)
            } else {
                self.line.append(contentsOf: buffer[index..<end])
                let line = self.line
                self.line.removeAll(keepingCapacity: true)
                line.withUnsafeBufferPointer { self.process(line: $0[...], into: &events) }
            }
            self.lastWasCR = buffer[end] == Self.cr
            index = end + 1
        }
    }

    private mutating func process(line rawLine: Slice<UnsafeBufferPointer<UInt8>>, into events: inout [SSEEvent]) {
        var line = rawLine
        if self.atStart {
            self.atStart = false
            if line.starts(with: [0xEF, 0xBB, 0xBF]) { line = line.dropFirst(3) }
        }
        guard let first = line.first else {
            self.dispatch(into: &events)
            return
        }
        if first == Self.colon { return }  // comment
        let field: Slice<UnsafeBufferPointer<UInt8>>
        var value: Slice<UnsafeBufferPointer<UInt8>>
        if let colon = line.firstIndex(of: Self.colon) {
            field = line[..<colon]
            value = line[(colon + 1)...]
            if value.first == Self.space { value = value.dropFirst() }
        } else {
            field = line
            value = line[line.endIndex...]
        }
        if field.elementsEqual("data".utf8) {
            self.data.append(contentsOf: value)
            self.data.append(Self.lf)
            self.hasData = true
        } else if field.elementsEqual("event".utf8) {
            self.eventType = String(decoding: value, as: UTF8.self)
        } else if field.elementsEqual("id".utf8) {
            if !value.contains(0) { self.lastEventID = String(decoding: value, as: UTF8.self) }
        }
        // "retry" and unknown fields are ignored.
    }

    private mutating func dispatch(into events: inout [SSEEvent]) {
        defer {
            self.data.removeAll(keepingCapacity: true)
            self.hasData = false
            self.eventType = nil
        }
        guard self.hasData else { return }
        if self.data.last == Self.lf { self.data.removeLast() }
        let event = SSEEvent(
            event: self.eventType.flatMap { $0.isEmpty ? nil : $0 }, data: String(decoding: self.data, as: UTF8.self), id: self.lastEventID)
        if Self.isDoneMarker(self.data) { self.sawDone = true }
        events.append(event)
    }

    /// `[DONE]`, allowing surrounding blanks.
    static func isDoneMarker(_ bytes: some BidirectionalCollection<UInt8>) -> Bool {
        var slice = bytes[...]
        while let first = slice.first, first == Self.space || first == 9 { slice = slice.dropFirst() }
        while let last = slice.last, last == Self.space || last == 9 { slice = slice.dropLast() }
        return slice.elementsEqual("[DONE]".utf8)
    }

    private static let lf: UInt8 = 10
    private static let cr: UInt8 = 13
    private static let colon: UInt8 = 58
    private static let space: UInt8 = 32
}
