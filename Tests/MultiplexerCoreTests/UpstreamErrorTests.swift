import MultiplexerCore
import Testing

struct UpstreamErrorTests {
    @Test(arguments: UpstreamError.Kind.allCases)
    func timeoutKindsAreTimeouts(kind: UpstreamError.Kind) {
        let timeouts: Set<UpstreamError.Kind> = [.connectTimeout, .timeout, .firstTokenTimeout, .streamIdleTimeout]
        #expect(UpstreamError(kind).isTimeout == timeouts.contains(kind))
    }

    @Test
    func descriptionCarriesKindAndMessage() {
        #expect(UpstreamError(.connectionReset, message: "peer closed").description == "connection_reset: peer closed")
        #expect(UpstreamError(.cancelled).description == "cancelled")
    }
}
