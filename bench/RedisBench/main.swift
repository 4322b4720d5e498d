// Admission throughput of the Redis quota store against one real redis-server, beside
// redis-benchmark's SET and a trivial EVALSHA on the same server in the same run.
//
//   swift build -c release --product RedisBench && .build/release/RedisBench [requests-per-point]
//
// Prints a Markdown table (for docs/benchmarks.md).
import Foundation
import MultiplexerCore
import MultiplexerRedis
import MultiplexerProcesses

@main
struct RedisBench {
    static func main() async throws {
        let perPoint = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 50_000
        let server = try RedisServer()
        print("redis-server \(try server.cli(["INFO", "server"]).split(separator: "\n").first { $0.hasPrefix("redis_version") } ?? "") on port \(server.port)")
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(uname())\n")

        print("| what | concurrency | ops/s | Redis commands per op (top level) | Redis commands per op (incl. inside scripts) | pipeline depth | redis-server CPU µs/op | client CPU µs/op |")
        print("|---|---|---|---|---|---|---|---|")
        for c in [1, 16, 64] {
            print("| redis-benchmark SET | \(c) | \(try redisBenchmark(server, c, ["SET", "k", "v"])) | 1 | 1 | 1 | – | – |")
        }
        let sha = try server.cli(["SCRIPT", "LOAD", "return 1"]).trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\"", with: "")
        for c in [1, 16, 64] {
            print("| redis-benchmark EVALSHA `return 1` | \(c) | \(try redisBenchmark(server, c, ["EVALSHA", sha, "0"])) | 1 | 1 | 1 | – | – |")
        }
        for (settle, full) in [(false, false), (false, true), (true, true)] {
            for c in [1, 16, 64] {
                let r = try await measure(server: server, concurrency: c, total: perPoint, settle: settle, fullMix: full)
                let mix = full ? "key rpm + provider rpm, tpm, max_concurrent" : "provider rpm only"
                let what = settle ? "store admit + settle (one request), \(mix)" : "store admission, \(mix)"
                print("| \(what) | \(c) | \(r.rate) | \(r.topLevel) | \(r.inner) | \(r.depth) | \(r.redisCPU) | \(r.clientCPU) |")
            }
        }
    }

    struct Result {
        var rate: String
        var topLevel: String
        var inner: String
        var depth: String
        var redisCPU: String
        var clientCPU: String
    }

    /// used_cpu_sys + used_cpu_user of the server, in seconds.
    static func serverCPU(_ server: RedisServer) throws -> Double {
        var total = 0.0
        for line in try server.cli(["INFO", "cpu"]).split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: ":")
            if parts.count == 2, parts[0] == "used_cpu_sys" || parts[0] == "used_cpu_user" { total += Double(parts[1]) ?? 0 }
        }
        return total
    }

    /// This process's CPU time (user + system), in seconds.
    static func ownCPU() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    static func measure(server: RedisServer, concurrency: Int, total: Int, settle: Bool, fullMix: Bool) async throws -> Result {
        let store = RedisQuotaStore(configuration: .init(
            endpoint: try RedisEndpoint(url: server.url), namespace: "bench\(concurrency)\(settle)\(fullMix)", commandTimeout: .seconds(2), nodeID: "bench"))
        defer { store.shutdown() }
        try await store.connect()
        // A provider with every kind of limit set high enough that every admission takes the allowed
        // (most expensive) path: rpm, tpm, max_concurrent and a client key with rpm.
        let limits = fullMix ? ProviderLimits(rpm: 1_000_000_000, tpm: 1_000_000_000_000, maxConcurrent: 1_000_000) : ProviderLimits(rpm: 1_000_000_000)
        let request = AdmissionRequest(
            key: fullMix ? KeyAdmission(name: "bench-key", limits: KeyLimits(rpm: 1_000_000_000)) : nil,
            candidates: [AdmissionCandidate(provider: "bench", limits: limits, tokens: 300, lease: .seconds(300))])
        // Warm up (script load, connection).
        _ = try await store.admit(request)
        let before = try commandStats(server)
        let cpuBefore = try serverCPU(server), ownBefore = ownCPU()
        let batchesBefore = store.client.statistics
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<concurrency {
                group.addTask {
                    var i = w
                    while i < total {
                        guard case .admitted(let r) = try await store.admit(request) else { fatalError("not admitted") }
                        if settle {
                            await store.settle(Settlement(reservation: r, result: .success(usage: TokenUsage(promptTokens: 100, completionTokens: 50))))
                        }
                        i += concurrency
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = start.duration(to: clock.now)
        let ownAfter = ownCPU()
        let after = try commandStats(server)
        let cpuAfter = try serverCPU(server)
        let stats = store.client.statistics
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let evalsha = Double((after["evalsha"] ?? 0) - (before["evalsha"] ?? 0))
        let all = Double(after.filter { $0.key != "info" }.values.reduce(0, +) - before.filter { $0.key != "info" }.values.reduce(0, +))
        // Callers' commands per pipeline write (admissions merged into one batched call count one each).
        let depth = Double(stats.requests - batchesBefore.requests) / Double(max(1, stats.batches - batchesBefore.batches))
        return Result(
            rate: String(Int(Double(total) / seconds)), topLevel: String(format: "%.2f", evalsha / Double(total)),
            inner: String(format: "%.1f", all / Double(total)), depth: String(format: "%.1f", depth),
            redisCPU: String(format: "%.1f", (cpuAfter - cpuBefore) * 1e6 / Double(total)),
            clientCPU: String(format: "%.1f", (ownAfter - ownBefore) * 1e6 / Double(total)))
    }

    /// `cmdstat_<name>` → calls, from INFO commandstats.
    static func commandStats(_ server: RedisServer) throws -> [String: Int] {
        var out: [String: Int] = [:]
        for line in try server.cli(["INFO", "commandstats"]).split(whereSeparator: \.isNewline) {
            guard line.hasPrefix("cmdstat_"), let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[line.index(line.startIndex, offsetBy: 8)..<colon])
            if let calls = line.split(separator: ",").first?.split(separator: "=").last, let n = Int(calls) { out[name] = n }
        }
        return out
    }

    static func redisBenchmark(_ server: RedisServer, _ clients: Int, _ command: [String]) throws -> String {
        guard let exe = ManagedProcess.which("redis-benchmark") else { return "n/a" }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["-p", String(server.port), "-q", "-n", "200000", "-c", String(clients)] + command
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        // "SET k v: 123456.79 requests per second, p50=..."
        let last = text.split(separator: "\r").last(where: { $0.contains("requests per second") }) ?? Substring(text)
        guard let r = last.split(separator: ":").dropFirst().first?.split(separator: " ").first, let v = Double(r) else { return "?" }
        return String(Int(v))
    }

    static func uname() -> String {
        var u = utsname()
        Foundation.uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return "Linux \(release)"
    }
}
