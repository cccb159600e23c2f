import TealCore

/// Picks the pool of a request of a route with sticky sessions (`StickySessions`), on raw head
/// bytes. Made with each routing snapshot, so it knows the split and both pools' versions; only
/// routes with sticky sessions pay for it.
public struct StickyMatcher: Sendable {
    enum Kind: Sendable { case versionCookie, keyHeader, keyCookie }

    let kind: Kind
    /// The header (lowercased) or cookie name whose value is read.
    private let name: [UInt8]
    private let split: Split
    /// The cookie values naming each pool (its version, with bytes a cookie cannot hold as `_`;
    /// the colour when the pool has no version).
    private let blueValue: [UInt8]
    private let greenValue: [UInt8]
    /// `Set-Cookie: NAME=` for the version cookie.
    let setCookiePrefix: [UInt8]

    public init(_ sticky: StickySessions, split: Split, blueVersion: String?, greenVersion: String?) {
        switch sticky {
        case .versionCookie(let cookie):
            kind = .versionCookie
            name = Array(cookie.utf8)
        case .keyHeader(let header):
            kind = .keyHeader
            name = Array(header.lowercased().utf8)
        case .keyCookie(let cookie):
            kind = .keyCookie
            name = Array(cookie.utf8)
        }
        self.split = split
        blueValue = Self.cookieValue(blueVersion ?? "blue")
        greenValue = Self.cookieValue(greenVersion ?? "green")
        setCookiePrefix = Array("Set-Cookie: ".utf8) + name + [UInt8(ascii: "=")]
    }

    /// A cookie value (RFC 6265 cookie-octets): other bytes become `_`.
    static func cookieValue(_ text: String) -> [UInt8] {
        text.utf8.map { byte in
            byte == 0x21 || (0x23...0x2B).contains(byte) || (0x2D...0x3A).contains(byte) || (0x3C...0x5B).contains(byte)
                || (0x5D...0x7E).contains(byte) ? byte : UInt8(ascii: "_")
        }
    }

    /// The pool for the request whose header section is `headers`; `nil` when it carries no key,
    /// or a version cookie naming no version with weight now: the split picks as for any request
    /// (and for the version cookie, the answer sets it: `setsCookie`).
    func pick(_ bytes: UnsafeRawBufferPointer, _ headers: HeaderLines) -> PoolColor? {
        let value = kind == .keyHeader ? headerValue(bytes, headers) : cookieValue(bytes, headers)
        switch kind {
        case .keyHeader, .keyCookie:
            guard let value, !value.isEmpty else { return nil }
            return StickyKey.color(hash: StickyKey.hash(UnsafeRawBufferPointer(rebasing: bytes[value])), split: split)
        case .versionCookie:
            if let value {
                if split.green > 0 && HTTPBytes.equals(bytes, value, greenValue) { return .green }
                if split.blue > 0 && HTTPBytes.equals(bytes, value, blueValue) { return .blue }
            }
            return nil
        }
    }

    /// Whether a request the split placed must get the version cookie.
    var setsCookie: Bool { kind == .versionCookie }

    /// The cookie value naming `color`.
    func value(of color: PoolColor) -> [UInt8] { color == .blue ? blueValue : greenValue }

    private func headerValue(_ bytes: UnsafeRawBufferPointer, _ headers: HeaderLines) -> Range<Int>? {
        var found: Range<Int>?
        headers.forEach(bytes) { _, fieldName, fieldValue in
            guard found == nil, HTTPBytes.equalsIgnoringCase(bytes, fieldName, name) else { return }
            found = fieldValue
        }
        return found
    }

    private func cookieValue(_ bytes: UnsafeRawBufferPointer, _ headers: HeaderLines) -> Range<Int>? {
        var found: Range<Int>?
        headers.forEach(bytes) { _, fieldName, fieldValue in
            guard found == nil, HTTPBytes.equalsIgnoringCase(bytes, fieldName, "cookie") else { return }
            found = CookieField.value(named: name, in: fieldValue, of: bytes)
        }
        return found
    }
}

/// Reading a `Cookie` field: `name=value; name2=value2`.
enum CookieField {
    /// The value of the first cookie called `name` in the field value at `range` of `bytes`.
    static func value(named name: [UInt8], in range: Range<Int>, of bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        var start = range.lowerBound
        while start < range.upperBound {
            var end = start
            while end < range.upperBound, bytes[end] != UInt8(ascii: ";") { end += 1 }
            let pair = HTTPBytes.trimmed(bytes, start..<end)
            if let equal = pair.first(where: { bytes[$0] == UInt8(ascii: "=") }), HTTPBytes.equals(bytes, pair.lowerBound..<equal, name) {
                return (equal + 1)..<pair.upperBound
            }
            start = end + 1
        }
        return nil
    }
}
