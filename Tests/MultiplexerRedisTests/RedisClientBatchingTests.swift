import Foundation
import MultiplexerRedis
import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

/// ``RedisClient/evalshaBatched(_:keys:head:part:)``: parts queued together become one EVALSHA, and each caller
/// gets exactly its own part's reply.
@Suite struct RedisClientBatchingTests {
    /// Answers each part with {head, its first argument, its argument count}; a part whose first argument is
    /// `bad` gets an error element; a head of `fail` fails the whole call.
    static let echo = RedisScript("""
        if ARGV[1] == 'fail' then return redis.error_reply('whole call refused') end
        local m, o, out = tonumber(ARGV[2]), 3, {}
        for j = 1, m do
          local len = tonumber(ARGV[o])
          if ARGV[o + 1] == 'bad' then
            out[j] = redis.error_reply('bad part ' .. j)
          else
            out[j] = {ARGV[1], ARGV[o + 1], len}
          end
          o = o + len + 1
        end
        return out
        """)

    @Test func concurrentPartsShareCallsAndEachCallerGetsItsOwnReply() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let client = RedisClient(configuration: .init(endpoint: try RedisEndpoint(url: server.url), commandTimeout: .seconds(5)))
        defer { client.shutdown() }
        // Load the script first, so the concurrent wave is the only traffic counted.
        _ = try await client.evalshaBatched(Self.echo, keys: [], head: ["h"], part: ["warm"])
        _ = try server.rawCLI(["CONFIG", "RESETSTAT"])
        let n = 400
        let replies = try await withThrowingTaskGroup(of: (Int, RedisValue).self) { group in
            for i in 0..<n {
                group.addTask {
                    let part = i % 50 == 7 ? ["bad"] : ["p\(i)"] + Array(repeating: "x", count: i % 5)
                    return (i, try await client.evalshaBatched(Self.echo, keys: [], head: ["h"], part: part))
                }
            }
            var all: [Int: RedisValue] = [:]
            for try await (i, r) in group { all[i] = r }
            return all
        }
        for i in 0..<n {
            if i % 50 == 7 {
                #expect(replies[i]?.errorMessage?.contains("bad part") == true, "part \(i): \(String(describing: replies[i]))")
            } else {
                #expect(replies[i] == .array([.string(Array("h".utf8)), .string(Array("p\(i)".utf8)), .integer(Int64(1 + i % 5))]), "part \(i)")
            }
        }
        let stats = try server.rawCLI(["INFO", "commandstats"])
        let calls = stats.split(whereSeparator: \.isNewline).first { $0.hasPrefix("cmdstat_evalsha:") }
            .flatMap { $0.split(separator: ",").first?.split(separator: "=").last }.flatMap { Int($0) } ?? -1
        // 400 callers at once: merged into far fewer calls (at most 64 parts each), but every one answered.
        #expect(calls >= (n + 63) / 64 && calls < n, "EVALSHA calls: \(calls)")
        #expect(client.statistics.requests - client.statistics.commands > 0)
    }

    @Test func aFailedCallFailsEachOfItsParts() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let client = RedisClient(configuration: .init(endpoint: try RedisEndpoint(url: server.url), commandTimeout: .seconds(5)))
        defer { client.shutdown() }
        let refused = try await withThrowingTaskGroup(of: RedisValue.self) { group in
            for i in 0..<20 { group.addTask { try await client.evalshaBatched(Self.echo, keys: [], head: ["fail"], part: ["p\(i)"]) } }
            var all: [RedisValue] = []
            for try await r in group { all.append(r) }
            return all
        }
        #expect(refused.count == 20)
        #expect(refused.allSatisfy { $0.errorMessage?.contains("whole call refused") == true })
        // Redis gone: every part fails with an error the store treats as unavailable or ambiguous.
        server.stop()
        let failures = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<10 {
                group.addTask {
                    do throws(RedisError) {
                        _ = try await client.evalshaBatched(Self.echo, keys: [], head: ["h"], part: ["p\(i)"])
                        return false
                    } catch {
                        return true
                    }
                }
            }
            var n = 0
            for await failed in group where failed { n += 1 }
            return n
        }
        #expect(failures == 10)
    }
}
