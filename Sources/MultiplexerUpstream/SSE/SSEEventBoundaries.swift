/// Finds where server-sent events end in a byte stream, keeping none of its bytes.
///
/// The client's loop thread runs it over every chunk of a `text/event-stream` body, so that the
/// time-to-first-token and idle timers count **complete events** — a `data` field ended by a blank line, as
/// ``SSEParser`` dispatches them — and not bytes: an upstream that sends only `:` comments, keep-alive
/// blank lines, or an event a byte at a time stays silent for those timers. It also bounds one event: the
/// bytes of the event in progress (its field lines so far, comments excluded, plus the line being read,
/// comment or not) may not exceed a limit, so an endless line is refused as soon as the limit is passed,
/// without reading on.
///
/// Line ends are LF, CRLF or CR (a CRLF split between two chunks counts once), as in ``SSEParser``.
struct SSEEventBoundaries {
    /// The most bytes one event (or one line) may have.
    let maxEventBytes: Int
    /// Bytes of the line being read.
    private var lineBytes = 0
    /// What the line being read is, once its first bytes are known.
    private var lineKind = LineKind.unknown
    /// The first bytes of the line being read (enough to tell `data` from other fields).
    private var prefix: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0)
    /// Bytes of the finished field lines of the event in progress.
    private var eventBytes = 0
    /// The event in progress has a `data` field (a blank line dispatches it).
    private var eventHasData = false
    private var lastWasCR = false
    /// No byte of the stream was seen yet (a leading byte order mark is skipped, as the parser does).
    private var atStreamStart = true
    private var bomBytesSkipped = 0

    private enum LineKind {
        case unknown, data, comment, other
    }

    /// What one chunk held.
    struct Scan: Equatable {
        /// Events the chunk completed.
        var events: Int
        /// The event (or line) in progress passed ``SSEEventBoundaries/maxEventBytes``.
        var oversized: Bool
    }

    init(maxEventBytes: Int) {
        self.maxEventBytes = max(1, maxEventBytes)
    }

    /// Scans the next chunk of the stream.
    mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Scan {
        var events = 0
        for byte in bytes {
            if self.atStreamStart {
                // "\u{FEFF}" (EF BB BF) before the first line is not part of it.
                let expected: UInt8 = self.bomBytesSkipped == 0 ? 0xEF : self.bomBytesSkipped == 1 ? 0xBB : 0xBF
                if byte == expected {
                    self.bomBytesSkipped += 1
                    if self.bomBytesSkipped == 3 { self.atStreamStart = false }
                    continue
                }
                self.atStreamStart = false
                // Only a whole mark is dropped (as the parser does): the bytes of a partial one belong to the
                // first line. (Found by the FuzzSSE target: "\u{EF}data: x" counted as a data line.)
                for skipped in [UInt8(0xEF), 0xBB].prefix(self.bomBytesSkipped) {
                    if self.consume(skipped, events: &events) { return Scan(events: events, oversized: true) }
                }
            }
            if self.consume(byte, events: &events) { return Scan(events: events, oversized: true) }
        }
        return Scan(events: events, oversized: false)
    }

    /// One byte of the stream after the byte order mark; whether the event in progress is now oversized.
    private mutating func consume(_ byte: UInt8, events: inout Int) -> Bool {
        if self.lastWasCR {
            self.lastWasCR = false
            if byte == 10 { return false }
        }
        if byte == 10 || byte == 13 {
            self.lastWasCR = byte == 13
            if self.endLine() { events += 1 }
            return false
        }
        self.append(byte)
        return self.eventBytes + self.lineBytes > self.maxEventBytes
    }

    private mutating func append(_ byte: UInt8) {
        switch self.lineBytes {
        case 0: self.prefix.0 = byte
        case 1: self.prefix.1 = byte
        case 2: self.prefix.2 = byte
        case 3: self.prefix.3 = byte
        case 4: self.prefix.4 = byte
        default: break
        }
        self.lineBytes += 1
        if self.lineKind == .unknown {
            self.classify(complete: false)
        }
    }

    /// Decides what the line is from its first bytes: `:` starts a comment; `data` followed by `:` or by
    /// the line's end is a data field; anything else is another field.
    private mutating func classify(complete: Bool) {
        let p = self.prefix
        let n = min(self.lineBytes, 5)
        if p.0 == 58 {
            self.lineKind = .comment
            return
        }
        // "data:" = 64 61 74 61 3A, compared as far as known.
        let matches =
            p.0 == 0x64 && (n < 2 || p.1 == 0x61) && (n < 3 || p.2 == 0x74) && (n < 4 || p.3 == 0x61) && (n < 5 || p.4 == 0x3A)
        if !matches {
            self.lineKind = .other
        } else if n == 5 {
            self.lineKind = .data
        } else if complete {
            self.lineKind = n == 4 ? .data : .other
        }
    }

    /// Ends the current line; returns whether it dispatched an event.
    private mutating func endLine() -> Bool {
        defer {
            self.lineBytes = 0
            self.lineKind = .unknown
        }
        if self.lineBytes == 0 {
            // A blank line: dispatches the event in progress (if it has data) and starts a new one.
            let dispatched = self.eventHasData
            self.eventHasData = false
            self.eventBytes = 0
            return dispatched
        }
        if self.lineKind == .unknown { self.classify(complete: true) }
        switch self.lineKind {
        case .comment:
            break
        case .data:
            self.eventHasData = true
            self.eventBytes += self.lineBytes
        case .other, .unknown:
            self.eventBytes += self.lineBytes
        }
        return false
    }
}
