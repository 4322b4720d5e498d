import MultiplexerProcesses
import MultiplexerTestSupport
import Testing

@testable import MultiplexerRedis

struct RedisHashSlotTests {
    @Test func crc16IsXMODEM() {
        // The standard check value of CRC-16/XMODEM, and the one in the Redis Cluster specification.
        #expect(RedisHashSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisHashSlot.crc16([]) == 0)
    }

    /// Values from `CLUSTER KEYSLOT` of redis-server 7.0.
    @Test(arguments: [
        ("123456789", 12739), ("foo", 12182), ("bar", 5061), ("{user1000}.following", 3443), ("{user1000}.followers", 3443),
        ("", 0), ("{}", 15257), ("{}foo", 9500), ("foo{}{bar}", 8363), ("foo{{bar}}zap", 4015), ("foo{bar}{zap}", 5061),
        ("mux", 4361), ("{mux}:schema", 4361), ("{mux}:provider:groq:rpm", 4361), ("a", 15495), ("é", 10180), ("日本", 10949),
    ])
    func slotsMatchClusterKeyslot(_ key: String, _ slot: Int) {
        #expect(RedisHashSlot.slot(forKey: key) == slot)
    }

    @Test func slotsMatchARealCluster() async throws {
        let cluster = try await RedisCluster.sharedCluster()
        var keys = (0..<20).map { "{ns\($0 * 7919)}:schema" }
        keys += ["plain-key-\(UInt32.random(in: 0...UInt32.max))", "{}{x}", "tag{with}more{tags}", "ümlaut-{ß}"]
        for key in keys {
            #expect(RedisHashSlot.slot(forKey: key) == (try cluster.keySlot(key)), "\(key)")
        }
    }
}

struct RedisTopologyTests {
    @Test func buildsEachTopologyFromTheRedisSection() throws {
        #expect(try RedisTopology(url: "redis://127.0.0.1:6380/2") == .standalone(RedisEndpoint(host: "127.0.0.1", port: 6380, database: 2)))
        let s = try RedisTopology(sentinels: ["sentinel-a:26379", "sentinel-b"], masterName: "mymaster", password: "pw", sentinelPassword: "spw")
        #expect(
            s
                == .sentinel(
                    RedisSentinelConfiguration(
                        sentinels: [RedisAddress(host: "sentinel-a", port: 26379), RedisAddress(host: "sentinel-b", port: 26379)],
                        masterName: "mymaster", password: "pw", sentinelPassword: "spw")))
        let c = try RedisTopology(cluster: ["redis-a:7000", "[::1]:7001"])
        #expect(c == .cluster(RedisClusterConfiguration(seeds: [RedisAddress(host: "redis-a", port: 7000), RedisAddress(host: "::1", port: 7001)])))
        #expect(!String(describing: s).contains("pw"))
    }

    @Test func rejectsInconsistentSections() {
        let cases: [(String, () throws -> RedisTopology)] = [
            ("none", { try RedisTopology() }),
            ("two", { try RedisTopology(url: "redis://h", cluster: ["h:1"]) }),
            ("no master name", { try RedisTopology(sentinels: ["h:26379"]) }),
            ("empty sentinels", { try RedisTopology(sentinels: [], masterName: "m") }),
            ("bad port", { try RedisTopology(cluster: ["h:99999"]) }),
            ("master name with cluster", { try RedisTopology(masterName: "m", cluster: ["h:1"]) }),
            ("database with cluster", { try RedisTopology(cluster: ["h:1"], database: 1) }),
            ("password beside url", { try RedisTopology(url: "redis://h", password: "x") }),
        ]
        for (name, make) in cases {
            #expect(throws: RedisError.self, "\(name)") { try make() }
        }
    }

    @Test func errorsNameTheKeyPath() {
        do {
            _ = try RedisTopology(sentinels: ["ok:1", "bad:port"], masterName: "m")
            Issue.record("accepted a bad port")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(error.message.hasPrefix("redis.sentinels[1]"))
        }
    }

    @Test func parsesRedirections() {
        let here = RedisAddress(host: "10.0.0.1", port: 7000)
        #expect(RedisRedirection(.error("MOVED 3999 127.0.0.1:6381"), isScript: false, current: here) == .moved(slot: 3999, to: RedisAddress(host: "127.0.0.1", port: 6381)))
        #expect(RedisRedirection(.error("ASK 3999 :6381"), isScript: true, current: here) == .ask(slot: 3999, to: RedisAddress(host: "10.0.0.1", port: 6381)))
        #expect(RedisRedirection(.error("READONLY You can't write against a read only replica."), isScript: true, current: here) == .readOnly)
        #expect(RedisRedirection(.error("NOSCRIPT No matching script."), isScript: true, current: here) == .noScript)
        #expect(RedisRedirection(.error("NOSCRIPT No matching script."), isScript: false, current: here) == nil)
        #expect(RedisRedirection(.error("TRYAGAIN Multiple keys request during rehashing of slot"), isScript: false, current: here) == .tryAgain)
        #expect(
            RedisRedirection(.error("ERR Script attempted to access a non local key in a cluster node script: 80, on @user_script:1."), isScript: true, current: here)
                == .tryAgain)
        #expect(RedisRedirection(.error("ERR wrong number of arguments"), isScript: true, current: here) == nil)
        #expect(RedisRedirection(.integer(1), isScript: true, current: here) == nil)
    }
}
