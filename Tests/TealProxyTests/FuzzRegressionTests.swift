// The invariants checked by the libFuzzer harness (fuzz/HTTPParserFuzz.swift), and a test that
// replays every seed (fuzz/corpus/<target>/) and every input the fuzzer found
// (fuzz/regressions/<target>-*) through them. fuzz/run.sh compiles this file with the parser
// sources and the harness, with `-D TEAL_FUZZ`, which leaves the test itself out.
#if !TEAL_FUZZ
import Foundation
@testable import TealProxy
import Testing
#endif

/// A broken invariant: what was expected and did not hold.
struct HTTPFuzzViolation: Error, CustomStringConvertible {
    var description: String
}

enum HTTPFuzzChecks {
    /// What a fuzz input is read as.
    enum Target: String, CaseIterable, Sendable {
        /// A request head (`HTTPBytes.findHeadEnd`, `RequestHead.parse`).
        case request
        /// A response head (`ResponseHead.parse`, for a HEAD request and for another).
        case response
        /// One control byte that picks the split points, then a chunked body (`ChunkedFramer`, `BodyTracker`).
        case chunked
    }

    /// Checks `input` as `target`; throws `HTTPFuzzViolation` for a broken invariant.
    static func run(_ target: Target, _ input: [UInt8]) throws {
        switch target {
        case .request: try checkRequest(input)
        case .response: try checkResponse(input)
        case .chunked: try checkChunked(input)
        }
    }

    // MARK: - Helpers

    static func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw HTTPFuzzViolation(description: message()) }
    }

    /// Calls `body` with a copy of `bytes` in an allocation of exactly their size, so that
    /// AddressSanitizer reports any read past the end (the bounds of an `UnsafeRawBufferPointer`
    /// are not checked in -O builds).
    static func withExactCopy<Bytes: Collection<UInt8>, R>(_ bytes: Bytes, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        return try body(UnsafeRawBufferPointer(buffer))
    }

    static func text<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        String(decoding: bytes, as: UTF8.self).debugDescription
    }

    static let crlf: [UInt8] = [13, 10]

    /// A tiny deterministic generator for split points.
    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var value = state
            value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
            value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
            return value ^ (value >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    }

    // MARK: - Heads

    /// The head end by the definition: just past the first `\r\n\r\n`, or past the first `\n\n`
    /// (a bare LF the line parser refuses), whichever comes first.
    static func referenceHeadEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for end in 4...bytes.count where bytes[end - 1] == 10 {
            if bytes[end - 2] == 10 || bytes[(end - 4)..<end].elementsEqual([13, 10, 13, 10]) { return end }
        }
        return nil
    }

    /// `findHeadEnd` agrees with the definition, also when resumed the way `ProxyHandler` resumes it
    /// (from three bytes before what an earlier read scanned).
    static func checkHeadEnd(_ bytes: [UInt8]) throws -> Int? {
        let end = withExactCopy(bytes) { HTTPBytes.findHeadEnd($0, from: 0) }
        try expect(end == referenceHeadEnd(bytes), "findHeadEnd \(String(describing: end)), expected \(String(describing: referenceHeadEnd(bytes)))")
        for scanned in Set([bytes.count / 2, bytes.count / 3, Int(bytes.first ?? 0) % (bytes.count + 1)]) {
            let early = withExactCopy(bytes[..<scanned]) { HTTPBytes.findHeadEnd($0, from: 0) }
            if let early {
                try expect(early == end, "findHeadEnd on the first \(scanned) bytes: \(early), on all: \(String(describing: end))")
            } else {
                let resumed = withExactCopy(bytes) { HTTPBytes.findHeadEnd($0, from: max(0, scanned - 3)) }
                try expect(resumed == end, "findHeadEnd resumed after \(scanned) bytes: \(String(describing: resumed)), from 0: \(String(describing: end))")
            }
        }
        return end
    }

    /// One header line as `HeaderLines.forEach` reports it, with the whole line and whether it is dropped.
    struct Line {
        var name: Range<Int>
        var value: Range<Int>
        var line: Range<Int>
        var dropped: Bool
        /// The name in lower case.
        var lowered: String
    }

    /// Checks the header section of a parsed head: the lines `forEach` reports are well formed and
    /// cover the section, and `forEachKeptRange` gives exactly the lines not dropped, in order.
    static func checkLines(_ raw: UnsafeRawBufferPointer, _ headers: HeaderLines) throws -> [Line] {
        let headEnd = headers.headEnd
        try expect(headEnd >= 4 && headEnd <= raw.count, "headEnd \(headEnd) outside 4...\(raw.count)")
        try expect(raw[(headEnd - 4)..<headEnd].elementsEqual([13, 10, 13, 10]), "a parsed head that does not end in CRLF CRLF")
        try expect(headers.start >= 2 && headers.start <= headEnd - 2, "header section start \(headers.start), head end \(headEnd)")
        try expect(raw[headers.start - 2] == 13 && raw[headers.start - 1] == 10, "the start line does not end in CRLF")
        var reported: [(Int, Range<Int>, Range<Int>)] = []
        headers.forEach(raw) { reported.append(($0, $1, $2)) }
        var lines: [Line] = []
        var lineStart = headers.start
        for (index, name, value) in reported {
            try expect(index == lines.count, "line index \(index), expected \(lines.count)")
            try expect(name.lowerBound == lineStart && !name.isEmpty, "line \(index): name \(name) does not start the line at \(lineStart)")
            var lineEnd = name.upperBound
            while lineEnd < headEnd - 2, raw[lineEnd] != 13 { lineEnd += 1 }
            try expect(lineEnd < headEnd - 2 && raw[lineEnd + 1] == 10, "line \(index) does not end in CRLF inside the head")
            try expect(raw[name.upperBound] == UInt8(ascii: ":"), "line \(index): no colon after the name")
            try expect(raw[name].allSatisfy(HTTPBytes.isTokenChar), "line \(index): name \(text(raw[name])) is not a token")
            try expect(value.lowerBound > name.upperBound && value.upperBound <= lineEnd, "line \(index): value \(value) outside the line")
            try expect(raw[(name.upperBound + 1)..<lineEnd].allSatisfy(HTTPBytes.isFieldValueChar), "line \(index): value has a control character")
            if let first = raw[value].first, let last = raw[value].last {
                try expect(first != 32 && first != 9 && last != 32 && last != 9, "line \(index): value is not trimmed")
            }
            let lowered = String(decoding: raw[name].map(HTTPBytes.lower), as: UTF8.self)
            lines.append(Line(name: name, value: value, line: lineStart..<(lineEnd + 2), dropped: headers.isDropped(line: index), lowered: lowered))
            lineStart = lineEnd + 2
        }
        try expect(lineStart == headEnd - 2, "the lines end at \(lineStart), the empty line is at \(headEnd - 2)")
        try expect(lines.count <= HeaderLines.maxLines, "\(lines.count) lines")
        var kept: [Range<Int>] = []
        headers.forEachKeptRange(raw) { kept.append($0) }
        var previousEnd = headers.start
        for range in kept {
            try expect(!range.isEmpty && range.lowerBound >= previousEnd && range.upperBound <= headEnd - 2,
                       "kept range \(range) out of order or outside \(headers.start)..<\(headEnd - 2)")
            previousEnd = range.upperBound
        }
        let keptBytes = kept.flatMap { raw[$0] }
        let expected = lines.filter { !$0.dropped }.flatMap { raw[$0.line] }
        try expect(keptBytes == expected, "kept ranges \(text(keptBytes)) are not the kept lines \(text(expected))")
        return lines
    }

    /// Whether `name` spells a field that frames or routes a message with `_` for `-`.
    static func isUnderscoreSpelling(_ line: Line) -> Bool {
        line.lowered.contains("_") && HTTPBytes.underscoreSensitiveNames.contains(String(line.lowered.map { $0 == "_" ? "-" : $0 }))
    }

    static let requestHopByHop: Set<String> = [
        "te", "via", "connection", "keep-alive", "upgrade", "http2-settings", "proxy-connection", "transfer-encoding",
        "x-forwarded-for", "x-forwarded-host", "x-forwarded-port", "x-forwarded-proto",
    ]

    static func isInside(_ range: Range<Int>?, _ bounds: Range<Int>) -> Bool {
        guard let range else { return true }
        return range.lowerBound >= bounds.lowerBound && range.upperBound <= bounds.upperBound
    }

    static func parseRequest(_ raw: UnsafeRawBufferPointer, _ headEnd: Int, _ limits: HeadLimits = HeadLimits()) -> Result<RequestHead, RequestHeadError> {
        Result { () throws(RequestHeadError) in try RequestHead.parse(raw, headEnd: headEnd, limits: limits) }
    }

    /// A comparable account of a parse: the error, or every stored property of the head.
    static func account<Head>(_ result: Result<Head, RequestHeadError>) -> String {
        switch result {
        case .success(let head): String(reflecting: head)
        case .failure(let error): "\(error) \(error.status) \(error.name) \(error.message.count)"
        }
    }

    static func checkRequest(_ input: [UInt8]) throws {
        var bytes = input
        if referenceHeadEnd(bytes) == nil { bytes += [13, 10, 13, 10] }
        guard let headEnd = try checkHeadEnd(bytes) else { return }
        try withExactCopy(bytes) { raw in
            let result = parseRequest(raw, headEnd)
            // The bytes after the head (a body, the next request) change nothing.
            let alone = withExactCopy(bytes[..<headEnd]) { account(parseRequest($0, headEnd)) }
            try expect(alone == account(result), "parsed alone: \(alone), with what follows: \(account(result))")
            guard case .success(let head) = result else { return }
            try checkRequestHead(raw, head)
        }
    }

    static func checkRequestHead(_ raw: UnsafeRawBufferPointer, _ head: RequestHead) throws {
        let headEnd = head.headers.headEnd
        let lines = try checkLines(raw, head.headers)
        let lineEnd = head.headers.start - 2
        // The request line: METHOD SP TARGET SP HTTP/1.x
        try expect(head.methodEnd > 0 && head.target.lowerBound == head.methodEnd + 1 && head.target.upperBound + 9 == lineEnd,
                   "method end \(head.methodEnd), target \(head.target), line end \(lineEnd)")
        try expect(raw[0..<head.methodEnd].allSatisfy(HTTPBytes.isTokenChar), "method is not a token")
        try expect(raw[head.target].allSatisfy { $0 > 0x20 && $0 < 0x7F }, "target has a byte outside visible ASCII")
        let version = String(decoding: raw[(lineEnd - 8)..<lineEnd], as: UTF8.self)
        try expect(version == (head.isHTTP11 ? "HTTP/1.1" : "HTTP/1.0"), "version \(version), isHTTP11 \(head.isHTTP11)")
        // Methods are case-sensitive: only the upper-case names are the standard methods.
        let method = String(decoding: raw[0..<head.methodEnd], as: UTF8.self)
        func classifiedAs(_ name: String) -> Bool {
            head.isHead == (name == "HEAD") && head.isConnect == (name == "CONNECT") && head.isOptions == (name == "OPTIONS")
                && (!head.isIdempotent || ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"].contains(name))
        }
        try expect(classifiedAs(method), "method \(method) classified head \(head.isHead) connect \(head.isConnect) options \(head.isOptions) idempotent \(head.isIdempotent)")
        let first = raw[head.target.lowerBound]
        try expect(head.isConnect || first == UInt8(ascii: "/") || first == UInt8(ascii: "*") || head.authority(raw) != nil,
                   "target \(text(raw[head.target])) is neither origin, asterisk nor absolute form")
        try expect(isInside(head.path(raw), head.target) && isInside(head.authority(raw), head.target), "path or authority outside the target")

        // Framing: chunked exactly when Transfer-Encoding was seen; Content-Length once at most, never with it.
        let codings = lines.filter { $0.lowered == "transfer-encoding" }
        let lengths = lines.filter { $0.lowered == "content-length" }
        try expect(lengths.count <= 1, "\(lengths.count) Content-Length lines accepted")
        switch head.framing {
        case .chunked:
            try expect(!codings.isEmpty && lengths.isEmpty && head.isHTTP11, "chunked framing without Transfer-Encoding, or with Content-Length, or in HTTP/1.0")
        case .length(let length):
            try expect(codings.isEmpty && lengths.count == 1 && length > 0, "length \(length) framing with \(codings.count) TE and \(lengths.count) CL lines")
            try expect(HTTPBytes.parseContentLength(raw, lengths[0].value) == length, "length \(length) is not the Content-Length value")
        case .none:
            try expect(codings.isEmpty, "no body although Transfer-Encoding was seen")
            if let line = lengths.first { try expect(HTTPBytes.parseContentLength(raw, line.value) == 0, "no body although Content-Length is not 0") }
        case .untilClose:
            throw HTTPFuzzViolation(description: "a request framed until the close")
        }
        if let canonical = head.canonicalContentLength {
            try expect(lengths.count == 1 && lengths[0].dropped && HTTPBytes.parseContentLength(raw, lengths[0].value) == canonical,
                       "canonical Content-Length \(canonical) without a dropped Content-Length line of that value")
        } else if let line = lengths.first {
            try expect(!line.dropped && (line.value.count == 1 || raw[line.value.lowerBound] != UInt8(ascii: "0")),
                       "Content-Length \(text(raw[line.value])) dropped, or kept with leading zeros")
        }

        // Host: required in HTTP/1.1; the target's authority replaces it.
        let hosts = lines.filter { $0.lowered == "host" }
        try expect(hosts.count <= 1, "\(hosts.count) Host lines accepted")
        try expect(!head.isHTTP11 || head.host != nil, "HTTP/1.1 without a host")
        if let host = head.host {
            try expect(RequestHead.isValidHost(raw, host), "host \(text(raw[host])) is not valid")
            if head.hostFromTarget {
                try expect(isInside(host, head.target) && !host.isEmpty && !raw[host].contains(UInt8(ascii: "@")),
                           "target host \(host) outside the target, empty, or with userinfo")
                try expect(hosts.allSatisfy(\.dropped), "Host line kept beside the target's authority")
            } else {
                try expect(hosts.count == 1 && hosts[0].value == host && !hosts[0].dropped, "host \(host) is not the kept Host line")
            }
        } else {
            try expect(hosts.isEmpty && !head.hostFromTarget, "a Host line but no host")
        }

        // What is forwarded: no hop-by-hop field, no underscore spelling of a sensitive one.
        for line in lines where !line.dropped {
            try expect(!requestHopByHop.contains(line.lowered), "\(line.lowered) line forwarded")
            try expect(!isUnderscoreSpelling(line), "\(line.lowered) line forwarded")
        }
        let section = head.headers.start..<(headEnd - 2)
        for range in [head.upgrade, head.requestID, head.forwardedFor, head.via] {
            try expect(isInside(range, section), "value \(String(describing: range)) outside the header section \(section)")
        }
        try expect(head.requestID.map { !$0.isEmpty } ?? true, "empty request id kept")
        _ = (head.keepAlive, head.wantsUpgrade)

        // The limits cut exactly where they say.
        try checkLimits(raw, head, lines.count)
    }

    static func checkLimits(_ raw: UnsafeRawBufferPointer, _ head: RequestHead, _ lineCount: Int) throws {
        let headEnd = head.headers.headEnd
        let parsed = account(parseRequest(raw, headEnd))
        var limits = HeadLimits()
        limits.maxHeadBytes = headEnd
        limits.maxRequestLineBytes = head.headers.start - 2
        limits.maxHeaderCount = lineCount
        try expect(account(parseRequest(raw, headEnd, limits)) == parsed, "refused at its own size, line length and line count")
        for (name, error) in [("maxHeadBytes", RequestHeadError.headersTooLarge), ("maxRequestLineBytes", .uriTooLong), ("maxHeaderCount", .tooManyHeaders)] {
            var smaller = limits
            switch error {
            case .headersTooLarge: smaller.maxHeadBytes -= 1
            case .uriTooLong: smaller.maxRequestLineBytes -= 1
            default:
                if lineCount == 0 { continue }
                smaller.maxHeaderCount -= 1
            }
            let result = account(parseRequest(raw, headEnd, smaller))
            try expect(result == account(Result<RequestHead, RequestHeadError>.failure(error)), "one under its own \(name): \(result)")
        }
    }

    static func parseResponse(_ raw: UnsafeRawBufferPointer, _ headEnd: Int, _ requestIsHead: Bool) -> Result<ResponseHead, RequestHeadError> {
        Result { () throws(RequestHeadError) in try ResponseHead.parse(raw, headEnd: headEnd, requestIsHead: requestIsHead) }
    }

    static func checkResponse(_ input: [UInt8]) throws {
        var bytes = input
        if referenceHeadEnd(bytes) == nil { bytes += [13, 10, 13, 10] }
        guard let headEnd = try checkHeadEnd(bytes) else { return }
        try withExactCopy(bytes) { raw in
            let other = parseResponse(raw, headEnd, false)
            let afterHead = parseResponse(raw, headEnd, true)
            let alone = withExactCopy(bytes[..<headEnd]) { account(parseResponse($0, headEnd, false)) }
            try expect(alone == account(other), "parsed alone: \(alone), with what follows: \(account(other))")
            switch (other, afterHead) {
            case (.success(let head), .success(var headAnswer)):
                try expect(headAnswer.framing == .none, "the answer to HEAD has a body: \(headAnswer.framing)")
                headAnswer.framing = head.framing
                try expect(account(Result<ResponseHead, RequestHeadError>.success(headAnswer)) == account(other),
                           "the answer to HEAD differs in more than framing")
                try checkResponseHead(raw, head)
            case (.failure(let error), .failure(let headError)):
                try expect(error == headError, "refused as \(error), or as \(headError) after HEAD")
            default:
                throw HTTPFuzzViolation(description: "accepted for one request method only: \(account(other)) / \(account(afterHead))")
            }
        }
    }

    static func checkResponseHead(_ raw: UnsafeRawBufferPointer, _ head: ResponseHead) throws {
        let lines = try checkLines(raw, head.headers)
        let lineEnd = head.headers.start - 2
        try expect(raw[0..<7].elementsEqual("HTTP/1.".utf8) && head.isHTTP11 == (raw[7] == UInt8(ascii: "1")), "version and isHTTP11 \(head.isHTTP11) disagree")
        try expect(head.status >= 100 && head.status <= 999 && head.statusStart == 9 && lineEnd >= 12, "status \(head.status)")
        try expect(String(decoding: raw[9..<12], as: UTF8.self) == String(head.status), "status \(head.status) is not the status code")
        let status = head.status
        let bodiless = status < 200 || status == 204 || status == 304
        let codings = lines.filter { $0.lowered == "transfer-encoding" }
        let lengths = lines.filter { $0.lowered == "content-length" }
        let lengthValues = Set(lengths.map { HTTPBytes.parseContentLength(raw, $0.value) })
        try expect(lengthValues.count <= 1 && !lengthValues.contains(nil), "Content-Length values \(lengthValues) accepted")
        try expect(codings.isEmpty || (lengths.isEmpty && head.isHTTP11), "Transfer-Encoding with Content-Length, or in HTTP/1.0")
        try expect(head.transferEncodingChunked == (!codings.isEmpty && status >= 200 && status != 204),
                   "transferEncodingChunked \(head.transferEncodingChunked) for status \(status) with \(codings.count) TE lines")
        let expected: BodyFraming
        if bodiless {
            expected = .none
        } else if !codings.isEmpty {
            expected = .chunked
        } else if let value = lengthValues.first, let length = value {
            expected = length == 0 ? .none : .length(length)
        } else {
            expected = .untilClose
        }
        try expect(head.framing == expected, "framing \(head.framing), expected \(expected)")
        let keptLengths = lengths.filter { !$0.dropped }
        try expect(keptLengths.count <= 1 && (keptLengths.isEmpty || (status >= 200 && status != 204)), "\(keptLengths.count) Content-Length lines forwarded for status \(status)")
        if let canonical = head.canonicalContentLength {
            try expect(keptLengths.isEmpty && lengthValues.first == canonical, "canonical Content-Length \(canonical) beside a kept one")
        }
        for line in lines where !line.dropped {
            let hopByHop = ["te", "transfer-encoding", "keep-alive", "proxy-connection"].contains(line.lowered)
                || (status != 101 && (line.lowered == "connection" || line.lowered == "upgrade"))
            try expect(!hopByHop && !isUnderscoreSpelling(line), "\(line.lowered) line forwarded for status \(status)")
        }
        _ = (head.upstreamKeepAlive, head.isInterim)
    }

    // MARK: - Chunked bodies

    enum Feed: Equatable {
        case consumed(Int, done: Bool)
        case invalid
    }

    /// What framing a body in some pieces gave.
    struct Framed: Equatable {
        var feed = Feed.invalid
        /// The pieces written out: data and verbatim ranges copied, the rest written canonically.
        var output: [UInt8] = []
        var data: [UInt8] = []
        var trailers: [[UInt8]] = []
        /// How many pieces were written anew (`sizeLine`, `crlf`).
        var rewritten = 0
        /// Whether, in every read, the data and verbatim ranges and the trailer lines follow one
        /// another from the read's first byte to the last one consumed.
        var contiguous = true
    }

    /// Feeds `pieces` (each in an allocation of its own size) to a `ChunkedFramer`, or to a
    /// `BodyTracker` for chunked framing, and checks that what is emitted lies in what was consumed.
    static func frame(_ body: [UInt8], cuts: [Int], tracker: Bool) throws -> Framed {
        var framed = Framed()
        var framer = ChunkedFramer()
        var bodyTracker = BodyTracker(.chunked)
        var total = 0
        var start = 0
        for end in cuts + [body.count] {
            let part = body[start..<end]
            start = end
            var ranges: [Range<Int>] = []
            var cursor = 0
            var contiguous = true
            let used: Int? = withExactCopy(part) { raw in
                let emit = { (piece: ChunkedPiece) in
                    switch piece {
                    case .data(let range):
                        ranges.append(range)
                        if range.lowerBound != cursor { contiguous = false }
                        cursor = range.upperBound
                        framed.data += raw[range]
                        framed.output += raw[range]
                    case .verbatim(let range):
                        ranges.append(range)
                        if range.lowerBound != cursor { contiguous = false }
                        cursor = range.upperBound
                        framed.output += raw[range]
                    case .sizeLine(let size):
                        framed.rewritten += 1
                        contiguous = false
                        framed.output += ChunkedFramer.sizeLine(size)
                    case .crlf:
                        framed.rewritten += 1
                        contiguous = false
                        framed.output += crlf
                    case .trailerField(let field):
                        cursor += field.count + 2
                        framed.trailers.append(field)
                        framed.output += field + crlf
                    }
                }
                if tracker {
                    return try? bodyTracker.consume(raw, emit: emit)
                }
                return try? framer.consume(raw, emit: emit)
            }
            guard let used else { return framed }
            try expect(used <= part.count, "consumed \(used) of \(part.count) bytes")
            try expect(ranges.allSatisfy { $0.lowerBound >= 0 && $0.upperBound <= used }, "piece ranges \(ranges) outside the \(used) bytes consumed")
            if cursor != used { contiguous = false }
            framed.contiguous = framed.contiguous && contiguous
            total += used
        }
        framed.feed = .consumed(total, done: tracker ? bodyTracker.isDone : framer.isDone)
        return framed
    }

    enum Decoded: Equatable {
        case complete(data: [UInt8], trailers: [[UInt8]], end: Int)
        case incomplete
        case invalid
    }

    /// A lenient chunked decoder written from RFC 9112 §7.1: a hex size, anything up to CRLF,
    /// the data, CRLF; after size 0, lines up to an empty one.
    static func referenceDecode(_ body: [UInt8]) -> Decoded {
        var data: [UInt8] = []
        var position = 0
        func lineEnd(from start: Int) -> Int? {
            var index = start
            while index + 1 < body.count {
                if body[index] == 13 && body[index + 1] == 10 { return index }
                index += 1
            }
            return nil
        }
        while true {
            var size: UInt64 = 0
            var digits = 0
            while position < body.count, digits < 16, let digit = Int(String(UnicodeScalar(body[position])), radix: 16) {
                size = size << 4 | UInt64(digit)
                digits += 1
                position += 1
            }
            guard let end = lineEnd(from: position) else { return .incomplete }
            if digits == 0 { return .invalid }
            position = end + 2
            if size == 0 { break }
            let left = body.count - position
            guard left >= 2, UInt64(left - 2) >= size else { return .incomplete }
            data += body[position..<(position + Int(size))]
            position += Int(size)
            guard body[position] == 13 && body[position + 1] == 10 else { return .invalid }
            position += 2
        }
        var trailers: [[UInt8]] = []
        while true {
            guard let end = lineEnd(from: position) else { return .incomplete }
            if end == position { return .complete(data: data, trailers: trailers, end: end + 2) }
            trailers.append(Array(body[position..<end]))
            position = end + 2
        }
    }

    static func checkChunked(_ input: [UInt8]) throws {
        guard let control = input.first else { return }
        let body = Array(input.dropFirst())
        var random = SplitMix(state: UInt64(control) << 32 | UInt64(body.count))
        let cuts = (0..<(1 + random.below(4))).map { _ in random.below(body.count + 1) }.sorted()
        let whole = try frame(body, cuts: [], tracker: false)
        var splits: [(String, Framed)] = [
            ("cut at \(cuts)", try frame(body, cuts: cuts, tracker: false)),
            ("BodyTracker cut at \(cuts)", try frame(body, cuts: cuts, tracker: true)),
        ]
        if body.count <= 1024, body.count > 1 {
            splits.append(("byte by byte", try frame(body, cuts: Array(1..<body.count), tracker: false)))
        }
        // (i) The same verdict, the same end and the same bytes written, however the body is cut.
        for (name, framed) in splits {
            try expect(framed.feed == whole.feed, "\(name): \(framed.feed), in one read: \(whole.feed)")
            if framed.feed != .invalid {
                try expect(framed.output == whole.output && framed.data == whole.data && framed.trailers == whole.trailers,
                           "\(name): wrote \(text(framed.output)), in one read \(text(whole.output))")
            }
        }
        let reference = referenceDecode(body)
        switch whole.feed {
        case .invalid:
            return
        case .consumed(let count, done: false):
            try expect(count == body.count, "consumed \(count) of \(body.count) bytes without finding the end")
            if case .complete(_, _, let end) = reference {
                throw HTTPFuzzViolation(description: "the reference decoder finds the end at \(end), the framer none")
            }
        case .consumed(let count, done: true):
            // (iii) The same data and trailers as the reference decoder, and the same end.
            guard case .complete(let data, let trailers, let end) = reference else {
                throw HTTPFuzzViolation(description: "the framer ends the body at \(count), the reference decoder: \(reference)")
            }
            try expect(end == count, "the framer ends the body at \(count), the reference decoder at \(end)")
            try expect(data == whole.data, "data \(text(whole.data)), the reference decoder's \(text(data))")
            let passed = trailers.filter { line in !TrailerRules.isDropped(line.prefix { $0 != UInt8(ascii: ":") }) }
            try expect(passed == whole.trailers, "trailers \(whole.trailers.map(text)), expected \(passed.map(text))")
            // (ii) What is written is a body the framer takes whole, with the same content, and
            // writes out again unchanged, as one run of the bytes it read.
            let again = try frame(whole.output, cuts: [], tracker: false)
            try expect(again.feed == .consumed(whole.output.count, done: true), "the output \(text(whole.output)) framed again: \(again.feed)")
            try expect(again.data == whole.data && again.trailers == whole.trailers, "the output framed again has other data or trailers")
            try expect(again.output == whole.output, "the output \(text(whole.output)) framed again is \(text(again.output))")
            try expect(again.rewritten == 0 && again.contiguous, "the output \(text(whole.output)) is not passed on as it is")
        }
        // BodyTracker for the other framings.
        let length = Int64(control) * 3
        for framing in [BodyFraming.none, .length(length), .untilClose] {
            var tracker = BodyTracker(framing)
            var data: [UInt8] = []
            var total = 0
            var start = 0
            for end in cuts + [body.count] {
                let used = try withExactCopy(body[start..<end]) { raw in
                    try tracker.consume(raw) { piece in
                        if case .data(let range) = piece { data += raw[range] }
                    }
                }
                total += used
                start = end
            }
            let expected: Int
            switch framing {
            case .none: expected = 0
            case .length(let length): expected = min(Int(length), body.count)
            default: expected = body.count
            }
            let done = framing == .untilClose ? false : total == expected && (framing == .none || Int(length) <= body.count)
            try expect(total == expected && data == Array(body[..<expected]) && tracker.isDone == done,
                       "BodyTracker(\(framing)): consumed \(total), done \(tracker.isDone), expected \(expected), done \(done)")
        }
    }
}

#if !TEAL_FUZZ
/// Every seed and every input the fuzzer found goes through the harness's checks.
@Suite struct FuzzRegressionTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fuzz")

    /// The files for `target`: `fuzz/corpus/<target>/*` and `fuzz/regressions/<target>-*`.
    static func inputs(_ target: HTTPFuzzChecks.Target) throws -> [URL] {
        let files = FileManager.default
        let corpus = fuzzDirectory.appendingPathComponent("corpus").appendingPathComponent(target.rawValue)
        let seeds = try files.contentsOfDirectory(at: corpus, includingPropertiesForKeys: nil)
        let regressionDirectory = fuzzDirectory.appendingPathComponent("regressions")
        let found = ((try? files.contentsOfDirectory(at: regressionDirectory, includingPropertiesForKeys: nil)) ?? [])
            .filter { $0.lastPathComponent.hasPrefix(target.rawValue + "-") }
        return (seeds + found).sorted { $0.path < $1.path }
    }

    @Test(arguments: HTTPFuzzChecks.Target.allCases)
    func replay(_ target: HTTPFuzzChecks.Target) throws {
        let files = try Self.inputs(target)
        #expect(!files.isEmpty)
        for file in files {
            let bytes = try [UInt8](Data(contentsOf: file))
            do {
                try HTTPFuzzChecks.run(target, bytes)
            } catch {
                Issue.record("\(file.lastPathComponent): \(error)")
            }
        }
    }
}
#endif
