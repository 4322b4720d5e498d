/// Every problem found in a configuration file, each with its key path and line.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// One problem.
    public struct Problem: Sendable, Hashable, CustomStringConvertible {
        /// Dotted key path with list indexes, e.g. `providers[1].limits.rpm`.
        public var path: String
        /// 1-based line in the file, when known.
        public var line: Int?
        public var message: String

        public var description: String {
            let at = self.line.map { "line \($0): " } ?? ""
            return self.path.isEmpty ? "\(at)\(self.message)" : "\(at)\(self.path): \(self.message)"
        }
    }

    public var problems: [Problem]
    /// The file, if loaded from one.
    public var file: String?

    public var description: String {
        let head = "\(self.file ?? "configuration"): \(self.problems.count) error\(self.problems.count == 1 ? "" : "s")"
        return ([head] + self.problems.map { "  \($0)" }).joined(separator: "\n")
    }
}
