// An example service that embeds the Multiplexer library and shares its quotas with gateways through Redis.
//
// Environment:
//   PROVIDERS     comma-separated primary models, each `name=base_url` (or a bare base URL, named provider-N),
//                 e.g. "groq=https://api.groq.com/openai/v1,together=https://api.together.xyz/v1"
//   FALLBACKS     the same, for the fallback tier (optional)
//   API_KEY       the bearer key sent to every provider (optional)
//   UPSTREAM_MODEL the model id sent upstream (default: each provider's name)
//   RPM           a requests-per-minute limit for every provider (optional)
//   REDIS_URL     e.g. redis://127.0.0.1:6379/0 — omit to keep quotas in this process
//   NAMESPACE     the gateways' redis.namespace (default mux)
//   CALLS         how many completions to make (default 5)
//
// Try it on loopback against the bundled mock providers:
//   multiplexer mock-provider --port 9001 --rpm 3 &  multiplexer mock-provider --port 9002 &
//   redis-server --port 6379 &
//   PROVIDERS=fast=http://127.0.0.1:9001/v1 FALLBACKS=backup=http://127.0.0.1:9002/v1 RPM=3 \
//   REDIS_URL=redis://127.0.0.1:6379/0 swift run EmbeddedService
import Foundation
import Multiplexer

@main
struct EmbeddedService {
    static func main() async throws {
        let env = ProcessInfo.processInfo.environment
        let primaries = Self.providers(env["PROVIDERS"] ?? "", prefix: "provider")
        let fallbacks = Self.providers(env["FALLBACKS"] ?? "", prefix: "fallback")
        guard !primaries.isEmpty else {
            print("Set PROVIDERS=name=https://host/v1[,…] (and optionally FALLBACKS, API_KEY, RPM, REDIS_URL, NAMESPACE).")
            return
        }
        let store: Multiplexer.Store
        if let url = env["REDIS_URL"], !url.isEmpty {
            store = try .redis(url: url, namespace: env["NAMESPACE"] ?? "mux")
            print("Quotas in Redis at \(url), namespace \(env["NAMESPACE"] ?? "mux") (shared with gateways there).")
        } else {
            store = .inMemory
            print("Quotas in this process (set REDIS_URL to share them with gateways).")
        }
        let limits = OpenAICompatibleEndpoint.Limits(rpm: env["RPM"].flatMap { Int($0) })
        let calls = env["CALLS"].flatMap { Int($0) } ?? 5

        try await Multiplexer.withMultiplexer(store: store) { mux in
            for (tier, list) in [(false, primaries), (true, fallbacks)] {
                for (name, url) in list {
                    let endpoint = OpenAICompatibleEndpoint(baseURL: url, apiKey: env["API_KEY"] ?? "", model: env["UPSTREAM_MODEL"], limits: limits)
                    if tier {
                        try mux.addFallbackModel(endpoint, weight: 1, modelName: name)
                    } else {
                        try mux.addModel(endpoint, weight: 1, modelName: name)
                    }
                }
            }

            for i in 1...max(1, calls) {
                do {
                    let completion = try await mux.chat.completions.create(messages: [
                        .system("You are a helpful assistant."),
                        .user("What is the capital of France? (\(i))"),
                    ])
                    print("[\(i)] \(completion.servedBy ?? "?"): \(completion.choices.first?.message.content?.text ?? "")")
                } catch let error as MultiplexerError {
                    print("[\(i)] \(error.code): \(error.message)")
                }
            }

            print("streaming:", terminator: " ")
            do {
                for try await chunk in try await mux.chat.completions.stream(messages: [.user("Count to five.")]) {
                    print(chunk.choices.first?.delta.content ?? "", terminator: "")
                }
                print()
            } catch let error as MultiplexerError {
                print("\n\(error.code): \(error.message)")
            }

            print("Model usage stats:")
            let stats = try await mux.stats()
            for name in mux.modelNames {
                let s = stats[name] ?? SeedStats(success: 0, rateLimited: 0, failed: 0)
                print("  \(name): success \(s.success), rateLimited \(s.rateLimited), failed \(s.failed)")
            }
            for p in try await mux.fleetStats().providers {
                print("  \(p.name): rpm window \(p.window.rpm), tokens \(p.usage.promptTokens)+\(p.usage.completionTokens), cooling down: \(p.cooldownRemaining.map { "\($0)" } ?? "no")")
            }
        }
    }

    /// `name=url,url,…` → [(name, url)].
    static func providers(_ list: String, prefix: String) -> [(String, String)] {
        list.split(separator: ",").enumerated().map { i, item in
            let parts = item.split(separator: "=", maxSplits: 1)
            return parts.count == 2 && !parts[0].contains("/") ? (String(parts[0]), String(parts[1])) : ("\(prefix)-\(i + 1)", String(item))
        }
    }
}
