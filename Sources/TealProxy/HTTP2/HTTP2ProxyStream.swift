import NIOCore
import NIOHPACK
import NIOHTTP2

/// One HTTP/2 stream of a client connection, proxied without a stream channel: its request
/// (HEADERS and DATA frames) is rendered as HTTP/1.1 bytes for a `ProxyHandler` of its own, which
/// routes, splits, retries, times and counts it like any HTTP/1.1 request; the answer comes back
/// from the handler as a parsed head and body bytes and leaves as HEADERS and DATA frames.
///
/// Requests: a body without `content-length` is sent upstream chunked; `cookie` fields are joined
/// into one line (RFC 9113 §8.2.3); `:authority` becomes `host`. Answers: framing and connection
/// headers are dropped, names lowercased, chunked bodies decoded, and a body delimited by the
/// upstream closing ends the stream when the handler says the answer is over.
///
/// Flow control: the client's DATA is credited back (WINDOW_UPDATE) as the handler takes it; while
/// the upstream cannot take more, credit is held, so the client stops within its stream window.
/// Answer bytes queued in the HTTP/2 handler (the client's window is shut, or the connection is
/// not writable) stop the upstream's reads above `queueHigh` bytes.
final class HTTP2ProxyStream {
    let id: HTTP2StreamID
    private unowned let connection: HTTP2ProxyConnection
    /// Set right after creation; dropped when the stream is gone (the handler may outlive it
    /// briefly, in a pending connect).
    var proxy: ProxyHandler?

    // Request side
    private var chunkedRequest = false
    private(set) var requestEnded = false
    /// Flow-controlled bytes not yet credited back on the stream's window (sent in batches).
    private var uncredited = 0
    /// Bytes taken while the handler could not take more: not credited on the connection's
    /// window either until it can.
    private var held = 0
    private var holdingCredit = false

    // Answer side
    private enum Answer {
        case head
        case length(Int)
        case chunked(ChunkedFramer)
        case untilClose
        case done
    }
    private var answer = Answer.head
    /// The trailer fields of a chunked answer, as its framer passed them (checked, and without
    /// the fields a trailer may not carry).
    private var answerTrailers = HPACKHeaders()
    /// DATA bytes written to the HTTP/2 handler and not yet encoded by it.
    private(set) var queuedBytes = 0
    private var queueFull = false
    static let queueHigh = 256 * 1024
    static let queueLow = 64 * 1024
    private var finished = false
    /// The frame with the answer's END_STREAM has left NIOHTTP2's buffers.
    private var endStreamOut = false
    /// The answer is complete but the request is not: RST_STREAM NO_ERROR once END_STREAM is out.
    private var resetWhenAnswered = false

    init(id: HTTP2StreamID, connection: HTTP2ProxyConnection) {
        self.id = id
        self.connection = connection
    }

    var answerComplete: Bool {
        if case .done = answer { return true }
        return false
    }

    // MARK: Request: frames in, HTTP/1.1 bytes to the handler

    /// The request's HEADERS: renders the HTTP/1.1 head and hands it to the handler.
    /// `head` is the connection's scratch buffer, cleared: the handler takes the head from it
    /// before this returns, so the next stream reuses its storage.
    func start(_ headers: HPACKHeaders, endStream: Bool, head: inout ByteBuffer) {
        do {
            chunkedRequest = try Self.renderRequestHead(headers, endStream: endStream, into: &head)
        } catch {
            // Malformed (RFC 9113 §8.1.1): a stream error, and nothing reaches an instance.
            closed()
            connection.reset(id, .protocolError)
            return
        }
        requestEnded = endStream
        proxy?.receive(head)
    }

    /// A DATA frame of the request; `flowControlled` is its size for flow control (with padding).
    func receiveData(_ data: ByteBuffer, endStream: Bool, flowControlled: Int, trailerSection: ByteBuffer? = nil) {
        if let proxy, !finished {
            if chunkedRequest {
                var chunk = ByteBuffer()
                if data.readableBytes > 0 {
                    chunk.reserveCapacity(data.readableBytes + 16)
                    chunk.writeString(String(data.readableBytes, radix: 16))
                    chunk.writeStaticString("\r\n")
                    chunk.writeImmutableBuffer(data)
                    chunk.writeStaticString("\r\n")
                }
                if endStream {
                    chunk.writeStaticString("0\r\n")
                    if let trailerSection { chunk.writeImmutableBuffer(trailerSection) }
                    chunk.writeStaticString("\r\n")
                }
                proxy.receive(chunk)
            } else if data.readableBytes > 0 {
                proxy.receive(data)
            }
        }
        if endStream { requestEnded = true }
        if finished || endStream {
            // Nothing more comes on this stream: only the connection's window needs the bytes back.
            connection.creditConnection(flowControlled + held)
            held = 0
            uncredited = 0
        } else if !holdingCredit, proxy?.takesMoreRequestBytes() ?? true {
            // Taken: back on the connection at once (other streams share its window), on the
            // stream in batches.
            connection.creditConnection(flowControlled)
            uncredited += flowControlled
            if uncredited >= connection.streamCreditThreshold { creditStream() }
        } else {
            holdingCredit = true
            held += flowControlled
            uncredited += flowControlled
        }
    }

    /// Trailing HEADERS of the request: they end it. A chunked upload carries their fields on
    /// to the instance in its trailer section; a sized one cannot, and they are dropped. A
    /// pseudo-header field or a malformed field makes the request malformed (RFC 9113 §8.1):
    /// the stream is reset with PROTOCOL_ERROR and the exchange with the instance abandoned.
    func receiveTrailers(_ headers: HPACKHeaders, endStream: Bool) {
        guard endStream, !requestEnded else { return }
        var section = ByteBuffer()
        for (name, value, _) in headers {
            guard Self.isFieldName(name), Self.isFieldValue(value), !Self.isConnectionSpecific(name) else {
                closed()
                connection.reset(id, .protocolError)
                return
            }
            guard chunkedRequest, !Self.isNotForTrailers(name) else { continue }
            section.writeString(name)
            section.writeStaticString(": ")
            section.writeString(value)
            section.writeStaticString("\r\n")
        }
        receiveData(ByteBuffer(), endStream: true, flowControlled: 0, trailerSection: section)
    }

    /// The handler can take request bytes again: give the held credit back.
    func resumeReads() {
        guard holdingCredit else { return }
        holdingCredit = false
        connection.creditConnection(held)
        held = 0
        if !requestEnded { creditStream() }
    }

    private func creditStream() {
        guard uncredited > 0 else { return }
        connection.creditStream(id, bytes: uncredited)
        uncredited = 0
    }

    /// Why a request's header block is malformed (RFC 9113 §8.2–8.3); the stream is reset with
    /// PROTOCOL_ERROR.
    struct MalformedRequest: Error, Equatable {
        let reason: String
    }

    /// Checks an HTTP/2 request head (RFC 9113 §8.2–8.3) and renders it as an HTTP/1.1 head;
    /// returns whether the body goes chunked (it follows, and no `content-length` gives its size).
    ///
    /// Teal validates here instead of NIOHTTP2, whose header validation (of request and answer
    /// heads) cost more (A/B in `benchmarks/RESULTS.md`: 10.0–12.5 µs user time per request with
    /// these checks, 11.3–13.0 µs with NIOHTTP2's). The rules: field names lowercase tokens,
    /// values without NUL, CR or LF and without surrounding blanks, no connection-specific
    /// fields, `te` only `trailers`, only the four request pseudo-header fields, each once and
    /// before the others, `:method` always, and `:scheme` and a `:path` that starts with `/`
    /// (`*` for OPTIONS) unless CONNECT; the pseudo-header values must fit an HTTP/1.1 request
    /// line. Nothing that could split a line reaches the rendered head, and the proxy handler
    /// then parses it with the HTTP/1.1 rules and refuses what they refuse.
    static func renderRequestHead(_ headers: HPACKHeaders, endStream: Bool, into buffer: inout ByteBuffer) throws(MalformedRequest) -> Bool {
        var method: String?, path: String?, authority: String?, scheme: String?
        var regular = false
        for (name, value, _) in headers {
            guard name.utf8.first == UInt8(ascii: ":") else {
                regular = true
                continue
            }
            guard !regular else { throw MalformedRequest(reason: "pseudo-header field \(name) after a regular field") }
            func once(_ slot: inout String?) throws(MalformedRequest) {
                guard slot == nil else { throw MalformedRequest(reason: "\(name) given twice") }
                guard Self.isRequestLinePart(value) else { throw MalformedRequest(reason: "\(name) has a character a request line cannot carry") }
                slot = value
            }
            switch name {
            case ":method": try once(&method)
            case ":path": try once(&path)
            case ":authority": try once(&authority)
            case ":scheme": try once(&scheme)
            default: throw MalformedRequest(reason: "unknown pseudo-header field \(name)")
            }
        }
        guard let method, method.utf8.allSatisfy(HTTPBytes.isTokenChar) else { throw MalformedRequest(reason: "no valid :method") }
        if method == "CONNECT" {
            guard authority != nil, path == nil, scheme == nil else { throw MalformedRequest(reason: "CONNECT needs :authority only") }
        } else {
            guard scheme != nil, let path, !path.isEmpty else { throw MalformedRequest(reason: "no :scheme or :path") }
            // Origin form, or `*` for OPTIONS (RFC 9113 §8.3.1): an absolute URI here would route
            // by its own authority instead of `:authority`.
            guard path.utf8.first == UInt8(ascii: "/") || (path == "*" && method == "OPTIONS") else {
                throw MalformedRequest(reason: ":path is neither a path nor * for OPTIONS")
            }
        }
        buffer.writeString(method)
        buffer.writeStaticString(" ")
        buffer.writeString(path ?? authority!)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        if let authority {
            buffer.writeStaticString("host: ")
            buffer.writeString(authority)
            buffer.writeStaticString("\r\n")
        }
        var hasLength = false
        var cookies = 0
        for (name, value, _) in headers where name.utf8.first != UInt8(ascii: ":") {
            guard Self.isFieldName(name) else { throw MalformedRequest(reason: "field name \(name) is not a lowercase token") }
            guard Self.isFieldValue(value) else { throw MalformedRequest(reason: "field \(name) has a value with NUL, CR, LF or surrounding blanks") }
            if Self.isConnectionSpecific(name) { throw MalformedRequest(reason: "connection-specific field \(name)") }
            switch name {
            case "te":
                guard value == "trailers" else { throw MalformedRequest(reason: "te other than trailers") }
                continue
            case "host" where authority != nil:
                continue
            case "cookie":
                cookies += 1
                continue
            case "content-length":
                hasLength = true
            default:
                break
            }
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        if cookies > 0 {
            buffer.writeStaticString("cookie: ")
            var first = true
            for (name, value, _) in headers where name == "cookie" {
                if !first { buffer.writeStaticString("; ") }
                first = false
                buffer.writeString(value)
            }
            buffer.writeStaticString("\r\n")
        }
        let chunked = !endStream && !hasLength
        if chunked { buffer.writeStaticString("transfer-encoding: chunked\r\n") }
        buffer.writeStaticString("\r\n")
        return chunked
    }

    /// A lowercase token (RFC 9113 §8.2.1: uppercase names are malformed).
    static func isFieldName(_ name: String) -> Bool {
        var any = false
        for byte in name.utf8 {
            guard HTTPBytes.isTokenChar(byte), byte < UInt8(ascii: "A") || byte > UInt8(ascii: "Z") else { return false }
            any = true
        }
        return any
    }

    /// No NUL, CR or LF, and no blank at either end (RFC 9113 §8.2.1).
    static func isFieldValue(_ value: String) -> Bool {
        let bytes = value.utf8
        if let first = bytes.first, first == HTTPBytes.sp || first == HTTPBytes.htab { return false }
        if let last = bytes.last, last == HTTPBytes.sp || last == HTTPBytes.htab { return false }
        return !bytes.contains { $0 == 0 || $0 == HTTPBytes.cr || $0 == HTTPBytes.lf }
    }

    /// Visible characters only (no blank or control): fits a request line or a host field.
    static func isRequestLinePart(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 > 0x20 && $0 != 0x7F }
    }

    // MARK: Answer: parsed head and body bytes from the handler, frames out

    /// The upstream's answer head (already checked by the data plane's parser).
    func responseHead(_ head: ResponseHead, bytes: ByteBuffer, setCookie: String? = nil) {
        var headers = Self.responseHeaders(head, bytes: bytes)
        if let setCookie { headers.add(name: "set-cookie", value: setCookie) }
        var endStream = false
        switch head.framing {
        case .none, .length(0):
            answer = .done
            endStream = true
        case .length(let length):
            answer = .length(Int(length))
        case .chunked:
            answer = .chunked(ChunkedFramer())
        case .untilClose:
            answer = .untilClose
        }
        connection.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: endStream))))
    }

    /// An interim (1xx) answer from the upstream, such as 100 Continue or 103 Early Hints:
    /// HEADERS without END_STREAM, before the final answer (RFC 9113 §8.1).
    func interimResponse(_ head: ResponseHead, bytes: ByteBuffer) {
        guard case .head = answer, head.status != 101 else { return }
        connection.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: Self.responseHeaders(head, bytes: bytes), endStream: false))))
    }

    /// The HTTP/2 header block for an HTTP/1.1 answer head: `:status`, then every field the
    /// proxy forwards except message framing, with names lowercased.
    static func responseHeaders(_ head: ResponseHead, bytes: ByteBuffer) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.reserveCapacity(12)
        headers.add(name: ":status", value: String(head.status))
        bytes.withUnsafeReadableBytes { raw in
            head.headers.forEach(raw) { index, name, value in
                guard !head.headers.isDropped(line: index),
                      !(name.count == 17 && HTTPBytes.equalsIgnoringCase(raw, name, "transfer-encoding")) else { return }
                let lowered = String(unsafeUninitializedCapacity: name.count) { out in
                    for (offset, position) in name.enumerated() { out[offset] = HTTPBytes.lower(raw[position]) }
                    return name.count
                }
                headers.add(name: lowered, value: String(decoding: raw[value], as: UTF8.self))
            }
        }
        return headers
    }

    /// A trailer field line of a chunked answer (checked by its framer) as an HTTP/2 field: the
    /// name lowercased, the value trimmed.
    static func trailerField(_ line: [UInt8]) -> (name: String, value: String) {
        line.withUnsafeBytes { raw in
            let colon = raw.firstIndex(of: HTTPBytes.colon) ?? raw.count
            let name = String(decoding: raw[..<colon].map(HTTPBytes.lower), as: UTF8.self)
            let value = HTTPBytes.trimmed(raw, min(colon + 1, raw.count)..<raw.count)
            return (name, String(decoding: raw[value], as: UTF8.self))
        }
    }

    /// A field HTTP/2 forbids in any field section (RFC 9113 §8.2.2).
    static func isConnectionSpecific(_ name: String) -> Bool {
        switch name {
        case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade": true
        default: false
        }
    }

    /// A field not forwarded in trailers either way (`TrailerRules`), and the connection-specific
    /// ones.
    static func isNotForTrailers(_ name: String) -> Bool {
        TrailerRules.isDropped(name.utf8) || isConnectionSpecific(name)
    }

    /// Answer body bytes as the upstream sent them (still chunk-framed when chunked).
    func responseBody(_ bytes: ByteBuffer) {
        switch answer {
        case .length(let remaining):
            let count = min(remaining, bytes.readableBytes)
            answer = count == remaining ? .done : .length(remaining - count)
            writeData(bytes.getSlice(at: bytes.readerIndex, length: count)!, endStream: count == remaining)
        case .chunked(var framer):
            var data: ByteBuffer?
            let start = bytes.readerIndex
            var trailers = answerTrailers
            answerTrailers = [:]
            let used = try? bytes.withUnsafeReadableBytes { raw in
                try framer.consume(raw) { piece in
                    switch piece {
                    case .data(let range):
                        var slice = bytes.getSlice(at: start + range.lowerBound, length: range.count)!
                        if data == nil { data = slice } else { data!.writeBuffer(&slice) }
                    case .trailerField(let line):
                        let field = Self.trailerField(line)
                        if !Self.isConnectionSpecific(field.name) { trailers.add(name: field.name, value: field.value) }
                    case .verbatim, .sizeLine, .crlf:
                        break
                    }
                }
            }
            guard used != nil else {
                // The upstream connection checked this framing already; should it differ, cut the
                // answer off rather than guess.
                answer = .head
                return
            }
            answer = framer.isDone ? .done : .chunked(framer)
            if !framer.isDone { answerTrailers = trailers }
            let endsWithTrailers = framer.isDone && !trailers.isEmpty
            if data != nil || (framer.isDone && !endsWithTrailers) {
                writeData(data ?? ByteBuffer(), endStream: framer.isDone && !endsWithTrailers)
            }
            if endsWithTrailers {
                connection.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: trailers, endStream: true))))
            }
        case .untilClose:
            writeData(bytes, endStream: false)
        case .head, .done:
            break
        }
    }

    /// The handler has the whole answer: end the stream if its framing did not already.
    func responseEnd() {
        guard case .untilClose = answer else { return }
        answer = .done
        writeData(ByteBuffer(), endStream: true)
    }

    /// An error answer of Teal's.
    func respond(_ error: ProxyError, includeBody: Bool) {
        guard case .head = answer else { return }
        let body = error.body
        let headers: HPACKHeaders = [
            ":status": String(error.status), "content-type": ProxyError.contentType,
            "content-length": String(body.utf8.count), "x-teal-error": error.name,
        ]
        answer = .done
        connection.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: !includeBody))))
        if includeBody { writeData(ByteBuffer(string: body), endStream: true) }
    }

    private func writeData(_ data: ByteBuffer, endStream: Bool) {
        queuedBytes += data.readableBytes
        connection.write(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(data), endStream: endStream))))
        if !queueFull && queuedBytes > Self.queueHigh {
            queueFull = true
            updateWritability()
        }
    }

    /// The HTTP/2 handler is writing the frame that ends the answer (END_STREAM).
    func endStreamWritten() {
        endStreamOut = true
        guard resetWhenAnswered else { return }
        resetWhenAnswered = false
        connection.resetAfterThisFrame(id, .noError)
    }

    /// The HTTP/2 handler encoded `count` DATA bytes of this stream (sent them on), in a frame
    /// that ends the answer when `endStream`.
    func sent(_ count: Int, endStream: Bool) {
        if endStream { endStreamWritten() }
        queuedBytes -= count
        if queueFull && queuedBytes <= Self.queueLow {
            queueFull = false
            updateWritability()
        }
    }

    func updateWritability() {
        proxy?.clientWritabilityChanged(connection.isWritable && !queueFull)
    }

    func flush() {
        connection.flush()
    }

    // MARK: End

    /// The handler is done with the stream: a cut-off answer resets it; an answer given before the
    /// request body ended stops the upload (RST_STREAM NO_ERROR, RFC 9113 §8.1).
    func close() {
        guard !finished else { return }
        finished = true
        proxy = nil
        if !answerComplete {
            connection.reset(id, .internalError)
        } else if !requestEnded {
            // A complete answer before the whole request: ask the client to stop sending (RFC
            // 9113 §8.1), but only after the answer's last frame is out. NIOHTTP2 drops a
            // stream's buffered DATA when RST_STREAM is written, so an earlier reset would cut
            // the answer's body off.
            if endStreamOut { connection.reset(id, .noError) } else { resetWhenAnswered = true }
        }
        connection.creditConnection(held)
        held = 0
        connection.flush()
    }

    /// NIOHTTP2 closed the stream: a reset either way, the connection gone, or both sides ended.
    /// NIOHTTP2 says so from inside the write of the last frame, so an answer that is complete is
    /// left to the handler to finish (count it, give its upstream connection back); otherwise the
    /// handler drops what is in flight.
    func closed() {
        guard let proxy, !answerComplete else { return }
        finished = true
        self.proxy = nil
        proxy.clientGone()
    }
}
