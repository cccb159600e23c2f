/// The entries of a YAML mapping in a route file, looked up by key, after its keys were checked
/// against the allowed ones.
struct ConfigMapping {
    /// The mapping itself; missing keys are reported at its line.
    let owner: ConfigNode
    let entries: [String: ConfigNode]

    /// The value at `key`, or `nil` when the key is absent or has no value (`key:` or `key: ~`).
    func optional(_ key: String) -> ConfigNode? {
        guard let value = entries[key], !value.isNull else { return nil }
        return value
    }

    /// The value at `key`; when the key is absent the error says it is missing and what is
    /// expected there (`expecting`: `"the route's name, e.g. route: shop"`).
    func required(_ key: String, expecting: String) throws(ConfigError) -> ConfigNode {
        guard let value = entries[key] else {
            let place = owner.path.isEmpty ? "" : " in \(owner.path)"
            throw ConfigError(file: owner.file, line: owner.line, key: owner.path(of: key),
                              message: "missing key `\(key)`\(place); expected \(expecting)")
        }
        return value
    }
}
