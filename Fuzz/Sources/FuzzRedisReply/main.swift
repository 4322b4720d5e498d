// Replies from Redis (or from whoever is on the Redis network): hiredis's reader, the conversion of its reply
// objects, and the decoders of the scripts' replies. Any bytes give values or errors, never a crash.
import FuzzDriver
import MultiplexerCore
@testable import MultiplexerRedis

let request = AdmissionRequest(candidates: [
    AdmissionCandidate(provider: "a", tier: .primary, limits: ProviderLimits(rpm: 5), tokens: 10),
    AdmissionCandidate(provider: "b", tier: .fallback, limits: ProviderLimits(), tokens: 10),
])

fuzz { data, size in
    guard let replies = RedisConnection.decodeReplies(bytes(data, size)) else { return 0 }
    for reply in replies {
        _ = try? RedisQuotaStore.decodeAdmission(reply, id: "1", request: request)
        _ = RedisQuotaStore.use(of: reply)
        _ = try? RedisQuotaStore.decodeStats(reply, providers: ["a", "b"], keys: ["k"], models: ["m"])
        _ = RedisQuotaStore.usage(reply)
        _ = ClusterSlotMap(reply: reply, queried: RedisAddress(host: "127.0.0.1", port: 6379))
        _ = RedisRedirection(reply, isScript: true, current: nil)
        _ = reply.errorMessage
    }
    return 0
}
