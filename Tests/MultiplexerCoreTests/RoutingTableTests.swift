import MultiplexerCore
import Testing

struct RoutingTableTests {
    static func provider(_ n: String) -> Provider { Provider(name: n, baseURL: "http://127.0.0.1:1", apiKey: "sk-secret-\(n)", model: "m") }

    @Test func resolvesNamesAliasesAndTheDefault() throws {
        let t = try RoutingTable(
            providers: [Self.provider("a")],
            groups: [ModelGroup(name: "llama", aliases: ["gpt-4o-mini"], primary: [.init(provider: "a", weight: 1)])],
            defaultGroup: "llama")
        #expect(t.group(forModel: "llama")?.name == "llama")
        #expect(t.group(forModel: "gpt-4o-mini")?.name == "llama")
        #expect(t.group(forModel: "placeholder")?.name == "llama")
        #expect(t.group(forModel: nil)?.name == "llama")
        let noDefault = try RoutingTable(providers: [Self.provider("a")], groups: [ModelGroup(name: "llama", primary: [.init(provider: "a", weight: 1)])])
        #expect(noDefault.group(forModel: "other") == nil)
    }

    @Test func reportsEveryProblemAtOnce() {
        #expect {
            try RoutingTable(
                providers: [Self.provider("a"), Self.provider("a"), Self.provider("Bad Name")],
                groups: [
                    ModelGroup(name: "g", primary: [.init(provider: "a", weight: 0), .init(provider: "zzz", weight: 1)], maxAttempts: 0),
                    ModelGroup(name: "g", primary: []),
                ],
                defaultGroup: "nope")
        } throws: { error in
            let m = (error as? RoutingTableError)?.message ?? ""
            return m.contains("duplicate provider name 'a'") && m.contains("'Bad Name'") && m.contains("weight of 'a'")
                && m.contains("unknown provider 'zzz'") && m.contains("max_attempts") && m.contains("used twice")
                && m.contains("no primary") && m.contains("default model 'nope'")
        }
    }

    @Test func providerDescriptionsNeverShowTheKey() {
        let p = Self.provider("a")
        #expect(!String(describing: p).contains("sk-secret"))
        #expect(!String(reflecting: p).contains("sk-secret"))
        var dumped = ""
        dump(p, to: &dumped)
        #expect(!dumped.contains("sk-secret"))
    }

    @Test func limitSharesNeverDropToZero() {
        let l = ProviderLimits(rpm: 10, rpd: 1000, tpm: 5, tpd: nil, maxConcurrent: 2).share(amongNodes: 3)
        #expect(l == ProviderLimits(rpm: 3, rpd: 333, tpm: 1, tpd: nil, maxConcurrent: 1))
        #expect(KeyLimits(rpm: 7, tpm: nil).share(amongNodes: 0) == KeyLimits(rpm: 7, tpm: nil))
    }
}
