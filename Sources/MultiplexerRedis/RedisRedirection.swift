/// An error reply that means "this command was **not** executed here; send it again (elsewhere, or a bit
/// later)". Re-sending one of these can never apply a command twice, unlike a broken connection.
enum RedisRedirection: Hashable {
    /// `MOVED <slot> <host>:<port>`: the slot lives on another master now. Update the map, re-send there.
    case moved(slot: Int, to: RedisAddress)
    /// `ASK <slot> <host>:<port>`: the slot is migrating and the key is already on the target. Send
    /// `ASKING` plus the command to that node, once; the map does not change.
    case ask(slot: Int, to: RedisAddress)
    /// `READONLY`: the server is a replica now (a failover happened). Find the new master.
    case readOnly
    /// `NOSCRIPT`: load the script there, then run the command again.
    case noScript
    /// A transient state where the command is refused before it runs: `TRYAGAIN` (multi-key command
    /// during a migration), `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`, or a script that the cluster
    /// stopped at a key that is not (or no longer) on this node. Retry after a short pause.
    ///
    /// The last case relies on the quota scripts touching every key they write before their first
    /// write (see ``RedisScripts``), so the stop always comes before any effect.
    case tryAgain

    /// Classifies an error reply; `nil` for any other reply.
    ///
    /// - Parameters:
    ///   - reply: the reply.
    ///   - isScript: whether the command was an EVALSHA of a ``RedisScript``.
    ///   - current: the node that answered, for a redirection that leaves its host empty.
    init?(_ reply: RedisValue, isScript: Bool, current: RedisAddress?) {
        guard case .error(let m) = reply else { return nil }
        if m.hasPrefix("MOVED ") || m.hasPrefix("ASK ") {
            let parts = m.split(separator: " ")
            guard parts.count == 3, let slot = Int(parts[1]), let colon = parts[2].lastIndex(of: ":"),
                let port = Int(parts[2][parts[2].index(after: colon)...])
            else { return nil }
            var host = String(parts[2][..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            if host.isEmpty { host = current?.host ?? "127.0.0.1" }
            let to = RedisAddress(host: host, port: port)
            self = m.hasPrefix("MOVED ") ? .moved(slot: slot, to: to) : .ask(slot: slot, to: to)
        } else if m.hasPrefix("READONLY") {
            self = .readOnly
        } else if isScript && m.hasPrefix("NOSCRIPT") {
            self = .noScript
        } else if m.hasPrefix("TRYAGAIN") || m.hasPrefix("CLUSTERDOWN") || m.hasPrefix("LOADING") || m.hasPrefix("MASTERDOWN") {
            self = .tryAgain
        } else if isScript && (m.contains("Script attempted to access a non local key in a cluster node") || m.contains("while the cluster is down")) {
            self = .tryAgain
        } else {
            return nil
        }
    }
}
