import Multiplexer
import Testing

/// `addModel` / `addFallbackModel`: the reference's validation messages, duplicates, names.
struct RegistrationTests {
    let endpoint = OpenAICompatibleEndpoint(baseURL: "http://127.0.0.1:1/v1")

    @Test(arguments: [0, -1])
    func weightMustBePositive(weight: Int) throws {
        let mux = try Multiplexer()
        defer { mux.shutdown() }
        #expect(throws: MultiplexerError.self) { try mux.addModel(self.endpoint, weight: weight, modelName: "a") }
        do {
            try mux.addModel(self.endpoint, weight: weight, modelName: "a")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message == "Weight must be a positive integer.")
        }
    }

    @Test func nameMustBeNonEmptyAndMaxConcurrentNonNegative() throws {
        let mux = try Multiplexer()
        defer { mux.shutdown() }
        do {
            try mux.addModel(self.endpoint, weight: 1, modelName: "")
            Issue.record("accepted an empty name")
        } catch {
            #expect(error.message == "model_name must be a non-empty string.")
        }
        do {
            try mux.addFallbackModel(self.endpoint, weight: 1, modelName: "a", maxConcurrent: -1)
            Issue.record("accepted a negative max_concurrent")
        } catch {
            #expect(error.message == "max_concurrent must be a non-negative integer or nil.")
        }
        // 0 and nil mean unlimited, as in the reference.
        #expect(try mux.addModel(self.endpoint, weight: 1, modelName: "a", maxConcurrent: 0))
        #expect(try mux.addModel(self.endpoint, weight: 1, modelName: "b", maxConcurrent: nil))
    }

    @Test func namesAreStoreIdentitiesAndTheUpstreamModelIsSeparate() throws {
        let mux = try Multiplexer()
        defer { mux.shutdown() }
        do {
            try mux.addModel(self.endpoint, weight: 1, modelName: "meta-llama/Llama-3.3-70B")
            Issue.record("accepted a name that cannot be a store key")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("endpoint's `model`"))
        }
        var e = self.endpoint
        e.model = "meta-llama/Llama-3.3-70B"
        #expect(try mux.addModel(e, weight: 1, modelName: "llama-70b"))
        do {
            try mux.addModel(OpenAICompatibleEndpoint(baseURL: "ftp://x"), weight: 1, modelName: "x")
            Issue.record("accepted a non-HTTP base URL")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test func duplicateNamesAreSkippedAndTheFirstWins() throws {
        let mux = try Multiplexer()
        defer { mux.shutdown() }
        #expect(try mux.addModel(self.endpoint, weight: 1, modelName: "a"))
        #expect(try mux.addFallbackModel(self.endpoint, weight: 1, modelName: "f"))
        #expect(try mux.addFallbackModel(self.endpoint, weight: 5, modelName: "a") == false)
        #expect(try mux.addModel(self.endpoint, weight: 5, modelName: "f") == false)
        #expect(try mux.addModel(self.endpoint, weight: 2, modelName: "b"))
        #expect(mux.modelNames == ["a", "b", "f"])
        mux.removeAllModels()
        #expect(mux.modelNames.isEmpty)
    }

    @Test func anEmptyMultiplexerFailsAtOnce() async throws {
        try await Multiplexer.withMultiplexer { mux in
            // The reference spins for about a second before failing; the call itself must not wait at all.
            let started = ContinuousClock.now
            let error = await multiplexerError { _ = try await ask(mux) }
            #expect(started.duration(to: .now) < .milliseconds(500))
            #expect(error?.code == .allModelsExhausted)
            #expect(error?.message.hasPrefix("No models available in the multiplexer.") == true)
        }
    }

    @Test func theEndpointNeverShowsItsKey() {
        let e = OpenAICompatibleEndpoint(baseURL: "https://x/v1", apiKey: "sk-very-secret")
        #expect(!"\(e)".contains("sk-very-secret"))
        var dumped = ""
        dump(e, to: &dumped)
        #expect(!dumped.contains("sk-very-secret"))
    }
}
