/// Finds the route for a request from its `Host` and path, on raw bytes so the request path
/// makes no strings.
///
/// Precedence: routes whose host matches exactly, then wildcard hosts (longest suffix first), then
/// routes without a host; within each group the longest matching path prefix wins. If no route
/// in a host group has a matching prefix, the search falls through to the next group. A route
/// with no match at all is the default and takes any request nothing else took. Prefixes compare
/// bytes (like nginx prefix locations): `/api` matches `/api/x` and `/apix`.
public struct RouteTable: Sendable {
    struct Entry: Sendable {
        var host: [UInt8]  // lowercased; exact name or ".suffix"
        var prefix: [UInt8]
        var route: Int
    }

    private let exact: [Entry]     // sorted: longest prefix first
    private let wildcard: [Entry]  // sorted: longest suffix, then longest prefix first
    private let hostless: [Entry]  // sorted: longest prefix first

    /// Builds the table; `matches[i]` is route `i`'s match.
    public init(matches: [RouteMatch]) {
        var exact: [Entry] = [], wildcard: [Entry] = [], hostless: [Entry] = []
        for (index, match) in matches.enumerated() {
            let prefix = Array(match.effectivePathPrefix.utf8)
            switch match.host {
            case .exact(let host)?: exact.append(Entry(host: Array(host.utf8), prefix: prefix, route: index))
            case .suffix(let suffix)?: wildcard.append(Entry(host: Array(suffix.utf8), prefix: prefix, route: index))
            case nil: hostless.append(Entry(host: [], prefix: prefix, route: index))
            }
        }
        let byPrefix: (Entry, Entry) -> Bool = { ($0.prefix.count, -$0.route) > ($1.prefix.count, -$1.route) }
        self.exact = exact.sorted(by: byPrefix)
        self.wildcard = wildcard.sorted { ($0.host.count, $0.prefix.count, -$0.route) > ($1.host.count, $1.prefix.count, -$1.route) }
        self.hostless = hostless.sorted(by: byPrefix)
    }

    /// The index of the route for `host` (the `Host` header value, port allowed) and `path`
    /// (the request target), or `nil` when no route matches.
    public func lookup(host: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer) -> Int? {
        // `OPTIONS *` and `http://host` (no path) route as `/`.
        guard path.first == UInt8(ascii: "/") else {
            return withUnsafeBytes(of: UInt8(ascii: "/")) { lookup(host: host, path: $0) }
        }
        let name = Self.hostName(host)
        if !exact.isEmpty {
            for entry in exact where Self.equalsLowercased(name, entry.host) && Self.hasPrefix(path, entry.prefix) {
                return entry.route
            }
        }
        if !wildcard.isEmpty {
            for entry in wildcard where Self.endsWithLowercased(name, entry.host) && Self.hasPrefix(path, entry.prefix) {
                return entry.route
            }
        }
        for entry in hostless where Self.hasPrefix(path, entry.prefix) {
            return entry.route
        }
        return nil
    }

    /// Convenience for tests and tools.
    public func lookup(host: String, path: String) -> Int? {
        var host = host, path = path
        return host.withUTF8 { h in path.withUTF8 { p in lookup(host: UnsafeRawBufferPointer(h), path: UnsafeRawBufferPointer(p)) } }
    }

    /// The host without a trailing `:port` or trailing dot (IPv6 literals keep their brackets).
    static func hostName(_ host: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var end = host.count
        var index = end - 1
        while index >= 0, host[index] >= UInt8(ascii: "0"), host[index] <= UInt8(ascii: "9") { index -= 1 }
        if index >= 0, index < end - 1, host[index] == UInt8(ascii: ":") { end = index }
        if end > 0, host[end - 1] == UInt8(ascii: ".") { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: host[0..<end])
    }

    @inline(__always)
    static func lower(_ byte: UInt8) -> UInt8 {
        byte &- 65 < 26 ? byte | 0x20 : byte
    }

    static func equalsLowercased(_ bytes: UnsafeRawBufferPointer, _ lowered: [UInt8]) -> Bool {
        guard bytes.count == lowered.count else { return false }
        for index in 0..<lowered.count where lower(bytes[index]) != lowered[index] { return false }
        return true
    }

    static func endsWithLowercased(_ bytes: UnsafeRawBufferPointer, _ lowered: [UInt8]) -> Bool {
        guard bytes.count > lowered.count else { return false }
        let offset = bytes.count - lowered.count
        for index in 0..<lowered.count where lower(bytes[offset + index]) != lowered[index] { return false }
        return true
    }

    static func hasPrefix(_ bytes: UnsafeRawBufferPointer, _ prefix: [UInt8]) -> Bool {
        guard bytes.count >= prefix.count else { return false }
        for index in 0..<prefix.count where bytes[index] != prefix[index] { return false }
        return true
    }
}
