// A client's request body and path: the JSON parser, the request validation and the upstream body rewrite.
//
// Input: byte 0 chooses the operation and options, the rest is the body (and, read as text, a request path).
// Properties:
// - the parser never crashes, with or without duplicate-key rejection; a document accepted with rejection
//   is accepted without it;
// - a request the gateway accepts is rewritten into a body that parses (duplicate keys refused), names the
//   model the gateway chose, and keeps every other member of the client's body;
// - the path rules answer every path.
import FuzzDriver
import MultiplexerCore
@testable import MultiplexerGateway

let operations = ["chat/completions", "completions", "embeddings", "responses", "messages"]

fuzz { data, size in
    let input = bytes(data, size)
    guard let seed = input.first else { return 0 }
    let body = Array(input.dropFirst())

    let lenient = try? JSONParser.parse(body)
    if (try? JSONParser.parse(body, rejectingDuplicateKeys: true)) != nil {
        require(lenient != nil, "a document accepted strictly is refused leniently")
    }

    let operation = operations[Int(seed) % operations.count]
    if let request = try? OpenAIRequest(operation: operation, body: body) {
        let model = seed & 0x40 == 0 ? "fuzz-model" : "group/m\u{e9}\"quoted\\"
        let upstream = request.upstreamBody(model: model, includeUsage: seed & 0x80 != 0)
        guard let rewritten = try? JSONParser.parse(upstream, rejectingDuplicateKeys: true) else {
            fatalError("the upstream body does not parse: \(String(decoding: upstream, as: UTF8.self))")
        }
        require(rewritten.value["model"] == .string(model), "the upstream body names another model")
        if case .object(let original) = request.document.value, case .object(let sent) = rewritten.value {
            for (name, value) in original where name != "model" && name != "stream_options" {
                require(sent.first { $0.0 == name }?.1 == value, "member \(name) changed")
            }
        }
    }

    _ = PathRules.refusal(rawPath: Substring(String(decoding: body, as: UTF8.self)))
    _ = ClientHeaders.isSaneRequestID(String(decoding: body, as: UTF8.self))
    return 0
}
