/// What a chunked body turns into when it is passed on: its data, and its framing either as the
/// original bytes (when they are already canonical) or as canonical bytes to write instead.
enum ChunkedPiece: Equatable {
    /// Chunk data: bytes of the input, passed on as they are.
    case data(Range<Int>)
    /// A canonical framing line of the input (`1a\r\n`, `0\r\n`, the CRLF after chunk data, the
    /// blank line that ends the body), passed on as it is.
    case verbatim(Range<Int>)
    /// A chunk-size line to write as `<lower-case hex>\r\n`: the input's line had extensions,
    /// leading zeros, white space or upper-case hex, or began in an earlier read. Size 0 is the
    /// last chunk.
    case sizeLine(UInt64)
    /// A CRLF to write (the input's began in an earlier read).
    case crlf
    /// A trailer field line that may be passed on, without its CRLF. Checked like a header line.
    case trailerField([UInt8])
}

/// Follows a chunked body (RFC 9112 §7.1) byte by byte: finds where it ends and says how to pass
/// it on canonically (`ChunkedPiece`). Refuses what the grammar does not allow: a size that is
/// not 1 to 15 hex digits, white space without an extension, extensions that are not
/// `;name[=token|"quoted"]`, control characters, missing or bare CR/LF, and trailer lines that
/// are not `name: value` (obs-fold included). Trailer fields that frame or route a message
/// (`TrailerRules`) are left out; chunk extensions are always dropped.
struct ChunkedFramer {
    enum State: Equatable {
        case size
        /// White space after the size or after an extension value: `;` or CR must follow.
        case beforeExtension
        /// After `;`: optional white space, then the extension's name.
        case extensionNameStart
        case extensionName
        /// White space after an extension name: `=`, `;` or CR follows.
        case afterExtensionName
        /// After `=`: optional white space, then a token or a quoted string.
        case extensionValueStart
        case extensionToken
        case extensionQuoted
        case extensionQuotedPair
        /// After a quoted extension value: `;`, CR, or white space and then `;`.
        case afterQuoted
        case sizeLF
        case data
        case dataCR
        case dataLF
        /// After the last chunk: reading a trailer line (or the blank line that ends the body).
        case trailer
        case trailerLF
        case done
    }

    enum Failure: Error { case invalid }

    /// Longest trailer field line, and most bytes in all trailer lines together.
    static let maxTrailerLine = 8 * 1024
    static let maxTrailerSection = 32 * 1024

    private(set) var state = State.size
    private var size: UInt64 = 0
    private var digits = 0
    private var leadingZero = false
    /// The current size line has an extension, white space or upper-case hex (it is written anew).
    private var extended = false
    private var remaining: UInt64 = 0
    private var trailerLine: [UInt8] = []
    private var trailerBytes = 0

    var isDone: Bool { state == .done }

    /// Whether no byte of a framing line is held from an earlier read.
    private var atLineStart: Bool {
        switch state {
        case .size: digits == 0
        case .data, .dataCR, .done: true
        case .trailer: trailerLine.isEmpty
        default: false
        }
    }

    /// Consumes bytes of the body from `bytes`; returns how many belong to it (all of them unless
    /// the body ends inside `bytes`).
    @inline(__always)
    mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
        try consume(bytes) { _ in }
    }

    /// `consume(_:)`, also calling `emit` with what to pass on for the consumed bytes, in order.
    @inline(__always)
    mutating func consume(_ bytes: UnsafeRawBufferPointer, emit: (ChunkedPiece) -> Void) throws(Failure) -> Int {
        var position = 0
        let count = bytes.count
        // Where the framing line being read began in `bytes`; -1 when it began in an earlier read.
        var lineStart = atLineStart ? 0 : -1
        while position < count {
            let byte = bytes[position]
            switch state {
            case .data:
                let take = Int(min(remaining, UInt64(count - position)))
                emit(.data(position..<position + take))
                remaining -= UInt64(take)
                position += take
                if remaining == 0 {
                    state = .dataCR
                    lineStart = position
                }
                continue
            case .done:
                return position
            case .size:
                if let value = Self.hexValue(byte) {
                    guard digits < 15 else { throw .invalid }
                    if byte < UInt8(ascii: "a") && value > 9 { extended = true }  // upper-case hex is written anew
                    if digits == 0 { leadingZero = value == 0 }
                    size = size << 4 | UInt64(value)
                    digits += 1
                } else if digits > 0, byte == HTTPBytes.cr {
                    state = .sizeLF
                } else if digits > 0, byte == UInt8(ascii: ";") {
                    extended = true
                    state = .extensionNameStart
                } else if digits > 0, byte == HTTPBytes.sp || byte == HTTPBytes.htab {
                    extended = true
                    state = .beforeExtension
                } else {
                    throw .invalid
                }
            case .beforeExtension:
                if byte == UInt8(ascii: ";") {
                    state = .extensionNameStart
                } else if byte != HTTPBytes.sp && byte != HTTPBytes.htab {
                    throw .invalid
                }
            case .extensionNameStart:
                if HTTPBytes.isTokenChar(byte) {
                    state = .extensionName
                } else if byte != HTTPBytes.sp && byte != HTTPBytes.htab {
                    throw .invalid
                }
            case .extensionName:
                try afterExtensionPart(byte, orName: true)
            case .afterExtensionName:
                if byte == UInt8(ascii: "=") {
                    state = .extensionValueStart
                } else if byte == UInt8(ascii: ";") {
                    state = .extensionNameStart
                } else if byte != HTTPBytes.sp && byte != HTTPBytes.htab {
                    throw .invalid
                }
            case .extensionValueStart:
                if byte == UInt8(ascii: "\"") {
                    state = .extensionQuoted
                } else if HTTPBytes.isTokenChar(byte) {
                    state = .extensionToken
                } else if byte != HTTPBytes.sp && byte != HTTPBytes.htab {
                    throw .invalid
                }
            case .extensionToken:
                try afterExtensionPart(byte, orName: false)
            case .extensionQuoted:
                if byte == UInt8(ascii: "\"") {
                    state = .afterQuoted
                } else if byte == UInt8(ascii: "\\") {
                    state = .extensionQuotedPair
                } else if !HTTPBytes.isFieldValueChar(byte) {
                    throw .invalid
                }
            case .extensionQuotedPair:
                guard HTTPBytes.isFieldValueChar(byte) else { throw .invalid }
                state = .extensionQuoted
            case .afterQuoted:
                try afterExtensionPart(byte, orName: false, tokenGoesOn: false)
            case .sizeLF:
                guard byte == HTTPBytes.lf else { throw .invalid }
                if !extended && (digits == 1 || !leadingZero) && lineStart >= 0 {
                    emit(.verbatim(lineStart..<position + 1))
                } else {
                    emit(.sizeLine(size))
                }
                if size == 0 {
                    state = .trailer
                } else {
                    remaining = size
                    state = .data
                }
                size = 0
                digits = 0
                extended = false
                lineStart = position + 1
            case .dataCR:
                guard byte == HTTPBytes.cr else { throw .invalid }
                state = .dataLF
            case .dataLF:
                guard byte == HTTPBytes.lf else { throw .invalid }
                emit(lineStart >= 0 ? .verbatim(lineStart..<position + 1) : .crlf)
                state = .size
                lineStart = position + 1
            case .trailer:
                if byte == HTTPBytes.cr {
                    state = .trailerLF
                } else {
                    guard HTTPBytes.isFieldValueChar(byte), trailerLine.count < Self.maxTrailerLine,
                          trailerBytes < Self.maxTrailerSection else { throw .invalid }
                    trailerLine.append(byte)
                    trailerBytes += 1
                }
            case .trailerLF:
                guard byte == HTTPBytes.lf else { throw .invalid }
                if trailerLine.isEmpty {
                    emit(lineStart >= 0 ? .verbatim(lineStart..<position + 1) : .crlf)
                    state = .done
                } else {
                    if try TrailerRules.check(trailerLine) { emit(.trailerField(trailerLine)) }
                    trailerLine.removeAll(keepingCapacity: true)
                    state = .trailer
                }
                lineStart = position + 1
            }
            position += 1
        }
        return position
    }

    /// The byte after part of an extension name (`orName`) or value: more of a token (when
    /// `tokenGoesOn`), or what may follow it.
    @inline(__always)
    private mutating func afterExtensionPart(_ byte: UInt8, orName: Bool, tokenGoesOn: Bool = true) throws(Failure) {
        if tokenGoesOn && HTTPBytes.isTokenChar(byte) { return }
        switch byte {
        case HTTPBytes.cr: state = .sizeLF
        case UInt8(ascii: ";"): state = .extensionNameStart
        case UInt8(ascii: "=") where orName: state = .extensionValueStart
        case HTTPBytes.sp, HTTPBytes.htab: state = orName ? .afterExtensionName : .beforeExtension
        default: throw .invalid
        }
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// `size` as a canonical chunk-size line: lower-case hex without leading zeros, then CRLF.
    static func sizeLine(_ size: UInt64) -> [UInt8] {
        Array(String(size, radix: 16).utf8) + [HTTPBytes.cr, HTTPBytes.lf]
    }
}

/// Which fields a trailer section may carry on (RFC 9110 §6.5.1).
enum TrailerRules {
    /// Checks a trailer field line (without its CRLF) like a header line: a token name, a colon,
    /// a value of field characters, no obs-fold. Returns whether the field may be passed on:
    /// fields that frame or route the message, control the connection, or change how its
    /// content is read are left out, as are those names spelled with `_` for `-`.
    static func check(_ line: [UInt8]) throws(ChunkedFramer.Failure) -> Bool {
        guard let first = line.first, HTTPBytes.isTokenChar(first) else { throw .invalid }
        guard let colon = line.firstIndex(of: HTTPBytes.colon), colon > 0 else { throw .invalid }
        for index in 0..<colon where !HTTPBytes.isTokenChar(line[index]) { throw .invalid }
        return !isDropped(line[..<colon])
    }

    /// Whether a field of this name is left out of trailers (compared ignoring case, with `_`
    /// read as `-`).
    static func isDropped<Name: Collection<UInt8>>(_ name: Name) -> Bool {
        var lowered = ""
        lowered.reserveCapacity(name.count)
        for byte in name { lowered.unicodeScalars.append(Unicode.Scalar(byte == UInt8(ascii: "_") ? UInt8(ascii: "-") : HTTPBytes.lower(byte))) }
        return droppedNames.contains(lowered)
    }

    static let droppedNames: Set<String> = [
        // framing and routing
        "content-length", "transfer-encoding", "host", "trailer", "te",
        // the connection
        "connection", "keep-alive", "proxy-connection", "upgrade",
        // how the content or the request is read
        "content-type", "content-encoding", "content-range", "expect", "range", "max-forwards",
        // authentication and state
        "authorization", "proxy-authorization", "cookie", "set-cookie",
    ]
}

/// Tracks where a message body ends, for any framing.
struct BodyTracker {
    enum Failure: Error { case invalidChunk }

    private var remaining: Int64 = 0
    private var chunked: ChunkedFramer?
    private(set) var untilClose = false
    private(set) var isDone = true

    init(_ framing: BodyFraming) {
        switch framing {
        case .none: isDone = true
        case .length(let length): remaining = length; isDone = length == 0
        case .chunked: chunked = ChunkedFramer(); isDone = false
        case .untilClose: untilClose = true; isDone = false
        }
    }

    /// How many of the bytes in `bytes` belong to the body; sets `isDone` when its end is among them.
    mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
        try consume(bytes) { _ in }
    }

    /// `consume(_:)`, also calling `emit` with what to pass on: the data as it came for sized
    /// bodies, canonical pieces for chunked ones (`ChunkedFramer`).
    @inline(__always)
    mutating func consume(_ bytes: UnsafeRawBufferPointer, emit: (ChunkedPiece) -> Void) throws(Failure) -> Int {
        if isDone { return 0 }
        if untilClose {
            if !bytes.isEmpty { emit(.data(0..<bytes.count)) }
            return bytes.count
        }
        if chunked != nil {
            do {
                let used = try chunked!.consume(bytes, emit: emit)
                isDone = chunked!.isDone
                return used
            } catch {
                throw .invalidChunk
            }
        }
        let take = Int(min(remaining, Int64(bytes.count)))
        remaining -= Int64(take)
        isDone = remaining == 0
        if take > 0 { emit(.data(0..<take)) }
        return take
    }
}
