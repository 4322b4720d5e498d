/// Redis Cluster key hashing: `CRC16(key) mod 16384`, where only the hash tag is hashed when the key has
/// one (`{ns}:provider:x:rpm` hashes `ns`), exactly as `CLUSTER KEYSLOT` computes it.
public enum RedisHashSlot {
    /// Slots in a Redis Cluster.
    public static let count = 16384

    /// The slot of `key`.
    public static func slot(forKey key: String) -> Int {
        Self.slot(forKey: Array(key.utf8))
    }

    /// The slot of a binary key.
    public static func slot(forKey key: [UInt8]) -> Int {
        Int(Self.crc16(Self.hashedPart(of: key)) & 0x3FFF)
    }

    /// The bytes Redis hashes: the content of the first `{…}` if it is non-empty, else the whole key.
    static func hashedPart(of key: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
            close > open + 1
        else { return key[...] }
        return key[(open + 1)..<close]
    }

    /// CRC-16/XMODEM (polynomial 0x1021, initial value 0, no reflection), the CRC Redis Cluster uses.
    static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for b in bytes {
            crc ^= UInt16(b) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }
}
