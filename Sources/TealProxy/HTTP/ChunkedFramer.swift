/// Follows a chunked body (RFC 9112 §7.1) byte by byte to find where it ends. The HTTP/1.1 path
/// forwards the chunked bytes as they are; HTTP/2 streams also take the chunks' data and the
/// trailer section, which `consume(_:data:trailer:)` reports. Refuses malformed chunk sizes,
/// extensions with control characters, and missing CRLFs.
struct ChunkedFramer {
    enum State: Equatable {
        case size(digits: Int)
        case extensions
        case sizeLF
        case data
        case dataCR
        case dataLF
        /// After the last chunk: reading trailer lines; `lineLength` bytes of the current one seen.
        case trailer(lineLength: Int)
        case trailerLF(lineLength: Int)
        case done
    }

    enum Failure: Error { case invalid }

    private(set) var state = State.size(digits: 0)
    private var size: UInt64 = 0
    private var remaining: UInt64 = 0

    var isDone: Bool { state == .done }

    /// Consumes bytes of the body from `bytes`; returns how many belong to it (all of them unless
    /// the body ends inside `bytes`).
    @inline(__always)
    mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
        try consume(bytes) { _ in }
    }

    /// `consume(_:)`, also calling `data` with the range of every run of chunk data in `bytes`,
    /// and `trailer` with each byte of the trailer section (its field lines and the blank line
    /// that ends it).
    @inline(__always)
    mutating func consume(_ bytes: UnsafeRawBufferPointer, data: (Range<Int>) -> Void,
                          trailer: (Int) -> Void = { _ in }) throws(Failure) -> Int {
        var position = 0
        let count = bytes.count
        while position < count {
            switch state {
            case .data:
                let take = Int(min(remaining, UInt64(count - position)))
                data(position..<position + take)
                remaining -= UInt64(take)
                position += take
                if remaining == 0 { state = .dataCR }
                continue
            case .done:
                return position
            case .trailer, .trailerLF:
                trailer(position)
                try step(bytes[position])
                position += 1
            default:
                try step(bytes[position])
                position += 1
            }
        }
        return position
    }

    private mutating func step(_ byte: UInt8) throws(Failure) {
        switch state {
        case .size(let digits):
            if let value = Self.hexValue(byte) {
                guard digits < 15 else { throw .invalid }
                size = size << 4 | UInt64(value)
                state = .size(digits: digits + 1)
            } else if digits > 0, byte == HTTPBytes.cr {
                state = .sizeLF
            } else if digits > 0, byte == UInt8(ascii: ";") || byte == HTTPBytes.sp || byte == HTTPBytes.htab {
                state = .extensions
            } else {
                throw .invalid
            }
        case .extensions:
            if byte == HTTPBytes.cr { state = .sizeLF } else if !HTTPBytes.isFieldValueChar(byte) { throw .invalid }
        case .sizeLF:
            guard byte == HTTPBytes.lf else { throw .invalid }
            if size == 0 {
                state = .trailer(lineLength: 0)
            } else {
                remaining = size
                state = .data
            }
            size = 0
        case .dataCR:
            guard byte == HTTPBytes.cr else { throw .invalid }
            state = .dataLF
        case .dataLF:
            guard byte == HTTPBytes.lf else { throw .invalid }
            state = .size(digits: 0)
        case .trailer(let length):
            if byte == HTTPBytes.cr {
                state = .trailerLF(lineLength: length)
            } else {
                guard HTTPBytes.isFieldValueChar(byte), length < 16 * 1024 else { throw .invalid }
                state = .trailer(lineLength: length + 1)
            }
        case .trailerLF(let length):
            guard byte == HTTPBytes.lf else { throw .invalid }
            state = length == 0 ? .done : .trailer(lineLength: 0)
        case .data, .done:
            break
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

    /// How many of the `available` bytes in `bytes` belong to the body; sets `isDone` when its end
    /// is among them.
    mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
        if isDone { return 0 }
        if untilClose { return bytes.count }
        if chunked != nil {
            do {
                let used = try chunked!.consume(bytes)
                isDone = chunked!.isDone
                return used
            } catch {
                throw .invalidChunk
            }
        }
        let take = Int(min(remaining, Int64(bytes.count)))
        remaining -= Int64(take)
        isDone = remaining == 0
        return take
    }
}
