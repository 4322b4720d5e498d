import Foundation
import MultiplexerCore
import Testing

struct JSONParserTests {
    static func parse(_ s: String) throws -> JSONParser.Document { try JSONParser.parse(Array(s.utf8)) }

    @Test func parsesEveryKindOfValue() throws {
        let d = try Self.parse(#" { "a" : [1, -2.5e3, "x\ny\u00e9\ud83d\ude00", true, false, null, {}], "b": {"c": []} } "#)
        #expect(d.value["a"]?.arrayValue?.count == 7)
        #expect(d.value["a"]?.arrayValue?[1] == .number(-2500))
        #expect(d.value["a"]?.arrayValue?[2] == .string("x\nyé😀"))
        #expect(d.members.map(\.key) == ["a", "b"])
    }

    @Test func recordsTopLevelMemberRanges() throws {
        let text = #"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        let d = try Self.parse(text)
        let bytes = Array(text.utf8)
        let m = try #require(d.member("model"))
        #expect(String(decoding: bytes[m.valueRange], as: UTF8.self) == "\"gpt-4o\"")
        let s = try #require(d.member("stream"))
        #expect(String(decoding: bytes[s.valueRange], as: UTF8.self) == "true")
    }

    @Test(arguments: [
        "", "{", "{\"a\":}", "{\"a\" 1}", "[1,]", "{\"a\":1,}", "01", "1.", "-", "tru", "\"\\x\"", "\"a", "{\"a\":1} x", "\"\u{01}\"",
        "\"\\ud800\"", "[" + String(repeating: "[", count: 200) + String(repeating: "]", count: 201),
    ])
    func rejectsInvalidJSON(_ text: String) {
        #expect(throws: JSONParser.SyntaxError.self) { try Self.parse(text) }
    }

    @Test func agreesWithFoundationOnRandomDocuments() throws {
        // Round trip: our writer's output parses back to the same value, and Foundation accepts it.
        let doc = try Self.parse(#"{"s":"q\"uote\\ and \t tab","n":[0,1,-1,3.25,1e-7],"o":{"k":null}}"#)
        let text = doc.value.jsonText
        let again = try Self.parse(text)
        #expect(again.value == doc.value)
        #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil)
    }

    @Test func membersDecodesOnlyWhatIsAskedAndStillValidatesTheRest() {
        let body = Array(#"{"data":[{"embedding":[0.1,-2e3,{"x":"\u00e9\n"}]}],"usage":{"prompt_tokens":4,"total_tokens":4},"z":true}"#.utf8)
        let m = JSONParser.members(["usage", "missing"], in: body)
        #expect(m == ["usage": .object(["prompt_tokens": .number(4), "total_tokens": .number(4)])])
        #expect(JSONParser.members(["a"], in: Array(#"[{"a":1},{"a":2}]"#.utf8)) == ["a": .number(1)], "first element of a top-level array")
        #expect(JSONParser.members(["usage"], in: Array(#"{"data":[1,],"usage":{}}"#.utf8)) == nil, "a skipped value must still be valid")
        #expect(JSONParser.members(["usage"], in: Array(#"{"s":"bad \x escape","usage":{}}"#.utf8)) == nil)
        #expect(JSONParser.members(["usage"], in: Array("not json".utf8)) == nil)
        #expect(JSONParser.members(["a"], in: Array("{}".utf8)) == [:])
    }
}

/// ``JSONParser/object(decoding:in:)``: a whole object document validated in one pass, a few members decoded.
struct JSONParserObjectSummaryTests {
    static func summary(_ s: String, _ names: Set<String> = ["usage"]) -> JSONParser.ObjectSummary? {
        JSONParser.object(decoding: names, in: Array(s.utf8))
    }

    @Test func decodesTheNamedMembersAndRecordsEveryKind() throws {
        let s = try #require(Self.summary(#" {"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3},"n":1,"ok":true,"z":null,"o":{}} "#))
        #expect(s.decoded == ["usage": .object(["prompt_tokens": .number(3)])])
        #expect(s.kinds == ["id": .string, "choices": .array, "usage": .object, "n": .number, "ok": .bool, "z": .null, "o": .object])
        #expect(Self.summary("{}")?.kinds.isEmpty == true)
    }

    @Test(arguments: [
        "", "   ", "[]", "[{\"choices\":[]}]", "\"text\"", "42", "<html><body>Bad gateway</body></html>", "{\"choices\":[]", "{\"choices\":[]} {}",
        "{\"usage\":{\"prompt_tokens\":1},\"choices\":[1,]}", "{\"choices\":[],\"x\":tru}",
    ])
    func isNilForAnythingButOneWholeObject(_ text: String) {
        #expect(Self.summary(text) == nil, "\(text)")
    }
}
