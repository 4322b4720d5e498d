import Crypto
import MultiplexerCore

/// The SHA-256 of a key, in lowercase hex: how client keys are compared and stored (`keys[].key_sha256`,
/// `{mux}:vkey:<sha256>`), never the key itself. swift-crypto (BoringSSL on Linux) computes it.
enum KeyDigest {
    static func hex(_ message: [UInt8]) -> String {
        SHA256.hash(data: message).hexString
    }
}
