internal import CCurl
import MultiplexerCore

/// Owns one `CURL*` easy handle, its `CURLOPT_ERRORBUFFER` and the C list set as its `CURLOPT_HTTPHEADER`,
/// and frees them in `deinit`.
///
/// libcurl keeps the *pointer* of a header list (it does not copy it) until the option is set again or the
/// handle is reset, so the list belongs to the handle: ``setHeaders(_:)`` frees the previous list only after
/// libcurl holds the new one, ``reset()`` frees it after `curl_easy_reset` dropped it. No path leaves libcurl
/// with a freed list, whatever the next transfer sets.
///
/// Easy handles are not thread-safe: an `EasyHandle` lives on the loop thread only (see ``CurlLoop``), which
/// keeps finished ones on a free list and reuses them.
final class EasyHandle {
    /// The `CURL*`.
    let raw: UnsafeMutableRawPointer
    private let errorBuffer: UnsafeMutablePointer<CChar>
    /// The list libcurl points at as `CURLOPT_HTTPHEADER` (nil: none set).
    private var headerList: UnsafeMutablePointer<curl_slist>?

    init() throws(UpstreamError) {
        guard let raw = curl_easy_init() else {
            throw UpstreamError(.other, message: "curl_easy_init failed")
        }
        self.raw = raw
        self.errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        self.errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    deinit {
        curl_easy_cleanup(self.raw)
        if let list = self.headerList { curl_slist_free_all(list) }
        self.errorBuffer.deallocate()
    }

    /// Set when the options of a completed `POST` are still set: the next `POST` with these TLS settings
    /// may skip ``reset()``.
    var reusableForPOST: TLSOptions?

    /// Forgets the message of the previous transfer.
    func clearErrorMessage() {
        self.errorBuffer[0] = 0
    }

    /// Clears every option (the connection cache belongs to the multi handle and is kept) and installs the
    /// error buffer again.
    func reset() throws(UpstreamError) {
        curl_easy_reset(self.raw)
        if let list = self.headerList {
            curl_slist_free_all(list)
            self.headerList = nil
        }
        self.errorBuffer[0] = 0
        try self.set(CURLOPT_ERRORBUFFER, pointer: UnsafeMutableRawPointer(self.errorBuffer), call: "CURLOPT_ERRORBUFFER")
    }

    func set(_ option: CURLoption, _ value: Int, call: StaticString) throws(UpstreamError) {
        try check(ccurl_easy_setopt_long(self.raw, option, value), call: call)
    }

    func set(_ option: CURLoption, offset value: Int64, call: StaticString) throws(UpstreamError) {
        try check(ccurl_easy_setopt_off_t(self.raw, option, curl_off_t(value)), call: call)
    }

    /// A string option; libcurl copies the string.
    func set(_ option: CURLoption, _ value: String, call: StaticString) throws(UpstreamError) {
        try check(ccurl_easy_setopt_string(self.raw, option, value), call: call)
    }

    func set(_ option: CURLoption, pointer value: UnsafeMutableRawPointer?, call: StaticString) throws(UpstreamError) {
        try check(ccurl_easy_setopt_pointer(self.raw, option, value), call: call)
    }

    /// Builds a C list of `lines`, sets it as `CURLOPT_HTTPHEADER` (none when `lines` is empty) and frees
    /// the list it replaces. On failure libcurl keeps the previous list, which stays owned here.
    func setHeaders(_ lines: [String]) throws(UpstreamError) {
        var list: UnsafeMutablePointer<curl_slist>?
        for line in lines {
            guard let appended = curl_slist_append(list, line) else {
                if let list { curl_slist_free_all(list) }
                throw UpstreamError(.other, message: "curl_slist_append failed")
            }
            list = appended
        }
        let code = ccurl_easy_setopt_slist(self.raw, CURLOPT_HTTPHEADER, list)
        guard code == CURLE_OK else {
            if let list { curl_slist_free_all(list) }
            throw curlError(code, call: "CURLOPT_HTTPHEADER", context: CurlErrorContext())
        }
        if let previous = self.headerList { curl_slist_free_all(previous) }
        self.headerList = list
    }

    func set(_ option: CURLoption, callback: curl_write_callback, call: StaticString) throws(UpstreamError) {
        try check(ccurl_easy_setopt_write_callback(self.raw, option, callback), call: call)
    }

    func set(_ option: CURLoption, prerequest callback: curl_prereq_callback, call: StaticString) throws(UpstreamError) {
        try check(ccurl_easy_setopt_prereq_callback(self.raw, option, callback), call: call)
    }

    /// A `curl_off_t` field of the last transfer (the `CURLINFO_*_TIME_T` times are microseconds); 0 when
    /// libcurl has none.
    func offsetInfo(_ field: CURLINFO) -> Int {
        var value: curl_off_t = 0
        return ccurl_easy_getinfo_off_t(self.raw, field, &value) == CURLE_OK ? Int(value) : 0
    }

    /// A `long` field of the last transfer; 0 when libcurl has none.
    func longInfo(_ field: CURLINFO) -> Int {
        var value = 0
        return ccurl_easy_getinfo_long(self.raw, field, &value) == CURLE_OK ? value : 0
    }

    /// The message libcurl wrote into the error buffer for the last failure ("" if none).
    var errorMessage: String {
        var message = String(cString: self.errorBuffer)
        while let last = message.last, last == "\n" || last == "\r" || last == " " { message.removeLast() }
        return message
    }
}

@available(*, unavailable)
extension EasyHandle: Sendable {}
