import MultiplexerCore

/// An error answered to a client, in OpenAI's shape:
/// `{"error": {"message": …, "type": …, "param": …, "code": …}}`.
///
/// Messages never contain a provider's API key, a client key, or a C library's error text.
struct OpenAIError: Error, Sendable {
    var status: Int
    var message: String
    var type: String
    var code: String?
    var param: String?
    /// Extra headers (e.g. `Retry-After`).
    var headers: [(String, String)] = []

    static func invalidRequest(_ message: String, param: String?, code: String? = nil) -> OpenAIError {
        OpenAIError(status: 400, message: message, type: "invalid_request_error", code: code, param: param)
    }

    /// 404 `unknown_route`: a path the gateway does not serve (the path is cut to 200 characters).
    static func unknownRoute(method: String, path: String) -> OpenAIError {
        OpenAIError(status: 404, message: "Unknown route: \(method) \(path.prefix(200)).", type: "invalid_request_error", code: "unknown_route")
    }

    /// 405 `method_not_allowed`: a path the gateway serves, with another method.
    static func methodNotAllowed(method: String, path: String) -> OpenAIError {
        OpenAIError(
            status: 405, message: "\(method) is not allowed on \(path.prefix(200)).", type: "invalid_request_error", code: "method_not_allowed")
    }

    static func invalidAPIKey() -> OpenAIError {
        OpenAIError(
            status: 401, message: "Incorrect API key provided. Send it as 'Authorization: Bearer <key>' or 'api-key: <key>'.",
            type: "invalid_request_error", code: "invalid_api_key")
    }

    static func modelNotAllowed(_ model: String) -> OpenAIError {
        OpenAIError(status: 403, message: "Your API key may not use the model '\(model)'.", type: "invalid_request_error", code: "model_not_allowed", param: "model")
    }

    static func modelNotFound(_ model: String?) -> OpenAIError {
        let m = model.map { "The model '\($0)' does not exist." } ?? "You must provide a model parameter."
        return OpenAIError(status: 404, message: m, type: "invalid_request_error", code: "model_not_found", param: "model")
    }

    static func tooLarge(limit: Int) -> OpenAIError {
        OpenAIError(status: 413, message: "The request body is larger than \(limit) bytes.", type: "invalid_request_error", code: "request_too_large")
    }

    static func rateLimited(_ message: String, retryAfter: Duration?) -> OpenAIError {
        var e = OpenAIError(status: 429, message: message, type: "rate_limit_error", code: "rate_limit_exceeded")
        if let ra = retryAfter { e.headers.append(("Retry-After", String(max(1, (ra.millisecondsRoundedUp + 999) / 1000)))) }
        return e
    }

    /// 429 `insufficient_quota`: the client key's daily or monthly budget is spent (ARCHITECTURE §8), with
    /// `Retry-After` until the period ends.
    static func insufficientQuota(_ period: BudgetPeriod, retryAfter: Duration) -> OpenAIError {
        let what = period == .daily ? "daily budget (resets at 00:00 UTC)" : "monthly budget (resets on the 1st, 00:00 UTC)"
        var e = OpenAIError(
            status: 429, message: "Your API key has spent its \(what). Retry after the time in Retry-After.", type: "insufficient_quota",
            code: "insufficient_quota")
        e.headers.append(("Retry-After", String(max(1, (retryAfter.millisecondsRoundedUp + 999) / 1000))))
        return e
    }

    static func upstream(status: Int, _ message: String, code: String = "upstream_error") -> OpenAIError {
        OpenAIError(status: status, message: message, type: "api_error", code: code)
    }

    /// The JSON body.
    var json: String {
        var out = "{\"error\":{\"message\":"
        JSONValue.writeString(self.message, into: &out)
        out += ",\"type\":"
        JSONValue.writeString(self.type, into: &out)
        out += ",\"param\":"
        if let p = self.param { JSONValue.writeString(p, into: &out) } else { out += "null" }
        out += ",\"code\":"
        if let c = self.code { JSONValue.writeString(c, into: &out) } else { out += "null" }
        out += "}}"
        return out
    }
}
