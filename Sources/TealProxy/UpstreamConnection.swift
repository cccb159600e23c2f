import NIOCore
import TealCore

/// One connection to an upstream instance. Parses response heads in place, tracks the body's
/// framing to know when the response ends, and hands bytes to the client connection that owns it
/// (`ProxyHandler`). Reads are held back while the client cannot take more (backpressure).
final class UpstreamConnection: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        /// In the pool or between requests: no response is expected.
        case idle
        /// A request was sent; waiting for (more of) the response head.
        case awaitingHead
        /// Forwarding the response body.
        case body(BodyTracker)
        /// Raw bytes both ways after 101 Switching Protocols.
        case tunnel
        case closed
    }

    let upstream: Upstream
    private var context: ChannelHandlerContext?
    private(set) var phase = Phase.idle
    /// The client connection the current exchange belongs to.
    var client: ProxyHandler?
    /// When the connection was put back in the pool.
    var idleSince = NIODeadline.now()
    /// Requests this connection has carried; above 0 means it is a reused connection.
    private(set) var requestCount = 0
    /// Whether any response byte arrived for the current request.
    private(set) var receivedResponseBytes = false
    private var headBuffer: ByteBuffer?
    private var reusable = true
    private var readPending = false
    private var requestIsHead = false
    /// The client written to during this read burst, flushed at read-complete (the exchange may
    /// have ended and detached it by then).
    private var clientToFlush: ProxyHandler?

    init(upstream: Upstream) {
        self.upstream = upstream
    }

    /// Whether the connection can take a new request now.
    var isReusable: Bool {
        if case .idle = phase, reusable, context != nil { return true }
        return false
    }

    /// The channel's writability, kept from writability events.
    private(set) var isWritable = true

    /// Whether a response is (partly) still to come.
    var phaseExpectsResponse: Bool {
        switch phase {
        case .awaitingHead, .body, .tunnel: true
        case .idle, .closed: false
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    // MARK: Driven by the client connection

    /// Starts a request: `head` is the rewritten request head.
    func send(head: ByteBuffer, for client: ProxyHandler, isHead: Bool) {
        self.client = client
        requestCount += 1
        receivedResponseBytes = false
        requestIsHead = isHead
        phase = .awaitingHead
        context?.write(wrapOutboundOut(head), promise: nil)
    }

    /// Writes request body bytes (or tunnel bytes).
    func write(_ bytes: ByteBuffer) {
        context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    /// The connection will not be reused (the request was cut short, or the exchange failed).
    func markUnusable() {
        reusable = false
    }

    func close() {
        reusable = false
        if case .closed = phase { return }
        context?.close(promise: nil)
    }

    /// The client can take bytes again: let reads through.
    func resumeReads() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    // MARK: Channel events

    func read(context: ChannelHandlerContext) {
        if let client, !client.canTakeResponseBytes {
            readPending = true
            return
        }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if clientToFlush == nil { clientToFlush = client }
        switch phase {
        case .idle, .closed:
            // Bytes nobody asked for: the connection is out of step; drop it.
            reusable = false
            context.close(promise: nil)
        case .tunnel:
            client?.upstreamTunnelBytes(bytes)
        case .awaitingHead, .body:
            receivedResponseBytes = true
            processResponse(&bytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        clientToFlush?.flushToClient()
        clientToFlush = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        let previous = phase
        phase = .closed
        reusable = false
        guard let client else { return }
        switch previous {
        case .body(let tracker) where tracker.untilClose:
            self.client = nil
            client.upstreamResponseEnd(from: self, reusable: false)
        case .awaitingHead, .body:
            self.client = nil
            client.upstreamFailed(from: self, reason: .closed)
        case .tunnel:
            self.client = nil
            client.upstreamTunnelClosed()
        case .idle, .closed:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        client?.upstreamWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        reusable = false
        context.close(promise: nil)
    }

    // MARK: Response parsing

    private func processResponse(_ bytes: inout ByteBuffer) {
        while bytes.readableBytes > 0 {
            switch phase {
            case .awaitingHead:
                guard let head = takeHead(&bytes) else { return }
                handle(head)
                if case .body(let tracker) = phase, tracker.isDone { finishResponse(overrun: &bytes) }
            case .body(var tracker):
                do {
                    try tracker.forward(&bytes) { client?.upstreamResponseBody($0) }
                } catch {
                    fail(.invalidResponse)
                    return
                }
                phase = .body(tracker)
                if tracker.isDone { finishResponse(overrun: &bytes) }
            case .tunnel:
                client?.upstreamTunnelBytes(bytes)
                return
            case .idle:
                // Bytes after a complete response, in a later read: the upstream broke framing.
                countOverrun()
                bytes.moveReaderIndex(to: bytes.writerIndex)
                close()
                return
            case .closed:
                return
            }
        }
    }

    /// Collects bytes until a whole head is there, then parses it. On success `bytes` keeps what
    /// follows the head.
    private func takeHead(_ bytes: inout ByteBuffer) -> (ResponseHead, ByteBuffer)? {
        var source: ByteBuffer
        if var pending = headBuffer {
            pending.writeBuffer(&bytes)
            source = pending
            headBuffer = nil
        } else {
            source = bytes
        }
        let scanned = source.withUnsafeReadableBytes { raw -> Result<ResponseHead, RequestHeadError>? in
            guard let end = HTTPBytes.findHeadEnd(raw, from: 0) else { return nil }
            return Result { () throws(RequestHeadError) in try ResponseHead.parse(raw, headEnd: end, requestIsHead: requestIsHead) }
        }
        switch scanned {
        case nil:
            if source.readableBytes > 64 * 1024 {
                fail(.invalidResponse)
            } else {
                headBuffer = source
            }
            bytes.moveReaderIndex(to: bytes.writerIndex)
            return nil
        case .failure:
            bytes.moveReaderIndex(to: bytes.writerIndex)
            fail(.invalidResponse)
            return nil
        case .success(let head):
            let headBytes = source.readSlice(length: head.headers.headEnd)!
            bytes = source
            return (head, headBytes)
        }
    }

    private func handle(_ parsed: (ResponseHead, ByteBuffer)) {
        let (head, headBytes) = parsed
        if head.isInterim {
            client?.upstreamInterimResponse(head, bytes: headBytes)
            return  // stay in awaitingHead
        }
        if head.status == 101 {
            if client?.upstreamSwitchingProtocols(head, bytes: headBytes) == true {
                phase = .tunnel
            } else {
                fail(.invalidResponse)
            }
            return
        }
        if !head.upstreamKeepAlive { reusable = false }
        phase = .body(BodyTracker(head.framing))
        client?.upstreamResponseHead(head, bytes: headBytes)
    }

    /// The response is complete. Bytes left in `bytes` are past its end (a body on a 204, 304 or
    /// HEAD answer, more than Content-Length, or after the last chunk): they are dropped, never
    /// read as the next answer, and the connection is closed rather than reused.
    private func finishResponse(overrun bytes: inout ByteBuffer) {
        if bytes.readableBytes > 0 {
            countOverrun()
            reusable = false
            bytes.moveReaderIndex(to: bytes.writerIndex)
        }
        phase = .idle
        headBuffer = nil
        let client = self.client
        self.client = nil
        client?.upstreamResponseEnd(from: self, reusable: reusable)
    }

    private func countOverrun() {
        upstream.answerOverruns.add(1, ordering: .relaxed)
    }

    private func fail(_ reason: UpstreamFailure) {
        reusable = false
        let client = self.client
        self.client = nil
        phase = .closed
        context?.close(promise: nil)
        client?.upstreamFailed(from: self, reason: reason)
    }
}

/// Why an exchange with an upstream failed.
enum UpstreamFailure: Error {
    case connectRefused
    case connectTimeout
    case closed
    case invalidResponse
    case timeout
}
