import Testing

@testable import MultiplexerUpstream

/// The loop thread's event finder must count exactly the events the parser dispatches, wherever the chunks
/// are split, and stop an event that grows past its limit without reading on.
struct SSEEventBoundariesTests {
    /// Events the parser dispatches from `chunks` before the stream's end (the end's lenient dispatch of an
    /// unterminated event is not a complete event).
    private static func parserEvents(_ chunks: [ArraySlice<UInt8>]) -> Int {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        for chunk in chunks { parser.parse(chunk, into: &events) }
        return events.count
    }

    private static func scannerEvents(_ chunks: [ArraySlice<UInt8>], max: Int = 1 << 20) -> SSEEventBoundaries.Scan {
        var scanner = SSEEventBoundaries(maxEventBytes: max)
        var total = SSEEventBoundaries.Scan(events: 0, oversized: false)
        for chunk in chunks {
            let scan = Array(chunk).withUnsafeBytes { scanner.scan($0) }
            total.events += scan.events
            if scan.oversized {
                total.oversized = true
                break
            }
        }
        return total
    }

    private static func split(_ bytes: [UInt8], using random: inout SplitMix64) -> [ArraySlice<UInt8>] {
        var chunks: [ArraySlice<UInt8>] = []
        var start = 0
        while start < bytes.count {
            let length = Int(random.next() % 7) + 1
            chunks.append(bytes[start..<min(bytes.count, start + length)])
            start += length
        }
        return chunks
    }

    @Test(arguments: SSEParserTests.cases)
    func countsWhatTheParserDispatches(_ c: SSEParserTests.Case) {
        var random = SplitMix64(seed: 7)
        let expected = Self.parserEvents([c.input[...]])
        #expect(Self.scannerEvents([c.input[...]]).events == expected)
        for _ in 0..<50 {
            let chunks = Self.split(c.input, using: &random)
            #expect(Self.scannerEvents(chunks).events == expected, "\(c.name)")
        }
    }

    /// Found by the FuzzSSE target: the scanner dropped the bytes of a partial byte order mark, so
    /// `EF "data: x"` was a data line to it and an unknown field to the parser.
    @Test(arguments: [[0xEF], [0xEF, 0xBB], [0xEF, 0xBF], [0xEF, 0xBB, 0xBF], [0xBB]] as [[UInt8]])
    func aPartialByteOrderMarkBelongsToTheFirstLine(_ mark: [UInt8]) {
        let input = mark + Array("data: x\n\ndata: y\n\n".utf8)
        let expected = Self.parserEvents([input[...]])
        #expect(expected == (mark == [0xEF, 0xBB, 0xBF] ? 2 : 1))
        #expect(Self.scannerEvents([input[...]]).events == expected)
        #expect(Self.scannerEvents(input.map { [$0][...] }).events == expected, "byte by byte")
    }

    @Test
    func agreesWithTheParserOnRandomStreams() {
        let pieces = ["data: x", "data:", "data", "dat", "datax: 1", ":", ": ping", "event: e", "id: 1", "retry: 3", "x", " ", "\n", "\r", "\r\n", "\n\n", "\u{FEFF}"]
        var random = SplitMix64(seed: 42)
        for _ in 0..<2000 {
            var text = ""
            for _ in 0..<Int(random.next() % 20) { text += pieces[Int(random.next() % UInt64(pieces.count))] }
            let bytes = Array(text.utf8)
            let expected = Self.parserEvents([bytes[...]])
            #expect(Self.scannerEvents(Self.split(bytes, using: &random)).events == expected, "\(text.debugDescription)")
        }
    }

    @Test
    func commentsAndBlankLinesAreNotEvents() {
        let keepAlive = Array(String(repeating: ": keep-alive\n\n\n\r\n", count: 100).utf8)
        #expect(Self.scannerEvents([keepAlive[...]]) == .init(events: 0, oversized: false))
    }

    @Test
    func anEndlessLineIsStoppedAtTheLimit() {
        let line = Array("data: ".utf8) + [UInt8](repeating: 0x61, count: 5000)
        var random = SplitMix64(seed: 1)
        let scan = Self.scannerEvents(Self.split(line, using: &random), max: 4096)
        #expect(scan.oversized)
        // An endless comment line is stopped too; many small events under the limit are not.
        #expect(Self.scannerEvents([(Array(":".utf8) + [UInt8](repeating: 0x61, count: 5000))[...]], max: 4096).oversized)
        let small = Array(String(repeating: "data: \(String(repeating: "a", count: 1000))\n\n", count: 20).utf8)
        #expect(Self.scannerEvents([small[...]], max: 4096) == .init(events: 20, oversized: false))
    }

    @Test
    func anEventOfManyLinesCountsAllOfThem() {
        let event = Array(String(repeating: "data: \(String(repeating: "a", count: 100))\n", count: 50).utf8)
        #expect(Self.scannerEvents([event[...]], max: 4096).oversized)
        // Comment lines between events are not part of any event.
        let comments = Array(String(repeating: ": \(String(repeating: "c", count: 100))\n", count: 50).utf8) + Array("data: x\n\n".utf8)
        #expect(Self.scannerEvents([comments[...]], max: 4096) == .init(events: 1, oversized: false))
    }
}
