import Yams

/// A YAML node being read from a route file, with what error messages need to say where it is:
/// the file, the dotted key path (`rollout.steps[1]`) and a line.
///
/// The typed readers (`string`, `int`, `list`, `mapping`, ...) throw errors that name the key,
/// what was expected and what was found.
struct ConfigNode {
    let node: Node
    /// Dotted key path from the document root; empty for the root itself.
    let path: String
    /// 1-based line of the key that introduced the node, or of the node itself; `nil` for the root,
    /// whose problems concern the whole file.
    let line: Int?
    let file: String

    /// Whether the node is an empty value or `~`/`null`.
    var isNull: Bool { node.tag.rawValue == Tag.Name.null.rawValue }

    /// The source text of a non-null scalar, exactly as written (`1.5` stays `1.5`).
    var scalarText: String? {
        guard case .scalar(let scalar) = node, !isNull else { return nil }
        return scalar.string
    }

    /// The path of a key inside this node.
    func path(of key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// An error whose message is `detail` prefixed with the key path.
    func error(_ detail: String) -> ConfigError {
        error(whole: path.isEmpty ? detail : "\(path): \(detail)")
    }

    /// An error with exactly `message`, which must name the key itself.
    func error(whole message: String) -> ConfigError {
        ConfigError(file: file, line: line, key: path.isEmpty ? nil : path, message: message)
    }

    /// `path: expected <what>, found <what the node is>`.
    func mismatch(expected what: String) -> ConfigError {
        error("expected \(what), found \(node.kindDescription)")
    }

    /// The node as a mapping whose keys must all be in `keys`.
    func mapping(keys allowed: [String]) throws(ConfigError) -> ConfigMapping {
        guard case .mapping(let mapping) = node else {
            throw mismatch(expected: "a mapping with keys \(allowed.joined(separator: ", "))")
        }
        var entries: [String: ConfigNode] = [:]
        for (keyNode, value) in mapping {
            let keyLine = keyNode.mark?.line
            let key = try ConfigNode(node: keyNode, path: path, line: keyLine, file: file).string("a key name")
            let entry = ConfigNode(node: value, path: self.path(of: key), line: keyLine, file: file)
            guard allowed.contains(key) else {
                let place = path.isEmpty ? "" : " in \(path)"
                throw entry.error(whole: "unknown key `\(key)`\(place); expected one of \(allowed.joined(separator: ", "))")
            }
            entries[key] = entry
        }
        return ConfigMapping(owner: self, entries: entries)
    }

    /// The node as a list of `what` (`"host:port strings"`); items are named `path[index]`.
    func list(of what: String) throws(ConfigError) -> [ConfigNode] {
        guard case .sequence(let sequence) = node else { throw mismatch(expected: "a list of \(what)") }
        return sequence.enumerated().map { index, item in
            ConfigNode(node: item, path: "\(path)[\(index)]", line: item.mark?.line ?? line, file: file)
        }
    }

    /// The source text of a scalar; `what` describes it for the error (`"a version string"`).
    func string(_ what: String) throws(ConfigError) -> String {
        guard let text = scalarText else { throw mismatch(expected: what) }
        return text
    }

    /// A decimal integer in `range`.
    func int(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let what = range.upperBound == .max
            ? "an integer >= \(range.lowerBound)"
            : "an integer from \(range.lowerBound) to \(range.upperBound)"
        guard let value = scalarText.flatMap({ Int($0) }), range.contains(value) else {
            throw mismatch(expected: what)
        }
        return value
    }

    /// `true` or `false` (YAML's `yes`/`no`/`on`/`off` too); `what` is the expectation the error
    /// states, for keys that take other forms as well.
    func bool(_ what: String = "true or false") throws(ConfigError) -> Bool {
        guard scalarText != nil, let value = node.bool else { throw mismatch(expected: what) }
        return value
    }
}

extension ConfigNode {
    /// The document root of `file`.
    init(root: Node, file: String) {
        self.init(node: root, path: "", line: nil, file: file)
    }
}

extension Node {
    /// What the node is, for "found ..." in errors: `a mapping`, `a list`, `nothing`, `"text"`
    /// for a string, or the plain value for a number or boolean.
    fileprivate var kindDescription: String {
        switch self {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            switch tag.rawValue {
            case Tag.Name.null.rawValue: return "nothing"
            case Tag.Name.str.rawValue: return "\"\(scalar.string)\""
            default: return scalar.string
            }
        }
    }
}
