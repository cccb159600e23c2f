/// A parsed upstream response head, with positions into the buffer it came from.
struct ResponseHead {
    var status = 0
    /// Start of the status code in the status line (`HTTP/1.1 ` is re-written by the proxy).
    var statusStart = 9
    var headers = HeaderLines()
    var isHTTP11 = true
    var framing = BodyFraming.untilClose
    var connectionClose = false
    var connectionKeepAlive = false
    var hasConnectionOptions = false
    /// The answer's Transfer-Encoding is `chunked` (its lines are dropped; one canonical line is sent).
    var transferEncodingChunked = false
    /// A Content-Length written with leading zeros: its line is dropped, and this is sent.
    var canonicalContentLength: Int64?

    /// Whether the upstream connection may carry another request after this response.
    var upstreamKeepAlive: Bool {
        guard framing != .untilClose, !connectionClose else { return false }
        return isHTTP11 || connectionKeepAlive
    }

    var isInterim: Bool { status >= 100 && status < 200 && status != 101 }

    /// Parses `bytes[0..<headEnd]`; `requestIsHead` tells that the answer has no body whatever its
    /// headers say. Throws for anything that is not a valid HTTP/1.x response head.
    static func parse(_ bytes: UnsafeRawBufferPointer, headEnd: Int, requestIsHead: Bool) throws(RequestHeadError) -> ResponseHead {
        var head = ResponseHead()
        head.headers.headEnd = headEnd
        let lineEnd = try RequestHead.lineEnd(bytes, from: 0, limit: headEnd)
        guard lineEnd >= 12, HTTPBytes.equalsExactly(bytes, 0, "HTTP/1."),
              bytes[7] == UInt8(ascii: "0") || bytes[7] == UInt8(ascii: "1"), bytes[8] == HTTPBytes.sp,
              lineEnd == 12 || bytes[12] == HTTPBytes.sp else { throw .badRequestLine }
        head.isHTTP11 = bytes[7] == UInt8(ascii: "1")
        var status = 0
        for position in 9..<12 {
            let digit = bytes[position] &- 48
            guard digit < 10 else { throw .badRequestLine }
            status = status * 10 + Int(digit)
        }
        guard status >= 100 else { throw .badRequestLine }
        // The reason phrase: HTAB, SP, VCHAR and obs-text only (RFC 9112 §4).
        for position in 12..<lineEnd where !HTTPBytes.isFieldValueChar(bytes[position]) { throw .badRequestLine }
        head.status = status
        head.headers.start = lineEnd + 2
        var lineStart = head.headers.start
        var index = 0
        var sawLength = false
        var codings = TransferCodings()
        var length: Int64 = 0
        while let line = try HeaderLines.line(bytes, at: lineStart, headEnd: headEnd) {
            if index >= HeaderLines.maxLines { throw .tooManyHeaders }
            let name = line.name, value = line.value
            switch name.count {
            case 2 where HTTPBytes.equalsIgnoringCase(bytes, name, "te"):
                head.headers.drop(line: index)
            case 7 where HTTPBytes.equalsIgnoringCase(bytes, name, "upgrade"):
                if status != 101 { head.headers.drop(line: index) }
            case 10 where HTTPBytes.equalsIgnoringCase(bytes, name, "connection"):
                if status != 101 { head.headers.drop(line: index) }
                HTTPBytes.forEachListElement(bytes, value) { option in
                    if HTTPBytes.equalsIgnoringCase(bytes, option, "close") {
                        head.connectionClose = true
                    } else if HTTPBytes.equalsIgnoringCase(bytes, option, "keep-alive") {
                        head.connectionKeepAlive = true
                    } else if !HTTPBytes.equalsIgnoringCase(bytes, option, "upgrade") {
                        head.hasConnectionOptions = true
                    }
                }
            case 10 where HTTPBytes.equalsIgnoringCase(bytes, name, "keep-alive"),
                 16 where HTTPBytes.equalsIgnoringCase(bytes, name, "proxy-connection"):
                head.headers.drop(line: index)
            case 14 where HTTPBytes.equalsIgnoringCase(bytes, name, "content-length"):
                guard let value = HTTPBytes.parseContentLength(bytes, value), !sawLength || value == length else {
                    throw .invalidContentLength
                }
                // Content-Length on 1xx and 204 answers is not passed on (RFC 9110 §8.6).
                if sawLength || status < 200 || status == 204 { head.headers.drop(line: index) }
                if !sawLength && status >= 200 && status != 204 && line.value.count > 1 && bytes[line.value.lowerBound] == UInt8(ascii: "0") {
                    head.headers.drop(line: index)
                    head.canonicalContentLength = value
                }
                sawLength = true
                length = value
            case 17 where HTTPBytes.equalsIgnoringCase(bytes, name, "transfer-encoding"):
                codings.add(bytes, value)
                head.headers.drop(line: index)
            default:
                if HTTPBytes.isUnderscoreSpelling(bytes, name) { head.headers.drop(line: index) }
            }
            lineStart = line.end + 2
            index += 1
        }
        if codings.seen {
            // Only exactly `chunked` is passed on: anything else (another coding, which would
            // make the body run until the close, empty list elements, chunked twice, chunked in
            // HTTP/1.0, or Content-Length beside it) is a framing the client could read another way.
            if sawLength { throw .contentLengthWithTransferEncoding }
            if !head.isHTTP11 { throw .transferEncodingInHTTP10 }
            guard codings.verdict == .chunked else { throw .transferEncodingInvalid }
            // Nor is Transfer-Encoding on 1xx and 204 answers (RFC 9112 §6.1).
            head.transferEncodingChunked = status >= 200 && status != 204
        }
        if requestIsHead || status < 200 || status == 204 || status == 304 {
            head.framing = .none
        } else if codings.seen {
            head.framing = .chunked
        } else if sawLength {
            head.framing = length == 0 ? .none : .length(length)
        }
        if head.hasConnectionOptions { head.headers.dropConnectionOptions(bytes) }
        return head
    }
}
