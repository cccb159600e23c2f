import NIOCore
import NIOHTTP1

/// Puts an HTTP/2 stream in front of a `ProxyHandler`: the stream's request (as NIOHTTP2's
/// HTTP/1-style parts) is written to the handler as HTTP/1.1 bytes, and the HTTP/1.1 answer the
/// handler writes back is parsed into response parts for the stream. So every stream goes through
/// the same routing, split, statistics, timeouts and upstream pools as an HTTP/1.1 request.
///
/// Requests: a body without `content-length` is sent chunked; hop-by-hop headers never come from
/// HTTP/2. Answers: framing headers (`connection`, `keep-alive`, `transfer-encoding`, …) are
/// dropped, chunked bodies are decoded, interim 1xx answers are dropped, and a body delimited by
/// the connection's end ends the stream when the handler closes it.
final class HTTP2StreamBridge: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTPServerResponsePart

    private enum Answer {
        case head
        case length(Int)
        case chunked(ChunkedFramer)
        case untilClose
        case done
    }

    private var pendingHead: HTTPRequestHead?
    private var chunkedRequest = false
    private var requestIsHEAD = false
    private var answer = Answer.head
    private var pending: ByteBuffer?

    /// Header names that describe an HTTP/1.1 connection or message framing, not the message.
    static let connectionHeaders: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"]

    // MARK: Request: parts in, HTTP/1.1 bytes out

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            requestIsHEAD = head.method == .HEAD
            if head.headers.contains(name: "content-length") {
                sendHead(head, chunked: false, context: context)
            } else {
                pendingHead = head  // a body follows or not: the next part says
            }
        case .body(let body):
            if let head = pendingHead { sendHead(head, chunked: true, context: context) }
            guard chunkedRequest else { return context.fireChannelRead(wrapInboundOut(body)) }
            var chunk = context.channel.allocator.buffer(capacity: body.readableBytes + 16)
            chunk.writeString(String(body.readableBytes, radix: 16))
            chunk.writeStaticString("\r\n")
            chunk.writeImmutableBuffer(body)
            chunk.writeStaticString("\r\n")
            context.fireChannelRead(wrapInboundOut(chunk))
        case .end:
            if let head = pendingHead { sendHead(head, chunked: false, context: context) }
            if chunkedRequest {
                context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(staticString: "0\r\n\r\n")))
            }
        }
    }

    private func sendHead(_ head: HTTPRequestHead, chunked: Bool, context: ChannelHandlerContext) {
        pendingHead = nil
        chunkedRequest = chunked
        var buffer = context.channel.allocator.buffer(capacity: 256)
        buffer.writeString(head.method.rawValue)
        buffer.writeStaticString(" ")
        buffer.writeString(head.uri)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        // HTTP/2 header names are lowercase (NIOHTTP2 refuses others), so no case folding here.
        for (name, value) in head.headers where !Self.connectionHeaders.contains(name) {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        if chunked { buffer.writeStaticString("transfer-encoding: chunked\r\n") }
        buffer.writeStaticString("\r\n")
        context.fireChannelRead(wrapInboundOut(buffer))
    }

    // MARK: Answer: HTTP/1.1 bytes in, parts out

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var bytes = unwrapOutboundIn(data)
        if var buffered = pending {
            buffered.writeBuffer(&bytes)
            bytes = buffered
            pending = nil
        }
        var parts: [HTTPServerResponsePart] = []
        func emit(_ part: HTTPServerResponsePart) { parts.append(part) }
        loop: while true {
            switch answer {
            case .head:
                guard let (head, framing) = Self.parseHead(&bytes, requestIsHEAD: requestIsHEAD) else {
                    if bytes.readableBytes > 0 { pending = bytes }
                    break loop
                }
                let status = head.status.code
                if status >= 100 && status < 200 { continue }  // interim answers are not forwarded
                emit(.head(head))
                switch framing {
                case .none, .length(0):
                    emit(.end(nil))
                    answer = .done
                case .length(let length):
                    answer = .length(Int(length))
                case .chunked:
                    answer = .chunked(ChunkedFramer())
                case .untilClose:
                    answer = .untilClose
                }
            case .length(let remaining):
                guard bytes.readableBytes > 0 else { break loop }
                let count = min(remaining, bytes.readableBytes)
                emit(.body(.byteBuffer(bytes.readSlice(length: count)!)))
                if count == remaining {
                    emit(.end(nil))
                    answer = .done
                } else {
                    answer = .length(remaining - count)
                }
            case .chunked(var framer):
                guard bytes.readableBytes > 0 else { break loop }
                // The chunks' data, gathered into one body part per write.
                var data: ByteBuffer?
                let start = bytes.readerIndex
                let used = try? bytes.withUnsafeReadableBytes { raw in
                    try framer.consume(raw) { range in
                        var slice = bytes.getSlice(at: start + range.lowerBound, length: range.count)!
                        if data == nil { data = slice } else { data!.writeBuffer(&slice) }
                    }
                }
                guard let used else {
                    // ProxyHandler checked the instance's framing; this cannot happen. End the stream.
                    answer = .done
                    context.close(promise: nil)
                    break loop
                }
                bytes.moveReaderIndex(forwardBy: used)
                if let data { emit(.body(.byteBuffer(data))) }
                if framer.isDone {
                    emit(.end(nil))
                    answer = .done
                } else {
                    answer = .chunked(framer)
                }
            case .untilClose:
                guard bytes.readableBytes > 0 else { break loop }
                emit(.body(.byteBuffer(bytes)))
                break loop
            case .done:
                break loop
            }
        }
        guard let last = parts.popLast() else {
            promise?.succeed()
            return
        }
        for part in parts { context.write(wrapOutboundOut(part), promise: nil) }
        context.write(wrapOutboundOut(last), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if case .untilClose = answer {
            // The answer's body ended with the connection: end the stream instead.
            answer = .done
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
            return
        }
        context.close(mode: mode, promise: promise)
    }

    /// Parses the HTTP/1.1 response head at the front of `bytes` (consuming it) with the data
    /// plane's parser: the head for HTTP/2 (framing and connection headers dropped) and the body's
    /// framing; `nil` when the head is not complete yet. Heads come from `ProxyHandler`, which
    /// already checked them; one that does not parse becomes a 502.
    static func parseHead(_ bytes: inout ByteBuffer, requestIsHEAD: Bool) -> (HTTPResponseHead, BodyFraming)? {
        let parsed = bytes.withUnsafeReadableBytes { raw -> (HTTPResponseHead, BodyFraming, Int)? in
            guard let end = HTTPBytes.findHeadEnd(raw, from: 0) else { return nil }
            guard let head = try? ResponseHead.parse(raw, headEnd: end, requestIsHead: requestIsHEAD) else {
                return (HTTPResponseHead(version: .http1_1, status: .badGateway), .none, end)
            }
            var headers = HTTPHeaders()
            head.headers.forEach(raw) { _, name, value in
                let name = String(decoding: raw[name], as: UTF8.self)
                guard !connectionHeaders.contains(name.lowercased()) else { return }
                headers.add(name: name, value: String(decoding: raw[value], as: UTF8.self))
            }
            return (HTTPResponseHead(version: .http1_1, status: .init(statusCode: head.status), headers: headers), head.framing, end)
        }
        guard let (head, framing, end) = parsed else { return nil }
        bytes.moveReaderIndex(forwardBy: end)
        return (head, framing)
    }
}

/// On a plain connection, tells HTTP/2 with prior knowledge (the connection opens with the
/// client preface `PRI * HTTP/2.0…`) from HTTP/1.1 by its first bytes, lets `configure` set up the
/// pipeline after it, hands the bytes read so far on and leaves.
final class HTTP2PrefaceDetector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    private let configure: (Bool, any Channel) -> EventLoopFuture<Void>
    private var buffered: ByteBuffer?
    private var decided = false

    init(configure: @escaping (Bool, any Channel) -> EventLoopFuture<Void>) {
        self.configure = configure
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard !decided else { return context.fireChannelRead(wrapInboundOut(bytes)) }
        if var earlier = buffered {
            earlier.writeBuffer(&bytes)
            bytes = earlier
        }
        let count = min(bytes.readableBytes, Self.preface.count)
        let matches = bytes.withUnsafeReadableBytes { raw in raw.prefix(count).elementsEqual(Self.preface.prefix(count)) }
        guard !matches || count == Self.preface.count else {
            buffered = bytes  // still could be either
            return
        }
        decided = true
        buffered = nil
        let isHTTP2 = matches
        let channel = context.channel
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        configure(isHTTP2, channel).whenComplete { result in
            let (detector, context) = bound.value
            switch result {
            case .success:
                context.fireChannelRead(detector.wrapInboundOut(bytes))
                context.fireChannelReadComplete()
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            case .failure:
                context.close(promise: nil)
            }
        }
    }
}
