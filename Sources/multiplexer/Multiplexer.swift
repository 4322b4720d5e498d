import ArgumentParser

@main
struct MultiplexerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "multiplexer", abstract: "An OpenAI-compatible LLM gateway cluster.")
}
