internal import CCurl
import MultiplexerCore

/// Where in a transfer a libcurl error happened; decides between kinds that share one `CURLcode`.
struct CurlErrorContext {
    /// The response status line and headers had fully arrived.
    var headersReceived: Bool = false
    /// The message libcurl left in `CURLOPT_ERRORBUFFER` (empty when none).
    var detail: String = ""
}

/// The one place that turns a libcurl return code into a Swift error.
///
/// - Parameters:
///   - code: what libcurl returned.
///   - call: the failing call, for the message.
///   - context: the transfer phase and libcurl's error buffer.
/// - Throws: an ``UpstreamError`` whose kind classifies `code` (see ``UpstreamError/Kind``), with a
///   message made of the call, the numeric code, libcurl's description and its error buffer. Messages come
///   from libcurl only and never contain request headers (where credentials live).
func check(_ code: CURLcode, call: StaticString, context: CurlErrorContext = CurlErrorContext()) throws(UpstreamError) {
    guard code != CURLE_OK else { return }
    throw curlError(code, call: call, context: context)
}

/// Builds the error ``check(_:call:context:)`` throws.
func curlError(_ code: CURLcode, call: StaticString, context: CurlErrorContext) -> UpstreamError {
    let kind = curlErrorKind(code, headersReceived: context.headersReceived)
    let description = String(cString: curl_easy_strerror(code))
    var message = "\(call): curl error \(code.rawValue) (\(description))"
    if !context.detail.isEmpty && context.detail != description {
        message += ": \(context.detail)"
    }
    return UpstreamError(kind, message: message)
}

/// A `CURLMcode` from a multi-handle call, as an error of kind `.other`.
func checkMulti(_ code: CURLMcode, call: StaticString) throws(UpstreamError) {
    guard code != CURLM_OK else { return }
    throw multiError(code, call: call)
}

/// The error for a failed multi-interface call.
func multiError(_ code: CURLMcode, call: StaticString) -> UpstreamError {
    UpstreamError(.other, message: "\(call): curl multi error \(code.rawValue) (\(String(cString: curl_multi_strerror(code))))")
}

/// The taxonomy: which ``UpstreamError/Kind`` a libcurl result code stands for.
func curlErrorKind(_ code: CURLcode, headersReceived: Bool) -> UpstreamError.Kind {
    switch code {
    case CURLE_COULDNT_CONNECT:
        return .connectionRefused
    case CURLE_OPERATION_TIMEDOUT:
        // The client sets no CURLOPT_TIMEOUT: its own timers report response, first-byte and idle
        // timeouts, so a libcurl timeout is the connect timeout (which covers DNS, TCP and TLS).
        return headersReceived ? .timeout : .connectTimeout
    case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
        return .dnsFailure
    case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
        CURLE_SSL_CACERT_BADFILE, CURLE_SSL_SHUTDOWN_FAILED, CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR,
        CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CLIENTCERT, CURLE_SSL_ENGINE_NOTFOUND,
        CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_ENGINE_INITFAILED, CURLE_USE_SSL_FAILED:
        return .tlsFailure
    case CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING:
        // Before the headers the provider dropped the connection (retryable); after them the body was cut.
        return headersReceived ? .invalidResponse : .connectionReset
    case CURLE_PARTIAL_FILE, CURLE_WEIRD_SERVER_REPLY, CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_BAD_CONTENT_ENCODING,
        CURLE_UNSUPPORTED_PROTOCOL, CURLE_TOO_MANY_REDIRECTS, CURLE_HTTP3, CURLE_QUIC_CONNECT_ERROR:
        return .invalidResponse
    case CURLE_ABORTED_BY_CALLBACK:
        return .cancelled
    default:
        return .other
    }
}
