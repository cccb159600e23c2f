/// A problem found while reading route files: where it is (file, line, key) and what is wrong.
///
/// `description` reads like a compiler diagnostic, `routes/shop.yaml:7: split "2-4" is not B/G,
/// e.g. 2/4`, or `routes/shop.yaml: message` when the problem has no single line.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Hashable {
    /// The file the problem is in, as it was given to the loader.
    public let file: String
    /// The 1-based line, as an editor shows it, when the problem has one.
    public let line: Int?
    /// The dotted key path the problem is about (`rollout.rollback.maxErrorRate`,
    /// `blue.instances[1]`), when there is one.
    public let key: String?
    /// What is wrong and what is expected instead; names the key.
    public let message: String

    /// Creates an error.
    public init(file: String, line: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// `file:line: message`, or `file: message` when there is no line.
    public var description: String {
        if let line { "\(file):\(line): \(message)" } else { "\(file): \(message)" }
    }
}
