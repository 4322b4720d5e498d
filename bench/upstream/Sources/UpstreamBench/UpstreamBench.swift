import MultiplexerCore
import MultiplexerUpstream
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Measures requests per second and process CPU per request of the upstream client against a local server.
///
/// Usage: `UpstreamBench --url URL [--concurrency 1,16,64] [--duration SECONDS] [--mode transport|raw]`
///
/// `transport` (the default) goes through `OpenAIUpstreamTransport` (request building, usage parsing), as
/// the gateway does; `raw` calls `CurlClient.execute` directly. Prints one tab-separated line per
/// concurrency: `concurrency requests seconds requests_per_second cpu_us_per_request connections_note`.
@main
struct UpstreamBench {
    static func main() async {
        do {
            try await self.run(Array(CommandLine.arguments.dropFirst()))
        } catch {
            print("UpstreamBench: \(error)")
            exit(1)
        }
    }

    static func run(_ arguments: [String]) async throws {
        var url = "http://127.0.0.1:18090/v1"
        var concurrencies = [1, 16, 64]
        var duration = 5.0
        var raw = false
        var index = 0
        while index < arguments.count {
            let value = index + 1 < arguments.count ? arguments[index + 1] : ""
            switch arguments[index] {
            case "--url": url = value
            case "--concurrency": concurrencies = value.split(separator: ",").compactMap { Int($0) }
            case "--duration": duration = Double(value) ?? duration
            case "--mode": raw = value == "raw"
            default: throw UpstreamError(.other, message: "unknown argument \(arguments[index])")
            }
            index += 2
        }

        let provider = Provider(name: "nginx", baseURL: url, apiKey: "sk-bench", model: "mock")
        let body = Array(#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#.utf8)
        let request = OpenAIUpstreamRequest(path: "chat/completions", body: body)
        let configuration = CurlClient.Configuration(maxCachedConnections: 256, maxConnectionsPerHost: 256)
        try await CurlClient.withClient(configuration: configuration) { client in
            let transport = OpenAIUpstreamTransport(client: client)
            let httpRequest = OpenAIUpstreamTransport.makeHTTPRequest(request, provider: provider)
            let call: @Sendable () async throws(UpstreamError) -> Bool
            if raw {
                call = { () async throws(UpstreamError) -> Bool in try await client.execute(httpRequest).status == 200 }
            } else {
                call = { () async throws(UpstreamError) -> Bool in
                    let response = try await transport.send(request, to: provider)
                    return response.status == 200 && response.usage != nil
                }
            }

            print("concurrency\trequests\tseconds\treq_per_s\tcpu_us_per_req")
            for concurrency in concurrencies {
                // Warm up: open the connections.
                _ = try await self.load(concurrency: concurrency, duration: .milliseconds(300), call: call)
                let cpuBefore = self.cpuMicroseconds()
                let start = ContinuousClock.now
                let completed = try await self.load(concurrency: concurrency, duration: .milliseconds(Int64(duration * 1000)), call: call)
                let elapsed = start.duration(to: .now)
                let cpu = self.cpuMicroseconds() - cpuBefore
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                let rate = Double(completed) / seconds
                let cpuPerRequest = Double(cpu) / Double(max(1, completed))
                print("\(concurrency)\t\(completed)\t\(String(format2: seconds))\t\(Int(rate.rounded()))\t\(String(format1: cpuPerRequest))")
            }
        }
    }

    /// Runs `concurrency` workers calling `call` back to back until `duration` has passed; returns the calls made.
    static func load(
        concurrency: Int, duration: Duration, call: @escaping @Sendable () async throws(UpstreamError) -> Bool
    ) async throws -> Int {
        let deadline = ContinuousClock.now + duration
        return try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var done = 0
                    while ContinuousClock.now < deadline {
                        guard try await call() else { throw UpstreamError(.invalidResponse, message: "unexpected response") }
                        done += 1
                    }
                    return done
                }
            }
            var total = 0
            for try await done in group { total += done }
            return total
        }
    }

    /// User + system CPU time of the whole process so far.
    static func cpuMicroseconds() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000 + Int(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
    }
}

extension String {
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }

    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        let fraction = abs(hundredths % 100)
        self = "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
