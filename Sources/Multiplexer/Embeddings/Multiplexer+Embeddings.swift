public import MultiplexerCore
import MultiplexerUpstream

extension Multiplexer {
    /// Embeddings: `mux.embeddings.create(…)`, routed like chat completions (the reference has none).
    public var embeddings: Embeddings { Embeddings(multiplexer: self) }

    /// The `embeddings` namespace.
    public struct Embeddings: Sendable {
        let multiplexer: Multiplexer

        /// Creates embeddings on one of the registered models (which must be embedding models: register
        /// embedding endpoints in their own ``Multiplexer``).
        ///
        /// - Parameter request: the parameters (no `model`).
        /// - Returns: the provider's embeddings; ``EmbeddingResponse/servedBy`` names the model that served them.
        /// - Throws: ``MultiplexerError``, or `CancellationError`.
        public func create(_ request: EmbeddingRequest) async throws -> EmbeddingResponse {
            guard !request.input.isEmpty else { throw MultiplexerError(.invalidRequest, "'input' must not be empty.") }
            let served = try await self.multiplexer.dispatch(operation: "embeddings", body: request.json, stream: false)
            guard case .complete(let bytes) = served.response.body else {
                await served.pending?.settle(.abandoned)
                throw MultiplexerError(.invalidResponse, "Model '\(served.entry.name)' answered with a stream to an embeddings request.")
            }
            await served.pending?.settle(.success(usage: served.response.usage))
            var response: EmbeddingResponse
            do {
                response = try EmbeddingResponse(jsonBytes: bytes)
            } catch {
                throw MultiplexerError(
                    .invalidResponse, "Invalid response from model '\(served.entry.name)': \(error.message)", modelName: served.entry.name,
                    endpoint: served.entry.endpoint.baseURL, statusCode: served.response.status)
            }
            response.servedBy = served.entry.name
            return response
        }

        /// Creates embeddings of `input`; see ``create(_:)``.
        ///
        /// - Parameters:
        ///   - input: what to embed.
        ///   - dimensions: the vectors' length, for models that can shorten them.
        ///   - extra: any other body members, sent as given.
        /// - Returns: the provider's embeddings.
        /// - Throws: ``MultiplexerError``, or `CancellationError`.
        public func create(input: EmbeddingRequest.Input, dimensions: Int? = nil, extra: [String: JSONValue] = [:]) async throws
            -> EmbeddingResponse
        {
            try await self.create(EmbeddingRequest(input: input, dimensions: dimensions, extra: extra))
        }
    }
}
