/// What a provider charges, in USD per million tokens — held as integer micro-USD per million tokens, so
/// that every cost is computed in integers (ARCHITECTURE §8 Budgets).
public struct Pricing: Sendable, Hashable, Codable {
    /// Input (prompt) tokens: micro-USD per million (= USD per token × 10¹²; `0.59` USD/Mtok is 590 000).
    public var inputMicroUSDPerMillion: Int64
    /// Output (completion) tokens.
    public var outputMicroUSDPerMillion: Int64

    public init(inputMicroUSDPerMillion: Int64, outputMicroUSDPerMillion: Int64) {
        self.inputMicroUSDPerMillion = inputMicroUSDPerMillion
        self.outputMicroUSDPerMillion = outputMicroUSDPerMillion
    }

    /// - Parameters: USD per million input and output tokens (rounded to the micro-USD).
    public init(inputPerMillionUSD: Double, outputPerMillionUSD: Double) {
        self.init(
            inputMicroUSDPerMillion: Int64((inputPerMillionUSD * 1_000_000).rounded()),
            outputMicroUSDPerMillion: Int64((outputPerMillionUSD * 1_000_000).rounded()))
    }

    /// The cost in micro-USD of `prompt` input and `completion` output tokens, rounded up to the micro-USD
    /// (a cost is never under-counted).
    public func cost(prompt: Int, completion: Int) -> Int64 {
        let scaled = Int64(max(0, prompt)) * self.inputMicroUSDPerMillion + Int64(max(0, completion)) * self.outputMicroUSDPerMillion
        return (scaled + 999_999) / 1_000_000
    }
}

/// UTC calendar periods of budgets: `YYYY-MM-DD` and `YYYY-MM`, from milliseconds since the Unix epoch
/// (the same arithmetic as the Redis scripts', so both stores agree on where a day ends).
public enum BudgetCalendar {
    /// The UTC day of `epochMs`, `YYYY-MM-DD`.
    public static func day(_ epochMs: Int64) -> String {
        let (y, m, d) = self.civil(daysSinceEpoch: self.floorDiv(epochMs, 86_400_000))
        return "\(y)-\(self.two(m))-\(self.two(d))"
    }

    /// The UTC month of `epochMs`, `YYYY-MM`.
    public static func month(_ epochMs: Int64) -> String {
        let (y, m, _) = self.civil(daysSinceEpoch: self.floorDiv(epochMs, 86_400_000))
        return "\(y)-\(self.two(m))"
    }

    /// Milliseconds from `epochMs` to the next UTC midnight.
    public static func untilNextDay(_ epochMs: Int64) -> Int64 {
        (self.floorDiv(epochMs, 86_400_000) + 1) * 86_400_000 - epochMs
    }

    /// Milliseconds from `epochMs` to the first instant of the next UTC month.
    public static func untilNextMonth(_ epochMs: Int64) -> Int64 {
        let days = self.floorDiv(epochMs, 86_400_000)
        let (y, m, _) = self.civil(daysSinceEpoch: days)
        let (ny, nm) = m == 12 ? (y + 1, 1) : (y, m + 1)
        return self.daysFromCivil(year: ny, month: nm, day: 1) * 86_400_000 - epochMs
    }

    private static func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// Howard Hinnant's `civil_from_days`.
    static func civil(daysSinceEpoch z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = self.floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// Howard Hinnant's `days_from_civil`.
    static func daysFromCivil(year y0: Int64, month m: Int64, day d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = self.floorDiv(y, 400)
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
