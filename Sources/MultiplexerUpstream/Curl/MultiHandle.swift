internal import CCurl
import MultiplexerCore

/// Owns the client's `CURLM*` multi handle and frees it in `deinit`.
///
/// The use of `@unchecked Sendable` is safe for this type because:
///
/// - Every libcurl call on the handle except `curl_multi_wakeup` happens on the client's single loop
///   thread (``CurlLoop``), one at a time, as libcurl requires.
/// - `curl_multi_wakeup` is documented as callable from any thread (libcurl >= 7.68; we link 7.88.1), and
///   ``wakeup()`` is the only method other threads call.
/// - `curl_multi_cleanup` runs in `deinit`, that is when no thread holds a reference any more: the loop
///   thread keeps the owning ``CurlClient`` alive while it runs, and every submitter holds the client while
///   it calls ``wakeup()``. So `curl_multi_wakeup` can never run on a freed handle.
final class MultiHandle: @unchecked Sendable {
    /// The `CURLM*`.
    let raw: UnsafeMutableRawPointer

    init(maxCachedConnections: Int, maxConnectionsPerHost: Int, maxTotalConnections: Int) throws(UpstreamError) {
        guard let raw = curl_multi_init() else {
            throw UpstreamError(.other, message: "curl_multi_init failed")
        }
        self.raw = raw
        // Without MAXCONNECTS the connection cache is sized from the number of easy handles currently added,
        // which comes and goes with traffic: keep-alive connections would be evicted and reopened.
        try checkMulti(ccurl_multi_setopt_long(raw, CURLMOPT_MAXCONNECTS, max(1, maxCachedConnections)), call: "CURLMOPT_MAXCONNECTS")
        try checkMulti(
            ccurl_multi_setopt_long(raw, CURLMOPT_MAX_HOST_CONNECTIONS, max(0, maxConnectionsPerHost)), call: "CURLMOPT_MAX_HOST_CONNECTIONS")
        try checkMulti(
            ccurl_multi_setopt_long(raw, CURLMOPT_MAX_TOTAL_CONNECTIONS, max(0, maxTotalConnections)), call: "CURLMOPT_MAX_TOTAL_CONNECTIONS")
    }

    deinit {
        curl_multi_cleanup(self.raw)
    }

    /// Interrupts a `curl_multi_poll` on the loop thread (or makes the next one return at once).
    ///
    /// It fails only when libcurl could not create the multi handle's wake-up socket pair; the loop then still
    /// sees the caller's command within one poll bound (``CurlLoop`` polls at most a second), so the result is
    /// deliberately not acted on.
    func wakeup() {
        _ = curl_multi_wakeup(self.raw)
    }
}
