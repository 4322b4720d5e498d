/// One server-sent event.
public struct SSEEvent: Sendable, Hashable {
    /// The `event:` field, `nil` when the event had none (a "message").
    public var event: String?
    /// The `data:` lines joined by `"\n"`. Not interpreted: a non-JSON payload is passed through as it came.
    public var data: String
    /// The last `id:` field seen on the stream so far, `nil` if none.
    public var id: String?

    /// - Parameters:
    ///   - event: the event type.
    ///   - data: the payload.
    ///   - id: the last event id.
    public init(event: String? = nil, data: String, id: String? = nil) {
        self.event = event
        self.data = data
        self.id = id
    }

    /// Whether this is OpenAI's end-of-stream marker, `data: [DONE]`.
    public var isDone: Bool {
        SSEParser.isDoneMarker(self.data.utf8)
    }
}

/// How an event stream ended.
public enum SSEStreamEnd: Sendable, Hashable {
    /// After a `data: [DONE]` event.
    case done
    /// The connection closed cleanly without `[DONE]`: the gateway finalises the stream itself.
    case closedWithoutDone
}
