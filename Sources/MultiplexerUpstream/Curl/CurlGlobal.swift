internal import CCurl
import MultiplexerCore
import Synchronization

/// `curl_global_init` must run once per process, before any other libcurl call and never concurrently with
/// itself. Every ``CurlClient`` calls ``CurlGlobal/initialize()`` in its initializer.
enum CurlGlobal {
    private static let state = Mutex<CURLcode?>(nil)

    /// Initializes libcurl once (later calls return the first result).
    static func initialize() throws(UpstreamError) {
        let code = self.state.withLock { state -> CURLcode in
            if let done = state { return done }
            // CURL_GLOBAL_DEFAULT: SSL + Win32 socket init. The lock is held across the C call on purpose:
            // this is the one-time initialisation every other thread has to wait for.
            let result = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
            state = result
            return result
        }
        try check(code, call: "curl_global_init")
    }
}
