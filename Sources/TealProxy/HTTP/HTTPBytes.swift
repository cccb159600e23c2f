/// Byte-level helpers shared by the request and response head parsers.
enum HTTPBytes {
    static let cr = UInt8(ascii: "\r")
    static let lf = UInt8(ascii: "\n")
    static let sp = UInt8(ascii: " ")
    static let htab = UInt8(ascii: "\t")
    static let colon = UInt8(ascii: ":")
    static let comma = UInt8(ascii: ",")

    /// RFC 9110 `tchar`.
    @inline(__always)
    static func isTokenChar(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// A byte allowed in a field value: VCHAR, SP, HTAB or obs-text (no CR, LF, NUL or other controls).
    @inline(__always)
    static func isFieldValueChar(_ byte: UInt8) -> Bool {
        byte >= 0x20 ? byte != 0x7F : byte == htab
    }

    @inline(__always)
    static func lower(_ byte: UInt8) -> UInt8 {
        byte &- 65 < 26 ? byte | 0x20 : byte
    }

    /// Whether `bytes[range]` equals `lowercaseName` ignoring ASCII case.
    @inline(__always)
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercaseName: StaticString) -> Bool {
        guard range.count == lowercaseName.utf8CodeUnitCount else { return false }
        let name = lowercaseName.utf8Start
        var index = 0
        for position in range {
            if lower(bytes[position]) != name[index] { return false }
            index += 1
        }
        return true
    }

    /// Whether the bytes at `start` are exactly `text` (case-sensitive, like the HTTP version name).
    @inline(__always)
    /// Whether `bytes[range]` equals `lowercased` (a name already in lowercase) ignoring ASCII case.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercased: [UInt8]) -> Bool {
        range.count == lowercased.count && zip(range, lowercased).allSatisfy { lower(bytes[$0]) == $1 }
    }

    /// Whether `bytes[range]` equals `expected` byte for byte.
    static func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ expected: [UInt8]) -> Bool {
        range.count == expected.count && zip(range, expected).allSatisfy { bytes[$0] == $1 }
    }

    static func equalsExactly(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ text: StaticString) -> Bool {
        guard start + text.utf8CodeUnitCount <= bytes.count else { return false }
        for index in 0..<text.utf8CodeUnitCount where bytes[start + index] != text.utf8Start[index] { return false }
        return true
    }

    /// `bytes[range]` with leading and trailing spaces and tabs removed.
    @inline(__always)
    static func trimmed(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int> {
        var start = range.lowerBound, end = range.upperBound
        while start < end, bytes[start] == sp || bytes[start] == htab { start += 1 }
        while end > start, bytes[end - 1] == sp || bytes[end - 1] == htab { end -= 1 }
        return start..<end
    }

    /// Parses a Content-Length value: ASCII digits only, no sign, at most 18 digits.
    static func parseContentLength(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int64? {
        guard !range.isEmpty, range.count <= 18 else { return nil }
        var value: Int64 = 0
        for position in range {
            let digit = bytes[position] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + Int64(digit)
        }
        return value
    }

    /// Calls `body` with each comma-separated, trimmed, non-empty element of `bytes[range]`.
    @inline(__always)
    static func forEachListElement(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        var start = range.lowerBound
        var position = start
        while position <= range.upperBound {
            if position == range.upperBound || bytes[position] == comma {
                let element = trimmed(bytes, start..<position)
                if !element.isEmpty { body(element) }
                start = position + 1
            }
            position += 1
        }
    }

    /// Whether `bytes[range]`, a field name, is one of the fields that frame, route or
    /// forward a message, spelled with `_` for `-` (`Content_Length`, `X_Forwarded_For`): some servers
    /// read such a name as the real field, so a client could slip one past the proxy.
    static func isUnderscoreSpelling(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        switch range.count {
        case 2, 4, 7, 9, 10, 12, 14, 15, 16, 17: break
        default: return false
        }
        guard range.contains(where: { bytes[$0] == UInt8(ascii: "_") }) else { return false }
        var name = ""
        name.reserveCapacity(range.count)
        for position in range {
            let byte = bytes[position]
            name.unicodeScalars.append(Unicode.Scalar(byte == UInt8(ascii: "_") ? UInt8(ascii: "-") : lower(byte)))
        }
        return underscoreSensitiveNames.contains(name)
    }

    static let underscoreSensitiveNames: Set<String> = [
        "te", "host", "upgrade", "trailer", "forwarded", "connection", "keep-alive", "x-request-id",
        "content-length", "http2-settings", "x-forwarded-for", "x-forwarded-host", "x-forwarded-port",
        "proxy-connection", "transfer-encoding", "x-forwarded-proto",
    ]

    /// Finds the end of a head: the index just past the first empty line (`\r\n\r\n`), scanning
    /// from `from`; `nil` when the head is not complete yet.
    static func findHeadEnd(_ bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var position = max(from, 3)
        while position < bytes.count {
            // Jump from LF to LF: the terminator ends in one.
            let byte = bytes[position]
            if byte == lf {
                if bytes[position - 1] == cr && bytes[position - 2] == lf && bytes[position - 3] == cr {
                    return position + 1
                }
                // A bare LF line end is invalid; let the line parser report it.
                if bytes[position - 1] == lf { return position + 1 }
            }
            position += 1
        }
        return nil
    }
}
