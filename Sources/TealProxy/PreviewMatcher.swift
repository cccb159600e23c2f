import TealCore

/// Recognises preview requests on raw head bytes: the configured header with the configured
/// value, or the configured cookie with that value. Only routes with preview access pay for it.
public struct PreviewMatcher: Sendable {
    private let header: [UInt8]   // lowercased
    private let value: [UInt8]
    private let cookie: [UInt8]?

    public init(_ access: PreviewAccess) {
        header = Array(access.header.lowercased().utf8)
        value = Array(access.value.utf8)
        cookie = access.cookie.map { Array($0.utf8) }
    }

    /// Whether the head's header section asks for green.
    func matches(_ bytes: UnsafeRawBufferPointer, _ headers: HeaderLines) -> Bool {
        var found = false
        headers.forEach(bytes) { _, name, fieldValue in
            guard !found else { return }
            if name.count == header.count && zip(name, header).allSatisfy({ HTTPBytes.lower(bytes[$0]) == $1 }) {
                found = equals(bytes, fieldValue, value)
            } else if let cookie, HTTPBytes.equalsIgnoringCase(bytes, name, "cookie") {
                found = cookieMatches(bytes, fieldValue, name: cookie)
            }
        }
        return found
    }

    private func cookieMatches(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, name: [UInt8]) -> Bool {
        var start = range.lowerBound
        while start < range.upperBound {
            var end = start
            while end < range.upperBound, bytes[end] != UInt8(ascii: ";") { end += 1 }
            let pair = HTTPBytes.trimmed(bytes, start..<end)
            if let equal = pair.first(where: { bytes[$0] == UInt8(ascii: "=") }),
               equals(bytes, pair.lowerBound..<equal, name), equals(bytes, (equal + 1)..<pair.upperBound, value) {
                return true
            }
            start = end + 1
        }
        return false
    }

    private func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ expected: [UInt8]) -> Bool {
        range.count == expected.count && zip(range, expected).allSatisfy { bytes[$0] == $1 }
    }
}
