import NIOCore
import NIOHPACK
import NIOHTTP2

/// The proxy's side of an HTTP/2 client connection, after `NIOHTTP2Handler` (which parses,
/// validates and encodes frames, keeps the streams' states and enforces the limits): each stream
/// is an `HTTP2ProxyStream` with its own `ProxyHandler`, with no child channel or pipeline per
/// stream. Besides, it gives flow-control credit back (the handler leaves that to its user),
/// gathers the flushes of one event-loop tick into one write, closes a connection left idle or
/// abused, and on quiescing sends GOAWAY and closes once the streams in flight are answered.
final class HTTP2ProxyConnection: ChannelDuplexHandler, NIOHTTP2FrameDelegate, DeadlineHolder {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let loop: LoopContext
    private let limits: HTTP2Limits
    private let isTLS: Bool
    private var context: ChannelHandlerContext?
    private var streams: [HTTP2StreamID: HTTP2ProxyStream] = [:]
    private var clientAddress: [UInt8] = []
    private let emptyBuffer = ByteBuffer()
    /// Where each stream's request head is rendered as HTTP/1.1 (one buffer for all of them).
    private var requestHeads = ByteBuffer()
    /// The connection's writability, kept from events.
    private(set) var isWritable = true
    /// Request bytes taken by the streams and not yet credited back on the connection window.
    private var connectionUncredited = 0
    private var raisedConnectionWindow = false
    private var flushScheduled = false
    private var goingAway = false
    private var closeScheduled = false
    private var lastStreamID = HTTP2StreamID.rootStream
    private(set) var deadline = NIODeadline.distantFuture
    var registryIndex = -1
    /// A stream's credit goes back once this many of its bytes were taken.
    let streamCreditThreshold: Int

    init(loop: LoopContext, limits: HTTP2Limits, isTLS: Bool) {
        self.loop = loop
        self.limits = limits
        self.isTLS = isTLS
        self.streamCreditThreshold = max(1, limits.streamWindow / 4)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { activate(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        activate(context)
        context.fireChannelActive()
    }

    private func activate(_ context: ChannelHandlerContext) {
        guard registryIndex < 0 else { return }
        if let ip = context.channel.remoteAddress?.ipAddress { clientAddress = Array(ip.utf8) }
        isWritable = context.channel.isWritable
        loop.register(self)
        armIdleDeadline()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if !raisedConnectionWindow {
            // The client's preface is in: open the connection window from RFC 9113's 65,535 to ours.
            raisedConnectionWindow = true
            let increment = limits.connectionWindow - 65_535
            if increment > 0 { write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))) }
            flush()
        }
        switch frame.payload {
        case .headers(let headers):
            if let stream = streams[frame.streamID] {
                stream.receiveTrailers(headers.headers, endStream: headers.endStream)
            } else {
                open(frame.streamID, headers, context: context)
            }
        case .data(let data):
            guard case .byteBuffer(let bytes) = data.data else { return }
            // Flow control counts the whole payload: data, padding and the pad-length byte.
            let size = bytes.readableBytes + (data.paddingBytes.map { $0 + 1 } ?? 0)
            if let stream = streams[frame.streamID] {
                stream.receiveData(bytes, endStream: data.endStream, flowControlled: size)
            } else {
                creditConnection(size)
            }
        default:
            break  // settings, pings, window updates, resets and GOAWAY are NIOHTTP2's business
        }
    }

    private func open(_ id: HTTP2StreamID, _ headers: HTTP2Frame.FramePayload.Headers, context: ChannelHandlerContext) {
        guard !goingAway else {
            reset(id, .refusedStream)
            return
        }
        if id > lastStreamID { lastStreamID = id }
        let stream = HTTP2ProxyStream(id: id, connection: self)
        stream.proxy = ProxyHandler(loop: loop, stream: stream, clientAddress: clientAddress, isTLS: isTLS,
                                    emptyBuffer: emptyBuffer, allocator: context.channel.allocator)
        streams[id] = stream
        deadline = .distantFuture
        if !isWritable { stream.updateWritability() }
        requestHeads.clear()
        stream.start(headers.headers, endStream: headers.endStream, head: &requestHeads)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // NIOHTTP2 sends several events per stream that nothing after this handler needs; a
        // type comparison drops them without a dynamic cast per candidate type.
        let type = ObjectIdentifier(Swift.type(of: event))
        if type == Self.streamCreated || type == Self.windowUpdated || type == Self.bulkWindowChange { return }
        switch event {
        case let closed as StreamClosedEvent:
            guard let stream = streams.removeValue(forKey: closed.streamID) else { return }
            stream.closed()
            if streams.isEmpty {
                if goingAway { closeAfterFlush(context) } else { armIdleDeadline() }
            }
        case is ChannelShouldQuiesceEvent:
            goAway()
        case let channelEvent as ChannelEvent where channelEvent == .inputClosed:
            // An h2c client shut its sending side: it can send no more window updates or
            // requests, so the connection ends.
            context.close(promise: nil)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    private static let streamCreated = ObjectIdentifier(NIOHTTP2StreamCreatedEvent.self)
    private static let windowUpdated = ObjectIdentifier(NIOHTTP2WindowUpdatedEvent.self)
    private static let bulkWindowChange = ObjectIdentifier(NIOHTTP2BulkStreamWindowChangeEvent.self)

    func channelInactive(context: ChannelHandlerContext) {
        let remaining = streams.values
        streams = [:]
        for stream in remaining { stream.closed() }
        loop.unregister(self)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        for stream in streams.values { stream.updateWritability() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: NIOHTTP2FrameDelegate

    func wroteFrame(_ frame: HTTP2Frame) {
        switch frame.payload {
        case .data(let data):
            streams[frame.streamID]?.sent(data.data.readableBytes, endStream: data.endStream)
        case .headers(let headers) where headers.endStream:
            streams[frame.streamID]?.endStreamWritten()
        case .goAway(_, let code, _) where code != .noError:
            // Only NIOHTTP2 sends GOAWAY with an error (Teal's own say NO_ERROR): a connection
            // error, after which the connection must close (RFC 9113 §5.4.1). That covers the
            // abusers NIOHTTP2 catches (a rapid-reset flood, CVE-2023-44487; floods of control,
            // empty DATA or CONTINUATION frames; too many stream errors or glitches) and any
            // frame that breaks the protocol; left open, such a connection would linger.
            if let context { closeAfterFlush(context) }
        default:
            break
        }
    }

    // MARK: Used by the streams

    func write(_ frame: HTTP2Frame) {
        context?.write(wrapOutboundOut(frame), promise: nil)
    }

    /// Ends a stream with RST_STREAM.
    func reset(_ id: HTTP2StreamID, _ code: HTTP2ErrorCode) {
        write(HTTP2Frame(streamID: id, payload: .rstStream(code)))
        flush()
    }

    /// `reset` once NIOHTTP2 is done writing the frame it is writing now (called from inside
    /// that write), unless the stream has closed by then.
    func resetAfterThisFrame(_ id: HTTP2StreamID, _ code: HTTP2ErrorCode) {
        guard let context else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let connection = bound.value
            guard connection.streams[id] != nil else { return }
            connection.reset(id, code)
        }
    }

    /// Gives back connection-window credit for request bytes taken (or dropped), in batches of
    /// a quarter of the window.
    func creditConnection(_ bytes: Int) {
        guard bytes > 0 else { return }
        connectionUncredited += bytes
        guard connectionUncredited >= limits.connectionWindow / 4 else { return }
        write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionUncredited)))
        connectionUncredited = 0
        flush()
    }

    /// Gives back a stream's window credit.
    func creditStream(_ id: HTTP2StreamID, bytes: Int) {
        write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: bytes)))
        flush()
    }

    /// Flushes at the end of this event-loop tick: streams answer from their own upstreams'
    /// reads, and one TLS write for all of them beats one each.
    func flush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let connection = bound.value
            connection.flushScheduled = false
            connection.context?.flush()
        }
    }

    // MARK: Idle and draining

    /// Closes at the end of this tick, after flushing what was written: NIOHTTP2 reports a stream
    /// closed, or an abusive client, from inside its own frame processing, before a flush.
    private func closeAfterFlush(_ context: ChannelHandlerContext) {
        guard !closeScheduled else { return }
        closeScheduled = true
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            bound.value.flush()
            bound.value.close(promise: nil)
        }
    }

    private func armIdleDeadline() {
        deadline = loop.coarseNow + loop.configuration.clientIdleTimeout
    }

    func deadlinePassed() {
        deadline = .distantFuture
        guard streams.isEmpty else { return }
        goAway()
    }

    /// GOAWAY with the last stream taken; the connection closes when the streams in flight end.
    private func goAway() {
        guard !goingAway, let context else { return }
        goingAway = true
        write(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil)))
        context.flush()
        if streams.isEmpty { context.close(promise: nil) }
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
        let received = bytes
        configure(isHTTP2, channel).whenComplete { result in
            let (detector, context) = bound.value
            switch result {
            case .success:
                context.fireChannelRead(detector.wrapInboundOut(received))
                context.fireChannelReadComplete()
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            case .failure:
                context.close(promise: nil)
            }
        }
    }

    /// A client that shuts its sending side before its first bytes show the protocol will send
    /// no request.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !decided, let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
