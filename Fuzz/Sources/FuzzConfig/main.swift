// The configuration loader over arbitrary YAML: a configuration or a ConfigurationError, never a crash.
// A configuration it accepts builds its routing table, and its description shows no secret.
import FuzzDriver
import MultiplexerCore
@testable import MultiplexerGateway

let environment = ["HOSTNAME": "gw-1", "KEY": "sk-fuzz-secret-value", "EMPTY": ""]

fuzz { data, size in
    let text = String(decoding: bytes(data, size), as: UTF8.self)
    do {
        let configuration = try ConfigurationLoader.parse(yaml: text, environment: environment)
        _ = try? configuration.routingTable()
        let shown = configuration.description
        for p in configuration.providers where p.apiKey.count >= 8 {
            require(!shown.contains(p.apiKey), "a provider key is shown")
        }
    } catch let error as ConfigurationError {
        _ = error.problems.map(\.description)
    } catch {
        fatalError("not a ConfigurationError: \(error)")
    }
    return 0
}
