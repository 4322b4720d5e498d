public import MultiplexerCore
import MultiplexerUpstream

extension Multiplexer {
    /// Chat operations: `mux.chat.completions.create(…)`, as on an OpenAI client.
    public var chat: Chat { Chat(multiplexer: self) }

    /// The `chat` namespace.
    public struct Chat: Sendable {
        let multiplexer: Multiplexer

        /// Chat completions.
        public var completions: Completions { Completions(multiplexer: self.multiplexer) }

        /// `chat.completions`: one routed call per request, with failover (see ``Multiplexer``).
        public struct Completions: Sendable {
            let multiplexer: Multiplexer

            /// Creates a chat completion on one of the registered models.
            ///
            /// The model is picked by weight among the primaries that can take the request now (limits,
            /// cooldowns), else among the fallbacks. A model that answers 429, 5xx, 401/403, times out or cannot
            /// be reached is skipped (and cooled down as its answer says) and the next is tried; other 4xx
            /// answers end the request.
            ///
            /// - Parameter request: the parameters (no `model`: the multiplexer sends each model's own id).
            /// - Returns: the provider's completion; ``ChatCompletion/servedBy`` names the model that served it.
            /// - Throws: ``MultiplexerError`` (see ``MultiplexerError/Code``), or `CancellationError`.
            public func create(_ request: ChatCompletionRequest) async throws -> ChatCompletion {
                try request.validate()
                let served = try await self.multiplexer.dispatch(operation: "chat/completions", body: request.json, stream: false)
                guard case .complete(let bytes) = served.response.body else {
                    await served.pending?.settle(.abandoned)
                    throw MultiplexerError(.invalidResponse, "Model '\(served.entry.name)' answered with a stream to a non-stream request.")
                }
                await served.pending?.settle(.success(usage: served.response.usage))
                var completion: ChatCompletion
                do {
                    completion = try ChatCompletion(jsonBytes: bytes)
                } catch {
                    throw MultiplexerError(
                        .invalidResponse, "Invalid response from model '\(served.entry.name)': \(error.message)", modelName: served.entry.name,
                        endpoint: served.entry.endpoint.baseURL, statusCode: served.response.status)
                }
                completion.servedBy = served.entry.name
                return completion
            }

            /// Creates a chat completion from its most common parameters; see ``create(_:)``.
            ///
            /// - Parameters:
            ///   - messages: the conversation.
            ///   - temperature: sampling temperature.
            ///   - maxTokens: most tokens to generate.
            ///   - tools: tools the model may call.
            ///   - toolChoice: which tool it must call.
            ///   - responseFormat: the answer's format.
            ///   - extra: any other body members, sent as given.
            /// - Returns: the provider's completion.
            /// - Throws: ``MultiplexerError``, or `CancellationError`.
            public func create(
                messages: [ChatMessage], temperature: Double? = nil, maxTokens: Int? = nil, tools: [Tool]? = nil, toolChoice: ToolChoice? = nil,
                responseFormat: ResponseFormat? = nil, extra: [String: JSONValue] = [:]
            ) async throws -> ChatCompletion {
                try await self.create(
                    ChatCompletionRequest(
                        messages: messages, temperature: temperature, maxTokens: maxTokens, tools: tools, toolChoice: toolChoice,
                        responseFormat: responseFormat, extra: extra))
            }

            /// Creates a streamed chat completion: returns once a model's first event has arrived, then yields the
            /// chunks as they arrive.
            ///
            /// Failover happens before the first event (429, 5xx, timeouts, including the endpoint's
            /// time-to-first-token timeout). A stream that breaks after its first event (a reset, an idle
            /// timeout, an oversized or in-band error event) is **continued** on the next model that accepts an
            /// assistant prefill (``OpenAICompatibleEndpoint/supportsPrefill``): it is asked for the rest of the
            /// answer after the text already yielded, and its chunks carry on the same stream — the first
            /// chunk's `id` and `created`, no second `role` delta, ``ChatCompletionChunk/servedBy`` naming the
            /// model that sent each chunk (ARCHITECTURE §3 step 7). Tool-call deltas and `n > 1` are not
            /// continued. Only when no model can continue it does the iteration throw
            /// ``MultiplexerError/Code/serviceUnavailable`` (never a silent end).
            ///
            /// The usage of the stream is settled in the store when it ends — the multiplexer always asks the
            /// provider for it — and the final usage-only chunk (the sum over every model that served it) is
            /// yielded only when `includeUsage` is true.
            ///
            /// Iterate the stream once. Dropping it before its end aborts the upstream transfer; its reservation is
            /// then settled by ``Multiplexer/run()``.
            ///
            /// - Parameters:
            ///   - request: the parameters.
            ///   - includeUsage: also yield the final chunk that carries only ``ChatCompletionChunk/usage``.
            /// - Returns: the chunks; ``ChatCompletionChunk/servedBy`` names the model serving them.
            /// - Throws: ``MultiplexerError`` when no model could start the stream, or `CancellationError`.
            public func stream(_ request: ChatCompletionRequest, includeUsage: Bool = false) async throws -> AsyncThrowingStream<ChatCompletionChunk, any Error> {
                try request.validate()
                let served = try await self.multiplexer.dispatch(operation: "chat/completions", body: request.json, stream: true)
                guard case .events(let events) = served.response.body, let pending = served.pending else {
                    await served.pending?.settle(.abandoned)
                    throw MultiplexerError(
                        .invalidResponse, "Model '\(served.entry.name)' answered a stream request without a stream.", modelName: served.entry.name,
                        endpoint: served.entry.endpoint.baseURL, statusCode: served.response.status)
                }
                let cursor = ChunkCursor(served: served, events: events, pending: pending, includeUsage: includeUsage, jobSink: self.multiplexer.jobSink,
                    keeper: self.multiplexer.leaseKeeper)
                return AsyncThrowingStream(unfolding: { try await cursor.next() })
            }

            /// Creates a streamed chat completion from its most common parameters; see ``stream(_:includeUsage:)``.
            ///
            /// - Parameters:
            ///   - messages: the conversation.
            ///   - temperature: sampling temperature.
            ///   - maxTokens: most tokens to generate.
            ///   - includeUsage: also yield the final usage-only chunk.
            ///   - extra: any other body members, sent as given.
            /// - Returns: the chunks.
            /// - Throws: ``MultiplexerError``, or `CancellationError`.
            public func stream(
                messages: [ChatMessage], temperature: Double? = nil, maxTokens: Int? = nil, includeUsage: Bool = false, extra: [String: JSONValue] = [:]
            ) async throws -> AsyncThrowingStream<ChatCompletionChunk, any Error> {
                try await self.stream(
                    ChatCompletionRequest(messages: messages, temperature: temperature, maxTokens: maxTokens, extra: extra), includeUsage: includeUsage)
            }
        }
    }
}
