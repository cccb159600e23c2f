/// Why a request head was refused; picks the status code and the `X-Teal-Error` name.
enum RequestHeadError: Error, Equatable {
    case badRequestLine
    case unsupportedVersion
    case uriTooLong
    case headersTooLarge
    case tooManyHeaders
    case invalidHeader
    case obsFold
    case bareLineFeed
    case missingHost
    case repeatedHost
    case invalidHost
    case invalidContentLength
    case duplicateContentLength
    case contentLengthWithTransferEncoding
    case transferEncodingNotChunked
    case transferEncodingInvalid
    case transferCodingNotImplemented
    case transferEncodingInHTTP10
    case invalidTargetAuthority
    case userinfoInTarget

    var status: Int {
        switch self {
        case .unsupportedVersion: 505
        case .uriTooLong: 414
        case .headersTooLarge, .tooManyHeaders: 431
        case .transferCodingNotImplemented: 501
        default: 400
        }
    }

    var name: String {
        switch self {
        case .badRequestLine: "bad-request-line"
        case .unsupportedVersion: "unsupported-http-version"
        case .uriTooLong: "uri-too-long"
        case .headersTooLarge: "headers-too-large"
        case .tooManyHeaders: "too-many-headers"
        case .invalidHeader: "invalid-header"
        case .obsFold: "obsolete-line-folding"
        case .bareLineFeed: "bare-line-feed"
        case .missingHost: "missing-host"
        case .repeatedHost: "repeated-host"
        case .invalidHost: "invalid-host"
        case .invalidContentLength: "invalid-content-length"
        case .duplicateContentLength: "duplicate-content-length"
        case .contentLengthWithTransferEncoding: "content-length-with-transfer-encoding"
        case .transferEncodingNotChunked: "transfer-encoding-not-chunked"
        case .transferEncodingInvalid: "invalid-transfer-encoding"
        case .transferCodingNotImplemented: "transfer-coding-not-implemented"
        case .transferEncodingInHTTP10: "transfer-encoding-in-http-1.0"
        case .invalidTargetAuthority: "invalid-target-authority"
        case .userinfoInTarget: "userinfo-in-target"
        }
    }

    var message: String {
        switch self {
        case .badRequestLine: "the request line is not METHOD SP TARGET SP HTTP/1.x"
        case .unsupportedVersion: "only HTTP/1.0 and HTTP/1.1 are served here"
        case .uriTooLong: "the request target is too long"
        case .headersTooLarge: "the request head is too large"
        case .tooManyHeaders: "the request has too many header fields"
        case .invalidHeader: "a header field is malformed"
        case .obsFold: "obsolete line folding is not accepted"
        case .bareLineFeed: "lines must end in CRLF"
        case .missingHost: "HTTP/1.1 requests need a Host header"
        case .repeatedHost: "the Host header appears more than once"
        case .invalidHost: "the Host header is not a valid host"
        case .invalidContentLength: "Content-Length is not a number"
        case .duplicateContentLength: "Content-Length appears more than once"
        case .contentLengthWithTransferEncoding: "Content-Length and Transfer-Encoding together are not accepted"
        case .transferEncodingNotChunked: "Transfer-Encoding must end in chunked"
        case .transferEncodingInvalid: "Transfer-Encoding must name chunked once, without empty list elements"
        case .transferCodingNotImplemented: "chunked is the only transfer coding accepted"
        case .transferEncodingInHTTP10: "Transfer-Encoding is not accepted in HTTP/1.0"
        case .invalidTargetAuthority: "the authority of the absolute-form target is not a valid host"
        case .userinfoInTarget: "the request target must not carry user information (user@host)"
        }
    }
}

/// Limits applied while parsing a request head.
public struct HeadLimits: Sendable, Hashable {
    /// Largest request head (request line and all header fields), in bytes (431 beyond).
    public var maxHeadBytes = 32 * 1024
    /// Largest request line, in bytes (414 beyond).
    public var maxRequestLineBytes = 8 * 1024
    /// Most header fields in one head (431 beyond).
    public var maxHeaderCount = 100

    public init() {}
}

/// How a message body is framed (RFC 9112 §6.3).
enum BodyFraming: Equatable {
    case none
    case length(Int64)
    case chunked
    /// Read until the connection closes (responses only).
    case untilClose
}

/// A parsed request head. Holds positions into the buffer it was parsed from, not copies.
struct RequestHead {
    var methodEnd = 0
    var isHead = false
    var isIdempotent = false
    var isConnect = false
    var isOptions = false
    /// GET, HEAD or OPTIONS: safe to send again to another instance.
    var isSafeMethod = false
    /// The request carries an `Idempotency-Key`: its sender says it may be sent again.
    var hasIdempotencyKey = false
    var target = 0..<0
    /// `true` for HTTP/1.1, `false` for HTTP/1.0.
    var isHTTP11 = true
    var headers = HeaderLines()
    var host: Range<Int>?
    /// The host came from an absolute-form target (`http://host/path`): the Host line is
    /// dropped, and the request goes upstream in origin form with `Host: host`.
    var hostFromTarget = false
    var framing = BodyFraming.none
    /// A Content-Length written with leading zeros: its line is dropped, and this is sent.
    var canonicalContentLength: Int64?
    var connectionClose = false
    var connectionKeepAlive = false
    var connectionUpgrade = false
    var upgrade: Range<Int>?
    var requestID: Range<Int>?
    var forwardedFor: Range<Int>?
    var via: Range<Int>?
    /// Whether the Connection header names options other than close, keep-alive and upgrade.
    var hasConnectionOptions = false

    /// Whether the client wants the connection kept open after this exchange.
    var keepAlive: Bool { isHTTP11 ? !connectionClose : connectionKeepAlive && !connectionClose }

    /// Whether the request asks for a protocol upgrade that is forwarded (WebSocket and the like).
    var wantsUpgrade: Bool { upgrade != nil && connectionUpgrade }

    /// Parses the head in `bytes[0..<headEnd]` (`headEnd` from `HTTPBytes.findHeadEnd`).
    static func parse(_ bytes: UnsafeRawBufferPointer, headEnd: Int, limits: HeadLimits) throws(RequestHeadError) -> RequestHead {
        var head = RequestHead()
        head.headers.headEnd = headEnd
        if headEnd > limits.maxHeadBytes { throw .headersTooLarge }
        try head.parseRequestLine(bytes, limits: limits)
        var lineStart = head.headers.start
        var lineIndex = 0
        var sawHost = false
        var sawContentLength = false
        var codings = TransferCodings()
        var hostLine = -1
        var upgradeH2C = false
        while let line = try HeaderLines.line(bytes, at: lineStart, headEnd: headEnd) {
            if lineIndex >= limits.maxHeaderCount || lineIndex >= HeaderLines.maxLines { throw .tooManyHeaders }
            let name = line.name, value = line.value
            switch name.count {
            case 2 where HTTPBytes.equalsIgnoringCase(bytes, name, "te"):
                head.headers.drop(line: lineIndex)
            case 3 where HTTPBytes.equalsIgnoringCase(bytes, name, "via"):
                head.via = head.via ?? value
                head.headers.drop(line: lineIndex)
            case 4 where HTTPBytes.equalsIgnoringCase(bytes, name, "host"):
                if sawHost { throw .repeatedHost }
                sawHost = true
                guard Self.isValidHost(bytes, value) else { throw .invalidHost }
                head.host = value
                hostLine = lineIndex
            case 6 where HTTPBytes.equalsIgnoringCase(bytes, name, "expect"):
                break
            case 7 where HTTPBytes.equalsIgnoringCase(bytes, name, "upgrade"):
                head.upgrade = value
                head.headers.drop(line: lineIndex)  // re-added when the upgrade is forwarded
                HTTPBytes.forEachListElement(bytes, value) { token in
                    if HTTPBytes.equalsIgnoringCase(bytes, token, "h2c") { upgradeH2C = true }
                }
            case 10 where HTTPBytes.equalsIgnoringCase(bytes, name, "connection"):
                head.headers.drop(line: lineIndex)
                HTTPBytes.forEachListElement(bytes, value) { option in
                    if HTTPBytes.equalsIgnoringCase(bytes, option, "close") {
                        head.connectionClose = true
                    } else if HTTPBytes.equalsIgnoringCase(bytes, option, "keep-alive") {
                        head.connectionKeepAlive = true
                    } else if HTTPBytes.equalsIgnoringCase(bytes, option, "upgrade") {
                        head.connectionUpgrade = true
                    } else {
                        head.hasConnectionOptions = true
                    }
                }
            case 10 where HTTPBytes.equalsIgnoringCase(bytes, name, "keep-alive"):
                head.headers.drop(line: lineIndex)
            case 12 where HTTPBytes.equalsIgnoringCase(bytes, name, "x-request-id"):
                if head.requestID == nil, !value.isEmpty { head.requestID = value } else { head.headers.drop(line: lineIndex) }
            case 14 where HTTPBytes.equalsIgnoringCase(bytes, name, "content-length"):
                if sawContentLength { throw .duplicateContentLength }
                sawContentLength = true
                guard let length = HTTPBytes.parseContentLength(bytes, value) else { throw .invalidContentLength }
                head.framing = .length(length)
                if value.count > 1 && bytes[value.lowerBound] == UInt8(ascii: "0") {
                    head.headers.drop(line: lineIndex)
                    head.canonicalContentLength = length
                }
            case 14 where HTTPBytes.equalsIgnoringCase(bytes, name, "http2-settings"):
                head.headers.drop(line: lineIndex)
            case 15 where HTTPBytes.equalsIgnoringCase(bytes, name, "x-forwarded-for"):
                head.forwardedFor = head.forwardedFor ?? value
                head.headers.drop(line: lineIndex)
            case 15 where HTTPBytes.equalsIgnoringCase(bytes, name, "idempotency-key"):
                head.hasIdempotencyKey = !value.isEmpty
            case 16 where HTTPBytes.equalsIgnoringCase(bytes, name, "x-forwarded-host"),
                 16 where HTTPBytes.equalsIgnoringCase(bytes, name, "x-forwarded-port"),
                 16 where HTTPBytes.equalsIgnoringCase(bytes, name, "proxy-connection"):
                head.headers.drop(line: lineIndex)
            case 17 where HTTPBytes.equalsIgnoringCase(bytes, name, "transfer-encoding"):
                codings.add(bytes, value)
                head.headers.drop(line: lineIndex)  // sent as one canonical line
            case 17 where HTTPBytes.equalsIgnoringCase(bytes, name, "x-forwarded-proto"):
                head.headers.drop(line: lineIndex)
            default:
                if HTTPBytes.isUnderscoreSpelling(bytes, name) { head.headers.drop(line: lineIndex) }
            }
            lineStart = line.end + 2
            lineIndex += 1
        }
        if codings.seen {
            if !head.isHTTP11 { throw .transferEncodingInHTTP10 }
            if sawContentLength { throw .contentLengthWithTransferEncoding }
            switch codings.verdict {
            case .malformed: throw .transferEncodingInvalid
            case .notChunked: throw .transferEncodingNotChunked
            case .unsupportedCoding: throw .transferCodingNotImplemented
            case .chunked, .absent: head.framing = .chunked
            }
        }
        if head.isHTTP11 && !sawHost { throw .missingHost }
        if let authority = head.authority(bytes) {
            // RFC 9112 §3.2.2: the target's authority wins over Host, and replaces it.
            if bytes[authority].contains(UInt8(ascii: "@")) { throw .userinfoInTarget }
            guard !authority.isEmpty, Self.isValidHost(bytes, authority) else { throw .invalidTargetAuthority }
            if hostLine >= 0 { head.headers.drop(line: hostLine) }
            head.host = authority
            head.hostFromTarget = true
        }
        // HTTP/2 over cleartext by upgrade is not offered: the upgrade is left out, so an instance
        // never switches a connection the proxy reads as HTTP/1.1.
        if upgradeH2C { head.upgrade = nil }
        if head.framing == .length(0) { head.framing = .none }
        if head.hasConnectionOptions { head.headers.dropConnectionOptions(bytes) }
        return head
    }

    /// Finds the CRLF that ends the line starting at `start`; refuses bare CR or LF.
    @inline(__always)
    static func lineEnd(_ bytes: UnsafeRawBufferPointer, from start: Int, limit: Int) throws(RequestHeadError) -> Int {
        var position = start
        while position < limit {
            let byte = bytes[position]
            if byte == HTTPBytes.cr {
                guard position + 1 < limit, bytes[position + 1] == HTTPBytes.lf else { throw .invalidHeader }
                return position
            }
            if byte == HTTPBytes.lf { throw .bareLineFeed }
            position += 1
        }
        throw .invalidHeader
    }

    private mutating func parseRequestLine(_ bytes: UnsafeRawBufferPointer, limits: HeadLimits) throws(RequestHeadError) {
        let lineEnd: Int
        do {
            lineEnd = try Self.lineEnd(bytes, from: 0, limit: headers.headEnd)
        } catch .bareLineFeed {
            throw .bareLineFeed
        } catch {
            throw .badRequestLine
        }
        if lineEnd > limits.maxRequestLineBytes { throw .uriTooLong }
        var position = 0
        while position < lineEnd, HTTPBytes.isTokenChar(bytes[position]) { position += 1 }
        guard position > 0, position < lineEnd, bytes[position] == HTTPBytes.sp else { throw .badRequestLine }
        methodEnd = position
        classifyMethod(bytes)
        let targetStart = position + 1
        position = targetStart
        // Visible ASCII only (RFC 3986: a URI is ASCII; anything else arrives percent-encoded).
        while position < lineEnd, bytes[position] > 0x20, bytes[position] < 0x7F { position += 1 }
        guard position > targetStart, position < lineEnd, bytes[position] == HTTPBytes.sp else { throw .badRequestLine }
        target = targetStart..<position
        let version = (position + 1)..<lineEnd
        guard version.count == 8, HTTPBytes.equalsExactly(bytes, version.lowerBound, "HTTP/") else { throw .badRequestLine }
        let major = bytes[version.lowerBound + 5], dot = bytes[version.lowerBound + 6], minor = bytes[version.lowerBound + 7]
        guard dot == UInt8(ascii: "."), major &- 48 < 10, minor &- 48 < 10 else { throw .badRequestLine }
        guard major == UInt8(ascii: "1"), minor == UInt8(ascii: "0") || minor == UInt8(ascii: "1") else {
            throw .unsupportedVersion
        }
        isHTTP11 = minor == UInt8(ascii: "1")
        let first = bytes[target.lowerBound]
        if !isConnect && first != UInt8(ascii: "/") && first != UInt8(ascii: "*") && !hasAbsoluteForm(bytes) {
            throw .badRequestLine
        }
        headers.start = lineEnd + 2
    }

    /// Methods are case-sensitive (RFC 9110 §9.1): `GET` is the standard one, `GeT` another
    /// method, which the proxy must not read as GET (a `HeAD` read as HEAD would expect an
    /// answer without a body that the instance sends with one).
    private mutating func classifyMethod(_ bytes: UnsafeRawBufferPointer) {
        switch methodEnd {
        case 3:
            isSafeMethod = HTTPBytes.equalsExactly(bytes, 0, "GET")
            isIdempotent = isSafeMethod || HTTPBytes.equalsExactly(bytes, 0, "PUT")
        case 4: isHead = HTTPBytes.equalsExactly(bytes, 0, "HEAD"); isIdempotent = isHead; isSafeMethod = isHead
        case 5: isIdempotent = HTTPBytes.equalsExactly(bytes, 0, "TRACE")
        case 6: isIdempotent = HTTPBytes.equalsExactly(bytes, 0, "DELETE")
        case 7:
            isIdempotent = HTTPBytes.equalsExactly(bytes, 0, "OPTIONS")
            isOptions = isIdempotent
            isSafeMethod = isIdempotent
            isConnect = HTTPBytes.equalsExactly(bytes, 0, "CONNECT")
        default: break
        }
    }

    private func hasAbsoluteForm(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let start = target.lowerBound
        return target.count > 7 && (HTTPBytes.equalsIgnoringCase(bytes, start..<(start + 7), "http://")
            || HTTPBytes.equalsIgnoringCase(bytes, start..<(start + 8), "https://"))
    }

    /// The authority of an absolute-form target (`http://host:port/path`), which RFC 9112 §3.2.2
    /// says overrides `Host`; `nil` for origin-form targets.
    func authority(_ bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        guard bytes[target.lowerBound] != UInt8(ascii: "/"), hasAbsoluteForm(bytes) else { return nil }
        let start = target.lowerBound + (bytes[target.lowerBound + 4] == UInt8(ascii: ":") ? 7 : 8)
        var end = start
        while end < target.upperBound, bytes[end] != UInt8(ascii: "/"), bytes[end] != UInt8(ascii: "?") { end += 1 }
        return start..<end
    }

    /// The path part of the target: for absolute-form (`http://host/path`) the part from the first
    /// `/` after the authority, otherwise the target itself.
    func path(_ bytes: UnsafeRawBufferPointer) -> Range<Int> {
        guard bytes[target.lowerBound] != UInt8(ascii: "/"), hasAbsoluteForm(bytes) else { return target }
        var position = target.lowerBound + (bytes[target.lowerBound + 4] == UInt8(ascii: ":") ? 7 : 8)
        while position < target.upperBound, bytes[position] != UInt8(ascii: "/") { position += 1 }
        return position..<target.upperBound
    }

    /// A Host value: reg-name, IPv4 or bracketed IPv6, optional `:port`; empty is allowed only
    /// by RFC 9112 for targets without authority, and is treated as no host.
    static func isValidHost(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        for position in range {
            switch bytes[position] {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"),
                 UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "~"), UInt8(ascii: "%"):
                continue
            default:
                return false
            }
        }
        return true
    }
}
