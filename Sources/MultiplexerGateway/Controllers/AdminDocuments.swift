import Foundation
public import MultiplexerCore

/// The JSON documents of the admin API (`/admin/stats`, `/admin/keys`, `/admin/reload`, cooldowns) and of
/// `multiplexer stats --json` / `keys list --json`: `Encodable` values written by one encoder, snake_case
/// keys in sorted order, `null` where a value is absent and the contract shows `null` (``Nullable``).
///
/// (The request path's own JSON — OpenAI errors, relayed bodies — is spliced by hand on purpose: it is
/// written per request; these are written per operator action or dashboard poll.)
enum AdminJSON {
    /// Encodes `value` as compact JSON (snake_case keys, slashes unescaped).
    static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        // Sorted keys: the same document always reads the same (operators diff and grep it).
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        // Every document here is made of strings, integers, booleans and arrays: encoding cannot fail.
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
    }

    /// `{"status": …}` (`/healthz`, `/readyz`).
    struct Status: Encodable {
        var status: String
    }

    /// A provider's cooldown after `POST`/`DELETE /admin/providers/{name}/cooldown`.
    struct Cooldown: Encodable {
        var provider: String
        var cooldownMs: Int64
    }

    /// `POST /admin/reload` applied.
    struct Reloaded: Encodable {
        var status = "reloaded"
        var generation: Int
        var changes: [String]
        var restartRequired: [String]
    }

    /// `POST /admin/reload` refused: an OpenAI-shaped error plus every problem with its key path and line.
    struct ReloadRefused: Encodable {
        struct Problem: Encodable {
            var path: String
            @Nullable var line: Int?
            var message: String
        }
        var error: OpenAIErrorBody
        var errors: [Problem]
    }

    /// The `error` member of an OpenAI error document.
    struct OpenAIErrorBody: Encodable {
        var message: String
        var type: String
        @Nullable var param: String?
        @Nullable var code: String?
    }

    /// One entry of `GET /admin/keys` (never a secret): a file key (name and source only) or a run-time key.
    struct Key: Encodable {
        struct Limits: Encodable {
            var rpm: Int?
            var tpm: Int?
        }
        struct Budget: Encodable {
            var dailyUsd: Double?
            var monthlyUsd: Double?
        }
        var name: String
        var source: String
        var limits: Limits?
        var budget: Budget?
        /// Run-time keys: `null` for every model; absent for file keys.
        var models: Nullable<[String]>?
        var createdMs: Int64?
        /// Only in the answer that creates the key.
        var key: String?

        static func file(_ name: String) -> Key {
            Key(name: name, source: "file")
        }
    }

    struct Keys: Encodable {
        var keys: [Key]
    }

    struct Revoked: Encodable {
        var revoked: String
    }

    /// A recent upstream failure (the dashboard's list).
    struct RecentError: Encodable {
        var atMs: Int64
        var provider: String
        var what: String
    }

    /// The fleet snapshot (`/admin/stats` adds `generation`, `config` and `recent_errors`).
    struct Stats: Encodable {
        struct Window: Encodable {
            var rpm, rpd, tpm, tpd, inFlight: Int
            init(_ w: WindowUse) {
                (self.rpm, self.rpd, self.tpm, self.tpd, self.inFlight) = (w.rpm, w.rpd, w.tpm, w.tpd, w.inFlight)
            }
        }
        struct Usage: Encodable {
            var requests, success, rateLimited, errors, promptTokens, completionTokens, fallbackServed: Int
            init(_ u: UsageCounters) {
                (self.requests, self.success, self.rateLimited, self.errors) = (u.requests, u.success, u.rateLimited, u.errors)
                (self.promptTokens, self.completionTokens, self.fallbackServed) = (u.promptTokens, u.completionTokens, u.fallbackServed)
            }
        }
        struct Provider: Encodable {
            struct Spend: Encodable { var todayMicroUsd: Int64 }
            var name: String
            var usage: Usage
            var window: Window
            @Nullable var cooldownMs: Int64?
            @Nullable var cooldownReason: String?
            var disabled: Bool
            var consecutiveFailures: Int
            var spend: Spend
        }
        struct KeyUse: Encodable {
            struct Spend: Encodable { var todayMicroUsd, monthMicroUsd: Int64 }
            var name: String
            var usage: Usage
            var window: Window
            var spend: Spend
        }
        struct Model: Encodable {
            var name: String
            var requests, fallbacks, exhausted, continued: Int
        }
        struct Node: Encodable {
            var id: String
            var lastSeenMs: Int64
        }
        @Nullable var node: String?
        var store: String
        var providers: [Provider]
        var keys: [KeyUse]
        var models: [Model]
        var nodes: [Node]
        var generation: Int?
        var config: Config?
        var recentErrors: [RecentError]?

        init(_ s: FleetStats, node: String?, store: String) {
            self.node = node
            self.store = store
            self.providers = s.providers.map { p in
                Provider(
                    name: p.name, usage: Usage(p.usage), window: Window(p.window), cooldownMs: p.cooldownRemaining?.millisecondsRoundedUp,
                    cooldownReason: p.cooldownReason?.rawValue, disabled: p.disabled, consecutiveFailures: p.consecutiveFailures,
                    spend: .init(todayMicroUsd: p.spentToday))
            }
            self.keys = s.keys.map { k in
                KeyUse(name: k.name, usage: Usage(k.usage), window: Window(k.window), spend: .init(todayMicroUsd: k.spentToday, monthMicroUsd: k.spentThisMonth))
            }
            self.models = s.models.map { m in
                Model(name: m.name, requests: m.counters.requests, fallbacks: m.counters.fallbacks, exhausted: m.counters.exhausted, continued: m.counters.continued)
            }
            self.nodes = s.nodes.map { Node(id: $0.id, lastSeenMs: $0.lastSeen.millisecondsRoundedUp) }
        }
    }

    /// Each provider's limits and the tiers it serves in, each group's members, each key's budget: what the
    /// dashboard draws the windows against.
    struct Config: Encodable {
        struct Provider: Encodable {
            struct Limits: Encodable {
                var rpm, rpd, tpm, tpd, maxConcurrent: Int?
            }
            struct Budget: Encodable { var dailyMicroUsd: Int64 }
            struct Pricing: Encodable { var inputMicroUsdPerMtok, outputMicroUsdPerMtok: Int64 }
            var name: String
            var tiers: [String]
            var limits: Limits
            @Nullable var budget: Budget?
            @Nullable var pricing: Pricing?
        }
        struct Model: Encodable {
            var name: String
            var primary: [String]
            var fallback: [String]
        }
        struct Key: Encodable {
            struct Budget: Encodable {
                @Nullable var dailyMicroUsd: Int64?
                @Nullable var monthlyMicroUsd: Int64?
            }
            var name: String
            var budget: Budget
        }
        var providers: [Provider]
        var models: [Model]
        var keys: [Key]
    }
}

/// An optional member written as `null` when absent (a plain optional is left out).
@propertyWrapper
struct Nullable<Value: Encodable>: Encodable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) {
        self.wrappedValue = wrappedValue
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let v = self.wrappedValue { try c.encode(v) } else { try c.encodeNil() }
    }
}

/// `/admin/stats` and `multiplexer stats --json`: the fleet snapshot as JSON.
public enum StatsJSON {
    public static func render(_ s: FleetStats, node: String?, store: String) -> String {
        AdminJSON.encode(AdminJSON.Stats(s, node: node, store: store))
    }
}
