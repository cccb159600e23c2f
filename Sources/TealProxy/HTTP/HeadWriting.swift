import NIOCore

/// Header bytes the proxy adds, rendered once.
struct ProxyHeaderBytes {
    let forwardedFor = Array("X-Forwarded-For: ".utf8)
    let forwardedProto = Array("X-Forwarded-Proto: http\r\n".utf8)
    let forwardedProtoHTTPS = Array("X-Forwarded-Proto: https\r\n".utf8)
    let forwardedHost = Array("X-Forwarded-Host: ".utf8)
    let host = Array("Host: ".utf8)
    let contentLength = Array("Content-Length: ".utf8)
    let transferEncodingChunked = Array("Transfer-Encoding: chunked\r\n".utf8)
    let via = Array("Via: ".utf8)
    let viaValue: [UInt8]
    let requestID = Array("X-Request-Id: ".utf8)
    let upgrade = Array("Connection: upgrade\r\nUpgrade: ".utf8)
    let listSeparator = Array(", ".utf8)
    let crlf = Array("\r\n".utf8)
    let connectionClose = Array("Connection: close\r\n".utf8)
    let http11 = Array("HTTP/1.1 ".utf8)

    init(viaName: String) {
        viaValue = Array("1.1 \(viaName)".utf8)
    }

    /// Writes the message-framing lines of a head: a canonical Content-Length when the original
    /// was dropped for leading zeros, and the one `Transfer-Encoding: chunked` line.
    func writeFraming(contentLength: Int64?, chunked: Bool, into buffer: inout ByteBuffer) {
        if let contentLength {
            buffer.writeBytes(self.contentLength)
            buffer.writeString(String(contentLength))
            buffer.writeBytes(crlf)
        }
        if chunked { buffer.writeBytes(transferEncodingChunked) }
    }
}

/// The heads the proxy sends: the original bytes wherever they can be read only one way, the
/// proxy's own lines where it replaces or adds fields.
enum HeadWriter {
    /// Where the request comes from, for the forwarding fields.
    struct Client {
        var address: [UInt8]
        var isTLS: Bool
    }

    /// The head sent upstream: the request line (in origin form when the client sent an
    /// absolute-form target), the header lines minus hop-by-hop ones and those the proxy
    /// replaces, then Host (from the target), canonical framing, X-Forwarded-*, Via, and (when
    /// missing) X-Request-Id.
    static func upstreamRequest(_ raw: UnsafeRawBufferPointer, _ head: RequestHead, client: Client,
                                constants: ProxyHeaderBytes, into buffer: inout ByteBuffer,
                                requestID: (inout ByteBuffer) -> Void) {
        if head.hostFromTarget, let authority = head.authority(raw) {
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[0..<(head.target.lowerBound)]))
            let rest = authority.upperBound..<head.target.upperBound
            if rest.isEmpty {
                buffer.writeStaticString(head.isOptions ? "*" : "/")
            } else {
                if raw[rest.lowerBound] != UInt8(ascii: "/") { buffer.writeStaticString("/") }
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[rest]))
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[head.target.upperBound..<head.headers.start]))
        } else {
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[0..<head.headers.start]))
        }
        head.headers.forEachKeptRange(raw) { buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[$0])) }
        if head.hostFromTarget, let host = head.host {
            buffer.writeBytes(constants.host)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[host]))
            buffer.writeBytes(constants.crlf)
        }
        constants.writeFraming(contentLength: head.canonicalContentLength, chunked: head.framing == .chunked, into: &buffer)
        appendToList(constants.forwardedFor, earlier: head.forwardedFor, raw, client.address, constants: constants, into: &buffer)
        buffer.writeBytes(client.isTLS ? constants.forwardedProtoHTTPS : constants.forwardedProto)
        if let host = head.host, !host.isEmpty {
            buffer.writeBytes(constants.forwardedHost)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[host]))
            buffer.writeBytes(constants.crlf)
        }
        appendToList(constants.via, earlier: head.via, raw, constants.viaValue, constants: constants, into: &buffer)
        if head.requestID == nil {
            buffer.writeBytes(constants.requestID)
            requestID(&buffer)
            buffer.writeBytes(constants.crlf)
        }
        if let upgrade = head.upgrade, head.wantsUpgrade {
            buffer.writeBytes(constants.upgrade)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[upgrade]))
            buffer.writeBytes(constants.crlf)
        }
        buffer.writeBytes(constants.crlf)
    }

    /// A list field the proxy adds to: `name`, the client's earlier value and `, ` when there was
    /// one, then `value` and CRLF (`X-Forwarded-For: 10.0.0.1, 192.0.2.9`, `Via: 1.1 a, 1.1 teal`).
    @inline(__always)
    private static func appendToList(_ name: [UInt8], earlier: Range<Int>?, _ raw: UnsafeRawBufferPointer, _ value: [UInt8],
                                     constants: ProxyHeaderBytes, into buffer: inout ByteBuffer) {
        buffer.writeBytes(name)
        if let earlier, !earlier.isEmpty {
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[earlier]))
            buffer.writeBytes(constants.listSeparator)
        }
        buffer.writeBytes(value)
        buffer.writeBytes(constants.crlf)
    }

    /// The head sent to an HTTP/1.x client: `HTTP/1.1`, the instance's status line and header
    /// lines minus hop-by-hop ones and those the proxy replaces, canonical framing, and
    /// `Connection: close` when the connection ends after this answer.
    static func clientResponse(_ raw: UnsafeRawBufferPointer, _ head: ResponseHead, close: Bool,
                               constants: ProxyHeaderBytes, stickyCookie: StickyCookie? = nil, into buffer: inout ByteBuffer) {
        buffer.writeBytes(constants.http11)
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[head.statusStart..<head.headers.start]))
        head.headers.forEachKeptRange(raw) { buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[$0])) }
        constants.writeFraming(contentLength: head.canonicalContentLength, chunked: head.transferEncodingChunked, into: &buffer)
        if close { buffer.writeBytes(constants.connectionClose) }
        if let stickyCookie {
            buffer.writeBytes(stickyCookie.prefix)
            buffer.writeBytes(stickyCookie.value)
            buffer.writeBytes(StickyCookie.attributes)
            buffer.writeBytes(constants.crlf)
        }
        buffer.writeBytes(constants.crlf)
    }
}

/// The version cookie of sticky sessions: `Set-Cookie: NAME=VALUE; Path=/; HttpOnly; SameSite=Lax`.
struct StickyCookie {
    static let attributes = Array("; Path=/; HttpOnly; SameSite=Lax".utf8)
    /// `Set-Cookie: NAME=`.
    let prefix: [UInt8]
    let value: [UInt8]

    /// The field value, for HTTP/2 (`set-cookie`).
    var fieldValue: String {
        String(decoding: prefix.dropFirst("Set-Cookie: ".utf8.count) + value + Self.attributes, as: UTF8.self)
    }
}
