// The SSE parser and the event-boundary scanner over a provider's event stream, split into chunks.
//
// Input: byte 0 chooses the chunk sizes, the rest is the stream. Properties:
// - parsing in chunks gives the same events as parsing at once (also after `finish()`);
// - the boundary scanner (which the upstream client's timers and event-size bound rely on) counts exactly the
//   events the parser dispatched before `finish()`;
// - with a limit, the scanner reports an oversized event only when some event or line really is that big.
import FuzzDriver
@testable import MultiplexerUpstream

fuzz { data, size in
    let input = bytes(data, size)
    guard let seed = input.first else { return 0 }
    let stream = Array(input.dropFirst())

    var whole = SSEParser()
    let wholeEvents = whole.parse(stream)
    let wholeEnd = whole.finish()

    var chunked = SSEParser()
    var chunkedEvents: [SSEEvent] = []
    var boundaries = SSEEventBoundaries(maxEventBytes: 1 << 30)
    var scanned = 0
    var at = 0
    var step = Int(seed % 7) + 1
    while at < stream.count {
        let end = min(stream.count, at + step)
        let chunk = stream[at..<end]
        chunked.parse(chunk, into: &chunkedEvents)
        let scan = Array(chunk).withUnsafeBytes { boundaries.scan($0) }
        require(!scan.oversized, "no event is 2^30 bytes")
        scanned += scan.events
        at = end
        step = (step * 5 + Int(seed)) % 13 + 1
    }
    require(chunkedEvents == wholeEvents, "chunked events \(chunkedEvents) != whole \(wholeEvents)")
    require(scanned == wholeEvents.count, "scanner counted \(scanned), parser dispatched \(wholeEvents.count)")
    let chunkedEnd = chunked.finish()
    require(chunkedEnd == wholeEnd, "finish differs")
    for e in wholeEvents + wholeEnd.events { _ = e.isDone }

    // A small limit: the scanner may refuse the stream, never crash, and never refuse a tiny one.
    let limit = Int(seed) + 1
    var bounded = SSEEventBoundaries(maxEventBytes: limit)
    let oversized = stream.withUnsafeBytes { bounded.scan($0) }.oversized
    if stream.count <= limit { require(!oversized, "a \(stream.count)-byte stream exceeds a \(limit)-byte limit") }
    return 0
}
