import MultiplexerUpstream
import Testing

struct SSEParserTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var input: [UInt8]
        var events: [SSEEvent]
        var end: SSEStreamEnd
        var description: String { self.name }

        init(_ name: String, _ input: String, _ events: [SSEEvent], end: SSEStreamEnd = .closedWithoutDone) {
            self.name = name
            self.input = Array(input.utf8)
            self.events = events
            self.end = end
        }
    }

    static let cases: [Case] = [
        Case("data with space", "data: hello\n\n", [SSEEvent(data: "hello")]),
        Case("data without space", "data:hello\n\n", [SSEEvent(data: "hello")]),
        Case("only one space is removed", "data:  two\n\n", [SSEEvent(data: " two")]),
        Case("multi-line data joined by LF", "data: a\ndata: b\ndata:c\n\n", [SSEEvent(data: "a\nb\nc")]),
        Case(
            "event and id fields", "event: delta\nid: 7\ndata: x\n\ndata: y\n\n",
            [SSEEvent(event: "delta", data: "x", id: "7"), SSEEvent(data: "y", id: "7")]),
        Case("comments are ignored", ": keep-alive\n\n:another\ndata: x\n: inside\n\n", [SSEEvent(data: "x")]),
        Case("CRLF line endings", "data: a\r\n\r\ndata: b\r\ndata: c\r\n\r\n", [SSEEvent(data: "a"), SSEEvent(data: "b\nc")]),
        Case("CR line endings", "data: a\r\rdata: b\rdata: c\r\r", [SSEEvent(data: "a"), SSEEvent(data: "b\nc")]),
        Case("mixed line endings", "data: a\r\n\ndata: b\r\rdata: c\n\r\n", [SSEEvent(data: "a"), SSEEvent(data: "b"), SSEEvent(data: "c")]),
        Case(
            "DONE ends the stream", "data: {\"a\":1}\n\ndata: [DONE]\n\n", [SSEEvent(data: "{\"a\":1}"), SSEEvent(data: "[DONE]")],
            end: .done),
        Case("closed without DONE", "data: {\"a\":1}\n\n", [SSEEvent(data: "{\"a\":1}")], end: .closedWithoutDone),
        Case("malformed JSON passes through", "data: {not json\n\ndata: [1,\n\n", [SSEEvent(data: "{not json"), SSEEvent(data: "[1,")]),
        Case("unterminated last event is kept", "data: a\n\ndata: tail", [SSEEvent(data: "a"), SSEEvent(data: "tail")]),
        Case("field without colon", "data\n\n", [SSEEvent(data: "")]),
        Case("blank lines alone dispatch nothing", "\n\n\r\n: c\n\n", []),
        Case("byte order mark is dropped", "\u{FEFF}data: x\n\n", [SSEEvent(data: "x")]),
        Case("retry and unknown fields are ignored", "retry: 10\nfoo: bar\ndata: x\n\n", [SSEEvent(data: "x")]),
        Case("event type resets after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", [SSEEvent(event: "a", data: "1"), SSEEvent(data: "2")]),
        Case("multi-byte UTF-8", "data: héllo 🎉 世界\n\n", [SSEEvent(data: "héllo 🎉 世界")]),
        Case(
            "OpenAI chunks", "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n: ping\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\ndata: [DONE]\n\n",
            [
                SSEEvent(data: "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}"), SSEEvent(data: "{\"choices\":[],\"usage\":{\"prompt_tokens\":3}}"),
                SSEEvent(data: "[DONE]"),
            ], end: .done),
        Case("DONE with blanks", "data:  [DONE] \n\n", [SSEEvent(data: " [DONE] ")], end: .done),
    ]

    private static func run(_ chunks: [ArraySlice<UInt8>]) -> ([SSEEvent], SSEStreamEnd) {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        for chunk in chunks { parser.parse(chunk, into: &events) }
        let (tail, end) = parser.finish()
        return (events + tail, end)
    }

    @Test(arguments: cases)
    func parsesWholeInput(_ c: Case) {
        let (events, end) = Self.run([c.input[...]])
        #expect(events == c.events)
        #expect(end == c.end)
    }

    @Test(arguments: cases)
    func parsesByteByByte(_ c: Case) {
        let (events, end) = Self.run(c.input.indices.map { c.input[$0...$0] })
        #expect(events == c.events)
        #expect(end == c.end)
    }

    @Test(arguments: cases)
    func parsesRandomSplits(_ c: Case) {
        for seed in UInt64(1)...50 {
            var random = SplitMix64(seed: seed)
            var chunks: [ArraySlice<UInt8>] = []
            var start = 0
            while start < c.input.count {
                let length = Int.random(in: 0...min(7, c.input.count - start), using: &random)
                chunks.append(c.input[start..<(start + length)])
                start += length
            }
            let (events, end) = Self.run(chunks)
            #expect(events == c.events, "seed \(seed)")
            #expect(end == c.end, "seed \(seed)")
        }
    }

    @Test
    func doneIsRecognisedOnTheEvent() {
        var parser = SSEParser()
        let events = parser.parse(Array("data: [DONE]\n\n".utf8))
        #expect(events.first?.isDone == true)
        #expect(parser.sawDone)
        #expect(SSEEvent(data: "{\"x\":\"[DONE]\"}").isDone == false)
    }

    @Test
    func idPersistsAcrossEvents() {
        var parser = SSEParser()
        let events = parser.parse(Array("id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n".utf8))
        #expect(events.map(\.id) == ["1", "1", ""])
    }
}
