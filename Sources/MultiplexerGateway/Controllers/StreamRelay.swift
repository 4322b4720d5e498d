import HTTPTypes
import Hummingbird
import MultiplexerCore
import MultiplexerUpstream
import NIOCore
import Prometheus

/// Relays a provider's server-sent events to the client as they arrive, and settles the reservation
/// when the stream ends.
///
/// - Each event is written as soon as it is read — events that arrived in one read from the provider in
///   one write, never waiting for a later one; awaiting the write gives back-pressure all the way to the
///   upstream transfer.
/// - Usage comes from the final chunk (the gateway asked upstream for `stream_options.include_usage`);
///   that usage-only chunk is forwarded only if the client asked for it.
/// - A stream that closes cleanly without `[DONE]` is finalised: the gateway sends `data: [DONE]`.
/// - A stream that breaks after bytes were sent ends with `data: {"error": …}` and **no** `[DONE]`, so
///   it is never presented as complete.
/// - A client that goes away ends the relay; dropping the iterator aborts the upstream transfer.
struct StreamRelay: Sendable {
    let controller: OpenAIController
    let log: OpenAIController.RequestLog
    let clientWantsUsage: Bool

    /// Leases of long streams are renewed this often.
    static let leaseRenewal: Duration = .seconds(60)

    func response(events: SSEEventStream, pending: PendingSettlement, headers: HTTPFields) -> Response {
        var h = headers
        h[.contentType] = "text/event-stream"
        h[.cacheControl] = "no-cache"
        let relay = self
        return Response(status: .ok, headers: h, body: ResponseBody { writer in
            await relay.relay(events: events, pending: pending, writer: &writer)
        })
    }

    private func relay(events: SSEEventStream, pending: PendingSettlement, writer: inout any ResponseBodyWriter) async {
        var iterator = events.makeAsyncIterator()
        var usage: TokenUsage?
        var result: SettlementResult = .abandoned
        var status = 200
        var settled = false
        var lastRenewal = ContinuousClock.now
        let lease = self.controller.gateway.table.providers[pending.reservation.provider]?.leaseDuration ?? .seconds(180)
        // Events that arrived together (one read from the provider) go out in one write; the buffer is
        // written before the relay waits for more, so no event is ever held back.
        var out = ByteBuffer()
        do {
            while true {
                let event: SSEEvent?
                if let buffered = iterator.nextIfBuffered() {
                    event = buffered
                } else {
                    if out.readableBytes > 0 {
                        try await writer.write(out)
                        out.clear()
                    }
                    if lastRenewal.duration(to: .now) > Self.leaseRenewal {
                        lastRenewal = .now
                        try? await pending.renewLease(for: lease)
                    }
                    do {
                        event = try await iterator.next()
                    } catch {
                        // The provider broke mid-stream (reset, idle timeout): say so, and never send [DONE].
                        let e = OpenAIError.upstream(
                            status: 502, "The provider's stream broke before it finished (\(error.kind.rawValue)).", code: "upstream_stream_error")
                        out.writeString("data: \(e.json)\n\n")
                        try await writer.write(out)
                        result = .failure
                        status = 502
                        break
                    }
                }
                guard let event, !event.isDone else {
                    out.writeString("data: [DONE]\n\n")
                    try await writer.write(out)
                    result = .success(usage: usage)
                    break
                }
                if let u = Self.usage(in: event.data) {
                    usage = u.usage
                    if u.usageOnly && !self.clientWantsUsage { continue }
                }
                Self.frame(event, into: &out)
            }
            // Settled before the response ends: a client that has read the whole stream finds the
            // provider's windows and counters already updated (its next request is admitted on them).
            await pending.settle(result)
            settled = true
            try await writer.finish(nil)
        } catch {
            // Writing to the client failed: it went away. What was sent is not a complete answer.
            if !settled {
                result = .abandoned
                status = 499
            }
        }
        if !settled { await pending.settle(result) }
        var log = self.log
        log.tokens = usage
        self.controller.gateway.metrics.inFlight.decrement()
        self.controller.finish(log, status: status)
    }

    /// Appends `e` in SSE framing: `event:` if named, one `data:` line per line of data, a blank line.
    static func frame(_ e: SSEEvent, into out: inout ByteBuffer) {
        if let name = e.event {
            out.writeString("event: ")
            out.writeString(name)
            out.writeString("\n")
        }
        for line in e.data.split(separator: "\n", omittingEmptySubsequences: false) {
            out.writeString("data: ")
            out.writeSubstring(line)
            out.writeString("\n")
        }
        out.writeString("\n")
    }

    /// The usage in a chunk, and whether the chunk carries nothing else (`choices` empty).
    static func usage(in data: String) -> (usage: TokenUsage, usageOnly: Bool)? {
        guard data.contains("\"usage\""), let m = JSONParser.members(["usage", "choices"], in: Array(data.utf8)),
            let u = m["usage"].flatMap(OpenAIResponseInspector.usage(from:))
        else { return nil }
        return (u, m["choices"]?.arrayValue?.isEmpty ?? true)
    }
}
