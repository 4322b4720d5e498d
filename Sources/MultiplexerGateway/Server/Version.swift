/// The version `multiplexer --version` prints.
public enum MultiplexerVersion {
    public static let current = "0.3.0"
}
