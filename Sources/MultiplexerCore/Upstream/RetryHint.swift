/// Reads how long a rate-limited provider wants to be left alone from its response headers.
///
/// Precedence: `retry-after-ms`, then `x-ms-retry-after-ms` (both precise), then `Retry-After`
/// (delta-seconds or an HTTP-date), then the later of `x-ratelimit-reset-requests` and
/// `x-ratelimit-reset-tokens` (OpenAI's `1m30s` / `250ms` / `6s` forms, or plain seconds).
/// A malformed value is ignored and the next form is tried; when none is usable the caller falls
/// back to the provider's own cooldown.
public enum RetryHint {
    /// Hints are clamped to this range: a zero or past hint still parks the provider briefly, and an
    /// absurd one cannot park it for more than a day.
    public static let minimum: Duration = .milliseconds(100)
    public static let maximum: Duration = .seconds(86_400)

    /// The wait the headers ask for, or `nil` when they carry no usable hint.
    ///
    /// - Parameters:
    ///   - headers: the response headers.
    ///   - nowEpochSeconds: the current wall-clock time, used for `Retry-After: <HTTP-date>`.
    public static func cooldown(from headers: UpstreamHeaders, nowEpochSeconds: Double) -> Duration? {
        if let v = headers["retry-after-ms"], let ms = parseNumber(v) { return clamp(ms / 1000) }
        if let v = headers["x-ms-retry-after-ms"], let ms = parseNumber(v) { return clamp(ms / 1000) }
        if let v = headers["retry-after"] {
            if let s = parseNumber(v) { return clamp(s) }
            if let date = HTTPDate.parse(v) { return clamp(date - nowEpochSeconds) }
        }
        let resets = [headers["x-ratelimit-reset-requests"], headers["x-ratelimit-reset-tokens"]]
            .compactMap { $0.flatMap(parseResetDuration) }
        if let longest = resets.max() { return clamp(longest) }
        return nil
    }

    static func clamp(_ seconds: Double) -> Duration {
        guard seconds.isFinite else { return maximum }
        let d = Duration.milliseconds(Int64((max(0, min(seconds, 86_400)) * 1000).rounded(.up)))
        return max(minimum, min(maximum, d))
    }

    /// A non-negative decimal number (`"2"`, `"1.5"`); `nil` for anything else.
    static func parseNumber(_ s: String) -> Double? {
        let t = s.trimmingBlanks()
        guard !t.isEmpty, t.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == 46 }), t.utf8.filter({ $0 == 46 }).count <= 1,
            t.utf8.first != 46 || t.utf8.count > 1
        else { return nil }
        return Double(t)
    }

    /// OpenAI's reset durations: a sequence of `<number><unit>` with units `h`, `m`, `s`, `ms`
    /// (`"1m30s"`, `"250ms"`, `"0.5s"`, `"2h3m"`), or a plain number of seconds.
    static func parseResetDuration(_ s: String) -> Double? {
        let t = Array(s.trimmingBlanks().utf8)
        guard !t.isEmpty else { return nil }
        if let plain = parseNumber(String(decoding: t, as: UTF8.self)) { return plain }
        var i = 0
        var total = 0.0
        var parts = 0
        while i < t.count {
            let start = i
            while i < t.count, (t[i] >= 48 && t[i] <= 57) || t[i] == 46 { i += 1 }
            guard i > start, let n = Double(String(decoding: t[start..<i], as: UTF8.self)) else { return nil }
            let unitStart = i
            while i < t.count, t[i] >= 97 && t[i] <= 122 { i += 1 }
            switch String(decoding: t[unitStart..<i], as: UTF8.self) {
            case "h": total += n * 3600
            case "m": total += n * 60
            case "s": total += n
            case "ms": total += n / 1000
            default: return nil
            }
            parts += 1
        }
        return parts > 0 ? total : nil
    }
}

/// Parses the three date formats HTTP allows (RFC 9110 §5.6.7): IMF-fixdate, RFC 850 and asctime.
enum HTTPDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// Seconds since the Unix epoch, or `nil` if `s` is not an HTTP date.
    static func parse(_ s: String) -> Double? {
        let tokens = s.lowercased().split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" || $0 == ":" })
        var numbers: [Substring] = []
        var month: Int?
        var monthBeforeNumbers = false
        for tok in tokens {
            if let m = months.firstIndex(of: String(tok)) {
                guard month == nil else { return nil }
                month = m + 1
                monthBeforeNumbers = numbers.isEmpty
            } else if tok.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) {
                numbers.append(tok)
            } else if tok == "gmt" || tok == "utc" || (tok.count >= 3 && tok.allSatisfy(\.isLetter)) {
                continue  // zone or weekday name
            } else {
                return nil
            }
        }
        guard let mo = month, numbers.count == 5 else { return nil }
        // IMF-fixdate and RFC 850: day month year h m s. asctime: month day h m s year.
        let order = monthBeforeNumbers ? [0, 4, 1, 2, 3] : [0, 1, 2, 3, 4]
        guard let d = Int(numbers[order[0]]), var y = Int(numbers[order[1]]), let h = Int(numbers[order[2]]),
            let mi = Int(numbers[order[3]]), let se = Int(numbers[order[4]])
        else { return nil }
        if numbers[order[1]].count <= 2 { y += y < 70 ? 2000 : 1900 }
        guard (1...31).contains(d), h < 24, mi < 60, se <= 60 else { return nil }
        return Double(daysFromCivil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (m + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
