import MultiplexerCore
import Testing

@testable import MultiplexerRedis

/// Replies of the wrong shape (a corrupted or hostile Redis) are protocol errors, never a crash: the inputs
/// the FuzzRedisReply target found, decoded through hiredis's reader as off a connection.
struct RedisReplyDecodingTests {
    static let request = AdmissionRequest(candidates: [AdmissionCandidate(provider: "a", limits: ProviderLimits(rpm: 5), tokens: 10)])

    static func reply(_ resp: String) throws -> RedisValue {
        try #require(RedisConnection.decodeReplies(Array(resp.utf8))?.first)
    }

    @Test func hiredisRepliesConvertAndAProtocolErrorIsNil() throws {
        #expect(RedisConnection.decodeReplies(Array("*2\r\n:1\r\n$3\r\nabc\r\n+OK\r\n-ERR x\r\n$-1\r\n".utf8))
            == [.array([.integer(1), .string(Array("abc".utf8))]), .status("OK"), .error("ERR x"), .null])
        #expect(RedisConnection.decodeReplies(Array("?what\r\n".utf8)) == nil)
        #expect(RedisConnection.decodeReplies(Array("*2\r\n:1\r\n".utf8)) == [], "an incomplete reply is not a reply")
    }

    /// Found by the FuzzRedisReply target: hiredis 0.14 allocated an array's element pointers for any announced
    /// length up to INT_MAX (16 GB for `*2147483647`) before a single element arrived.
    @Test func anArrayAnnouncingMoreThanAMillionElementsIsRefusedBeforeItIsAllocated() {
        #expect(RedisConnection.decodeReplies(Array("*2147483647\r\n".utf8)) == nil)
        #expect(RedisConnection.decodeReplies(Array("*1048577\r\n".utf8)) == nil)
        #expect(RedisConnection.decodeReplies(Array("*1048576\r\n".utf8)) == [], "at the limit: waits for its elements")
        #expect(RedisConnection.decodeReplies(Array("*1\r\n*3\r\n:1\r\n:2\r\n:3\r\n".utf8)) == [.array([.array([.integer(1), .integer(2), .integer(3)])])])
    }

    @Test(arguments: ["*1\r\n:2\r\n", "*1\r\n:3\r\n", "*1\r\n:4\r\n", "*1\r\n:1\r\n", "*0\r\n", ":2\r\n"])
    func anAdmissionReplyTooShortForItsTagIsAProtocolError(_ resp: String) throws {
        let v = try Self.reply(resp)
        #expect(throws: RedisError.self) { try RedisQuotaStore.decodeAdmission(v, id: "1", request: Self.request) }
    }

    @Test func statsWithTimesThatWouldOverflowDecode() throws {
        let v = try Self.reply("*5\r\n:9223372036854775807\r\n*0\r\n*0\r\n*0\r\n*2\r\n$1\r\nn\r\n:-9223372036854775807\r\n")
        let stats = try RedisQuotaStore.decodeStats(v, providers: [], keys: [], models: [])
        #expect(stats.nodes.count == 1)
    }
}
