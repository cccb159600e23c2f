/// The header section of a parsed head: where it lies in the buffer, which lines the proxy leaves
/// out when forwarding, and validation of one line at a time.
struct HeaderLines {
    /// Header lines beyond this count are refused; the drop set is a 128-bit mask.
    static let maxLines = 128

    /// Start of the first header line (just past the start line's CRLF).
    var start = 0
    /// Index just past the terminating empty line.
    var headEnd = 0
    private var dropMask: (UInt64, UInt64) = (0, 0)

    /// Leaves header line `index` out when forwarding.
    mutating func drop(line index: Int) {
        if index < 64 { dropMask.0 |= 1 << UInt64(index) } else { dropMask.1 |= 1 << UInt64(index - 64) }
    }

    func isDropped(line index: Int) -> Bool {
        index < 64 ? dropMask.0 & (1 << UInt64(index)) != 0 : dropMask.1 & (1 << UInt64(index - 64)) != 0
    }

    /// One validated header line.
    struct Line {
        var name: Range<Int>
        var value: Range<Int>
        /// Index of the line's CR.
        var end: Int
    }

    /// Validates the header line starting at `lineStart`; `nil` at the empty line that ends the head.
    /// Refuses obs-fold, a name that is not a token (or space before the colon), and control
    /// characters, bare CR or bare LF in the value.
    @inline(__always)
    static func line(_ bytes: UnsafeRawBufferPointer, at lineStart: Int, headEnd: Int) throws(RequestHeadError) -> Line? {
        let end = try RequestHead.lineEnd(bytes, from: lineStart, limit: headEnd)
        if end == lineStart { return nil }
        if bytes[lineStart] == HTTPBytes.sp || bytes[lineStart] == HTTPBytes.htab { throw .obsFold }
        var colon = lineStart
        while colon < end, bytes[colon] != HTTPBytes.colon {
            guard HTTPBytes.isTokenChar(bytes[colon]) else { throw .invalidHeader }
            colon += 1
        }
        guard colon < end, colon > lineStart else { throw .invalidHeader }
        for position in (colon + 1)..<end where !HTTPBytes.isFieldValueChar(bytes[position]) { throw .invalidHeader }
        return Line(name: lineStart..<colon, value: HTTPBytes.trimmed(bytes, (colon + 1)..<end), end: end)
    }

    /// Calls `body(index, name, value)` for each line of an already validated header section.
    func forEach(_ bytes: UnsafeRawBufferPointer, _ body: (Int, Range<Int>, Range<Int>) -> Void) {
        var lineStart = start
        var index = 0
        while lineStart < headEnd - 2 {
            var lineEnd = lineStart
            while bytes[lineEnd] != HTTPBytes.cr { lineEnd += 1 }
            var colon = lineStart
            while bytes[colon] != HTTPBytes.colon { colon += 1 }
            body(index, lineStart..<colon, HTTPBytes.trimmed(bytes, (colon + 1)..<lineEnd))
            lineStart = lineEnd + 2
            index += 1
        }
    }

    /// Drops the lines named by options of the Connection header (RFC 9110 §7.6.1). Rare, so it
    /// is a second pass that may allocate. Options naming the fields that frame the message or
    /// route it (Content-Length, Transfer-Encoding, Host) are ignored: dropping them would let a
    /// client make the proxy and the upstream disagree on where a message ends.
    mutating func dropConnectionOptions(_ bytes: UnsafeRawBufferPointer) {
        var options: [Range<Int>] = []
        forEach(bytes) { _, name, value in
            guard HTTPBytes.equalsIgnoringCase(bytes, name, "connection") else { return }
            HTTPBytes.forEachListElement(bytes, value) { option in
                if HTTPBytes.equalsIgnoringCase(bytes, option, "content-length")
                    || HTTPBytes.equalsIgnoringCase(bytes, option, "transfer-encoding")
                    || HTTPBytes.equalsIgnoringCase(bytes, option, "host") { return }
                options.append(option)
            }
        }
        forEach(bytes) { index, name, _ in
            for option in options where option.count == name.count
                && zip(option, name).allSatisfy({ HTTPBytes.lower(bytes[$0]) == HTTPBytes.lower(bytes[$1]) }) {
                drop(line: index)
            }
        }
    }

    /// Calls `append` with contiguous byte ranges that together hold every header line not
    /// dropped, each with its CRLF, in order.
    func forEachKeptRange(_ bytes: UnsafeRawBufferPointer, _ append: (Range<Int>) -> Void) {
        var lineStart = start
        var index = 0
        var runStart = start
        while lineStart < headEnd - 2 {
            var lineEnd = lineStart
            while bytes[lineEnd] != HTTPBytes.cr { lineEnd += 1 }
            if isDropped(line: index) {
                if runStart < lineStart { append(runStart..<lineStart) }
                runStart = lineEnd + 2
            }
            lineStart = lineEnd + 2
            index += 1
        }
        if runStart < lineStart { append(runStart..<lineStart) }
    }
}

/// The transfer codings of a message, from all its `Transfer-Encoding` lines. Teal passes on
/// exactly one coding, `chunked`, and refuses the rest (RFC 9112 §6.1, §7).
struct TransferCodings {
    private(set) var seen = false
    private var count = 0
    private var chunkedCount = 0
    private var lastIsChunked = false
    private var emptyElement = false

    enum Verdict: Equatable {
        /// No Transfer-Encoding field.
        case absent
        /// Exactly one `chunked` (in any case): passed on as `Transfer-Encoding: chunked`.
        case chunked
        /// An empty list element, or `chunked` more than once.
        case malformed
        /// The final coding is not `chunked`.
        case notChunked
        /// Another coding before `chunked` (gzip, identity, ...).
        case unsupportedCoding
    }

    /// Adds the codings of one field line's value.
    mutating func add(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) {
        seen = true
        var start = value.lowerBound
        for position in value.lowerBound...value.upperBound where position == value.upperBound || bytes[position] == HTTPBytes.comma {
            let element = HTTPBytes.trimmed(bytes, start..<position)
            start = position + 1
            if element.isEmpty {
                emptyElement = true
                continue
            }
            count += 1
            lastIsChunked = HTTPBytes.equalsIgnoringCase(bytes, element, "chunked")
            if lastIsChunked { chunkedCount += 1 }
        }
    }

    var verdict: Verdict {
        guard seen else { return .absent }
        if emptyElement || chunkedCount > 1 { return .malformed }
        if !lastIsChunked { return .notChunked }
        return count == 1 ? .chunked : .unsupportedCoding
    }
}
