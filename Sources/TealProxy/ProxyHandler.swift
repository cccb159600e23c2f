import NIOCore
import TealCore

/// The client side of the proxy: one per client connection. Parses request heads in place,
/// routes and picks an instance, forwards the original bytes with the proxy's header edits,
/// streams bodies both ways with backpressure, answers pipelined requests in order, and tunnels
/// after a 101. Runs on the client connection's event loop, as do its upstream connections.
///
/// An HTTP/2 stream gets one too, outside any pipeline: its `HTTP2ProxyStream` feeds it the
/// stream's request as HTTP/1.1 bytes and takes its answer as parsed heads and body bytes, so
/// every stream is routed, split, timed and counted exactly like an HTTP/1.1 request.
final class ProxyHandler: ChannelDuplexHandler, DeadlineHolder {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State {
        /// Between requests, or reading a request head.
        case idle
        /// A request is waiting for an upstream connection.
        case connecting
        /// A request is with an upstream: its body may still be streaming up, its response down.
        case forwarding
        /// Raw bytes both ways after 101 Switching Protocols.
        case tunnel
        case closed
    }

    /// What a timeout means when the deadline passes.
    enum DeadlineKind { case idle, header, requestBody, response }

    /// The request now in progress.
    struct Exchange {
        var route: RouteRuntime?
        var color = PoolColor.blue
        var instance: Upstream?
        var tried: [Int] = []
        var attempts = 0
        var staleRetried = false
        var body = BodyTracker(.none)
        var hasBody = false
        var requestDone = true
        var responseStarted = false
        var status = 0
        var start = NIODeadline.uptimeNanoseconds(0)
        var headLatency: UInt64 = 0
        var isHead = false
        var isIdempotent = false
        var clientKeepAlive = true
        var isHTTP11 = true
        var wantsUpgrade = false
        var closeAfter = false
        /// Safe to send again: GET, HEAD, OPTIONS or an Idempotency-Key, and no body or one kept.
        var retrySafe = false
        /// The request body as it went to green, kept for a retry on blue (bodies up to the
        /// route's `retryOnBlue.maxBody`; `nil` when there is none to keep, or it grew past that).
        var keptBody: ByteBuffer?
        /// Green failed it and it went to blue (once only).
        var retriedOnBlue = false
        /// The answer sets the sticky version cookie (the split placed this request).
        var setsStickyCookie = false
    }

    private let loop: LoopContext
    private var context: ChannelHandlerContext?
    private(set) var state = State.idle
    private var inbound: ByteBuffer
    private let emptyBuffer: ByteBuffer
    private var scanned = 0
    private var readPending = false
    private var clientAddress: [UInt8] = []
    private var quiescing = false
    /// The client shut its sending side (plain listeners): requests already received are
    /// answered, then the connection closes.
    private var clientInputClosed = false
    private var exchange = Exchange()
    private var upstream: UpstreamConnection?
    private var requestHead: ByteBuffer
    private var responseHead: ByteBuffer
    /// The response head is built but not written yet: a small body that follows in the same
    /// read is appended to it, so head and body go out as one write.
    private var responseHeadPending = false
    static let maxMergedBody = 4096
    private var upstreamNeedsFlush = false
    private var clientNeedsFlush = false
    /// When the current wait times out (coarse, checked by the loop's sweep).
    private(set) var deadline = NIODeadline.distantFuture
    private var deadlineKind = DeadlineKind.idle
    /// Position in the loop's list of connections (kept by `LoopContext`).
    var registryIndex = -1

    /// The client connection is TLS (`X-Forwarded-Proto: https`).
    private let isTLS: Bool
    /// The HTTP/2 stream this handler serves, when it serves one (then it has no channel of its
    /// own, answers one request and ends with it).
    private let stream: HTTP2ProxyStream?

    init(loop: LoopContext, allocator: ByteBufferAllocator, isTLS: Bool = false) {
        self.loop = loop
        self.isTLS = isTLS
        self.stream = nil
        self.emptyBuffer = allocator.buffer(capacity: 0)
        self.inbound = emptyBuffer
        self.requestHead = allocator.buffer(capacity: 1024)
        self.responseHead = allocator.buffer(capacity: 512)
    }

    /// A handler for one HTTP/2 stream of a connection from `clientAddress`.
    init(loop: LoopContext, stream: HTTP2ProxyStream, clientAddress: [UInt8], isTLS: Bool, emptyBuffer: ByteBuffer, allocator: ByteBufferAllocator) {
        self.loop = loop
        self.isTLS = isTLS
        self.stream = stream
        self.emptyBuffer = emptyBuffer
        self.inbound = emptyBuffer
        self.requestHead = allocator.buffer(capacity: 512)
        self.responseHead = emptyBuffer
        self.clientAddress = clientAddress
        activated = true
        loop.register(self)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Added to a connection that is already active (after TLS and ALPN): start now, no
        // channelActive will come.
        if context.channel.isActive { activate(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        activate(context)
        context.fireChannelActive()
    }

    private var activated = false

    /// Takes the client's address, joins the loop's deadline sweep, arms the idle deadline.
    private func activate(_ context: ChannelHandlerContext) {
        guard !activated else { return }
        activated = true
        if let ip = context.channel.remoteAddress?.ipAddress { clientAddress = Array(ip.utf8) }
        loop.register(self)
        setDeadline(.idle, after: loop.configuration.clientIdleTimeout)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receive(unwrapInboundIn(data))
    }

    /// Request bytes from the client (for a stream: its request rendered as HTTP/1.1).
    func receive(_ bytes: ByteBuffer) {
        var bytes = bytes
        switch state {
        case .tunnel:
            upstream?.write(bytes)
            upstreamNeedsFlush = true
            return
        case .closed:
            return
        case .forwarding where !exchange.requestDone:
            setDeadline(.requestBody, after: loop.configuration.clientIdleTimeout)
        default:
            break
        }
        if inbound.readableBytes == 0 { inbound = bytes } else { inbound.writeBuffer(&bytes) }
        process()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        readComplete()
    }

    /// The end of a burst of client reads: what was written either way goes out.
    func readComplete() {
        flushUpstream()
        flushToClient()
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientGone()
        context.fireChannelInactive()
    }

    /// The client connection closed, or the stream ended or was reset: drop what is in flight.
    func clientGone() {
        guard registryIndex >= 0 || state != .closed else { return }
        let wasTunnel = state == .tunnel
        state = .closed
        loop.unregister(self)
        if let upstream {
            self.upstream = nil
            upstream.client = nil
            if wasTunnel || !exchange.requestDone || upstream.phaseExpectsResponse {
                upstream.close()
            }
        }
        inbound = emptyBuffer
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        canTakeResponseBytes = context.channel.isWritable
        if canTakeResponseBytes { upstream?.resumeReads() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed {
            clientInputClosed = true
            // Idle: what is left in `inbound` is at most part of a head that can no longer come
            // whole. A request in progress is answered first (`finishExchange`), unless its body
            // can no longer come whole either (`closeIfBodyCut`); a tunnel ends.
            if state == .idle || state == .tunnel { closeClient() } else { closeIfBodyCut() }
            return
        }
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            // An idle connection gets a short grace: a request already on its way is answered
            // (with Connection: close) rather than met by a closed connection.
            if state == .idle && inbound.readableBytes == 0 {
                setDeadline(.idle, after: loop.configuration.drainIdleGrace)
            } else {
                exchange.closeAfter = true
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeClient()
    }

    func read(context: ChannelHandlerContext) {
        if shouldRead { context.read() } else { readPending = true }
    }

    // MARK: Backpressure

    private var shouldRead: Bool {
        switch state {
        case .idle: true
        case .connecting: inbound.readableBytes < 64 * 1024
        case .forwarding:
            exchange.requestDone ? inbound.readableBytes < 64 * 1024 : (upstream?.isWritable ?? false)
        case .tunnel: upstream?.isWritable ?? false
        case .closed: false
        }
    }

    private func resumeReadsIfNeeded() {
        guard readPending, shouldRead else { return }
        if let stream {
            readPending = false
            stream.resumeReads()
        } else if let context {
            readPending = false
            context.read()
        }
    }

    /// For a stream: whether it may take more request body now. When not, the stream holds back
    /// its flow-control credit until `HTTP2ProxyStream.resumeReads()` is called.
    func takesMoreRequestBytes() -> Bool {
        if shouldRead { return true }
        readPending = true
        return false
    }

    /// For a stream: whether the client can take more of the answer (the stream's queue in the
    /// HTTP/2 handler is short and the connection is writable).
    func clientWritabilityChanged(_ writable: Bool) {
        canTakeResponseBytes = writable
        if writable { upstream?.resumeReads() }
    }

    /// Whether the client connection can take more response bytes now (its writability, kept
    /// from writability events so the hot path asks the channel nothing).
    private(set) var canTakeResponseBytes = true

    /// The upstream's writability changed: request body bytes may flow again.
    func upstreamWritabilityChanged() {
        resumeReadsIfNeeded()
    }

    // MARK: Requests

    private func process() {
        while true {
            if state == .idle {
                guard startRequest() else { break }
            } else if state == .forwarding && !exchange.requestDone {
                guard forwardRequestBody() else { break }
            } else {
                break
            }
        }
        if inbound.readableBytes == 0 {
            inbound = emptyBuffer
            scanned = 0
        }
        flushUpstream()
        closeIfBodyCut()
        // Reads held back while the request waited (for a connection, say) may go on now.
        resumeReadsIfNeeded()
    }

    /// A half-closed client whose request body has not all come, with nothing of it left to
    /// forward: it never will, so the exchange ends now rather than at the body deadline.
    private func closeIfBodyCut() {
        guard clientInputClosed, state == .connecting || state == .forwarding,
              !exchange.requestDone, inbound.readableBytes == 0 else { return }
        closeClient()
    }

    /// Tries to read a request head and dispatch it; returns whether it made progress.
    private func startRequest() -> Bool {
        skipEmptyLines()
        guard inbound.readableBytes > 0 else { return false }
        let view = inbound
        let outcome = view.withUnsafeReadableBytes { raw in begin(raw) }
        switch outcome {
        case .incomplete:
            if deadlineKind != .header { setDeadline(.header, after: loop.configuration.headerReadTimeout) }
            return false
        case .reject(let error, let close, let headLength):
            inbound.moveReaderIndex(forwardBy: min(headLength, inbound.readableBytes))
            scanned = 0
            respond(error, close: close)
            guard !close else { return false }
            exchange = Exchange()
            setDeadline(.idle, after: loop.configuration.clientIdleTimeout)
            return true  // go on with the next pipelined request, if any
        case .dispatch(let headLength):
            inbound.moveReaderIndex(forwardBy: headLength)
            scanned = 0
            dispatch()
            return true
        }
    }

    private enum Begin {
        case incomplete
        /// Answer with an error; `headLength` bytes of head are consumed (0 when the connection
        /// closes anyway).
        case reject(ProxyError, close: Bool, headLength: Int = 0)
        case dispatch(headLength: Int)
    }

    /// Parses, routes and picks for the head at the start of `raw`, and writes the upstream head.
    private func begin(_ raw: UnsafeRawBufferPointer) -> Begin {
        let limits = loop.configuration.headLimits
        guard let end = HTTPBytes.findHeadEnd(raw, from: max(0, scanned - 3)) else {
            scanned = raw.count
            if raw.count > limits.maxHeadBytes {
                return .reject(ProxyError(raw.count > limits.maxRequestLineBytes && !raw.contains(HTTPBytes.lf) ? .uriTooLong : .headersTooLarge), close: true)
            }
            return .incomplete
        }
        let head: RequestHead
        do {
            head = try RequestHead.parse(raw, headEnd: end, limits: limits)
        } catch {
            return .reject(ProxyError(error), close: true)
        }
        exchange = Exchange()
        exchange.start = .now()
        exchange.isHead = head.isHead
        exchange.isIdempotent = head.isIdempotent
        exchange.clientKeepAlive = head.isHTTP11 && !head.connectionClose && !quiescing && stream == nil
        exchange.isHTTP11 = head.isHTTP11
        exchange.wantsUpgrade = head.wantsUpgrade
        exchange.body = BodyTracker(head.framing)
        exchange.hasBody = head.framing != .none
        exchange.retrySafe = (head.isSafeMethod || head.hasIdempotencyKey) && !head.wantsUpgrade
        exchange.requestDone = exchange.body.isDone
        let closeOnError = !exchange.clientKeepAlive || exchange.hasBody
        if head.isConnect { return .reject(.methodNotAllowed, close: closeOnError, headLength: end) }
        let snapshot = loop.snapshot
        let hostRange = head.authority(raw) ?? head.host ?? 0..<0
        let host = UnsafeRawBufferPointer(rebasing: raw[hostRange])
        guard let routeIndex = snapshot.table.lookup(host: host, path: UnsafeRawBufferPointer(rebasing: raw[head.path(raw)])) else {
            return .reject(.noRoute, close: closeOnError, headLength: end)
        }
        let route = snapshot.routes[routeIndex]
        exchange.route = route
        if let preview = route.preview, !route.green.available.isEmpty, preview.matches(raw, head.headers) {
            exchange.color = .green
            exchange.retrySafe = false  // a preview asks for green: its failures are what it is for
        } else if let sticky = route.sticky, let color = sticky.pick(raw, head.headers) {
            exchange.color = color
        } else {
            exchange.color = route.picker.next()
            exchange.setsStickyCookie = route.sticky?.setsCookie ?? false
        }
        if exchange.hasBody && exchange.retrySafe {
            // Kept only on its way to green, and only while it fits.
            let limit = route.retryOnBlue.maxBody
            if exchange.color == .green && route.retryOnBlue.enabled && limit > 0 {
                if case .length(let length) = head.framing, length > limit { exchange.retrySafe = false } else { exchange.keptBody = emptyBuffer }
            } else {
                exchange.retrySafe = false
            }
        }
        let pool = route.pool(exchange.color)
        guard !pool.available.isEmpty else {
            record(.noHealthyInstance, clientStatus: ProxyError.noHealthyInstance.status)
            return .reject(.noHealthyInstance, close: closeOnError, headLength: end)
        }
        exchange.instance = pool.available[pool.rotation.next(count: pool.available.count)]
        writeUpstreamHead(raw, head)
        return .dispatch(headLength: end)
    }

    private func skipEmptyLines() {
        while let byte = inbound.getInteger(at: inbound.readerIndex, as: UInt8.self),
              byte == HTTPBytes.cr || byte == HTTPBytes.lf {
            inbound.moveReaderIndex(forwardBy: 1)
        }
    }

    private func writeUpstreamHead(_ raw: UnsafeRawBufferPointer, _ head: RequestHead) {
        requestHead.clear()
        HeadWriter.upstreamRequest(raw, head, client: HeadWriter.Client(address: clientAddress, isTLS: isTLS),
                                   constants: loop.constantHeaders, into: &requestHead) { loop.writeRequestID(into: &$0) }
    }

    /// Sends the current request over a pooled connection, or opens one.
    private func dispatch() {
        guard let route = exchange.route, let instance = exchange.instance else { return }
        if let connection = loop.connections.take(instance) {
            attach(connection)
            return
        }
        state = .connecting
        exchange.attempts += 1
        setDeadline(.response, after: .hours(24))  // the connect timeout governs this wait
        loop.connections.connect(to: instance, timeout: route.upstream.connectTimeout)
            .assumeIsolated()
            .whenComplete { result in self.connected(result, to: instance) }
    }

    private func connected(_ result: Result<UpstreamConnection, any Error>, to instance: Upstream) {
        switch result {
        case .success(let connection):
            guard state == .connecting, exchange.instance === instance else {
                loop.connections.release(connection)
                return
            }
            attach(connection)
            process()
        case .failure(let error):
            guard state == .connecting, exchange.instance === instance else { return }
            let timedOut: Bool
            if case ChannelError.connectTimeout = error { timedOut = true } else { timedOut = false }
            failed(timedOut ? .connectTimeout : .connectRefused)
        }
    }

    private func attach(_ connection: UpstreamConnection) {
        if exchange.attempts == 0 { exchange.attempts = 1 }
        upstream = connection
        state = .forwarding
        connection.send(head: requestHead, for: self, isHead: exchange.isHead)
        sendKeptBody(connection)
        upstreamNeedsFlush = true
        if exchange.requestDone { armResponseDeadline() }
    }

    /// Moves request body bytes from the client to the upstream; returns whether it made progress
    /// and the body is not finished (so processing may go on).
    private func forwardRequestBody() -> Bool {
        guard let upstream, inbound.readableBytes > 0 else { return false }
        // Worked on as locals: a write may call back into this handler (writability), which
        // reads both.
        var body = exchange.body
        var input = inbound
        do {
            if exchange.keptBody == nil {
                try body.forward(&input) { upstream.write($0) }
            } else {
                var kept = exchange.keptBody
                let limit = exchange.route?.retryOnBlue.maxBody ?? 0
                try body.forward(&input) { piece in
                    upstream.write(piece)
                    if var keeping = kept, keeping.readableBytes + piece.readableBytes <= limit {
                        var piece = piece
                        keeping.writeBuffer(&piece)
                        kept = keeping
                    } else {
                        kept = nil
                    }
                }
                exchange.keptBody = kept
                if kept == nil { exchange.retrySafe = false }
            }
        } catch {
            upstream.markUnusable()
            failExchange(.invalidChunk, outcome: nil)
            return false
        }
        exchange.body = body
        inbound = input
        upstreamNeedsFlush = true
        if exchange.body.isDone {
            exchange.requestDone = true
            if !exchange.responseStarted { armResponseDeadline() }
        }
        return false
    }

    // MARK: Responses, called by the upstream connection

    func upstreamInterimResponse(_ head: ResponseHead, bytes: ByteBuffer) {
        guard exchange.isHTTP11 else { return }  // 1xx go to HTTP/1.1 and HTTP/2 clients, not to HTTP/1.0 ones
        if let stream {
            stream.interimResponse(head, bytes: bytes)
            clientNeedsFlush = true
            return
        }
        writeResponseHead(head, bytes: bytes, close: false)
        writePendingResponseHead()
    }

    func upstreamResponseHead(_ head: ResponseHead, bytes: ByteBuffer) {
        if exchange.color == .green, let route = exchange.route, route.retryOnBlue.retries(status: head.status),
           let reason = BlueRetryReason(status: head.status),
           retryOnBlue(reason, outcome: .response(status: head.status), clientStatus: head.status) {
            return  // green's answer is dropped; blue answers
        }
        exchange.responseStarted = true
        exchange.status = head.status
        exchange.headLatency = elapsed()
        if !exchange.clientKeepAlive || quiescing || !exchange.requestDone || head.framing == .untilClose {
            exchange.closeAfter = true
        }
        writeResponseHead(head, bytes: bytes, close: exchange.closeAfter, final: true)
        armResponseDeadline()
    }

    func upstreamResponseBody(_ bytes: ByteBuffer) {
        if let stream {
            stream.responseBody(bytes)
        } else if responseHeadPending && bytes.readableBytes <= Self.maxMergedBody {
            var bytes = bytes
            responseHead.writeBuffer(&bytes)
            writePendingResponseHead()
        } else {
            writePendingResponseHead()
            context?.write(wrapOutboundOut(bytes), promise: nil)
        }
        clientNeedsFlush = true
        armResponseDeadline()
    }

    func upstreamResponseEnd(from connection: UpstreamConnection, reusable: Bool) {
        guard upstream === connection else { return }
        upstream = nil
        connection.client = nil
        writePendingResponseHead()
        stream?.responseEnd()
        if reusable && exchange.requestDone {
            loop.connections.release(connection)
        } else {
            connection.close()
            // The upstream's read-complete, which flushes what its reads wrote to the client,
            // does not come for a connection closed while it reads (`Connection: close` from
            // the instance) or already closed (a body that ran until the close): flush now.
            flushToClient()
        }
        record(.response(status: exchange.status), clientStatus: exchange.status)
        reportSuccess()
        finishExchange()
    }

    func upstreamSwitchingProtocols(_ head: ResponseHead, bytes: ByteBuffer) -> Bool {
        guard exchange.wantsUpgrade, exchange.requestDone else { return false }
        exchange.status = 101
        exchange.headLatency = elapsed()
        writeResponseHead(head, bytes: bytes, close: false)
        writePendingResponseHead()
        record(.response(status: 101), clientStatus: 101)
        state = .tunnel
        setDeadline(.idle, after: .hours(24 * 365))
        if inbound.readableBytes > 0 {
            upstream?.write(inbound)
            inbound = emptyBuffer
            upstreamNeedsFlush = true
        }
        flushUpstream()
        resumeReadsIfNeeded()
        return true
    }

    func upstreamTunnelBytes(_ bytes: ByteBuffer) {
        guard stream == nil else { return }
        context?.write(wrapOutboundOut(bytes), promise: nil)
        clientNeedsFlush = true
    }

    func upstreamTunnelClosed() {
        upstream = nil
        flushToClient()
        closeClient()
    }

    func upstreamFailed(from connection: UpstreamConnection, reason: UpstreamFailure) {
        guard upstream === connection else { return }
        upstream = nil
        // A reused keep-alive connection that the upstream closed just as the request went out:
        // safe to send again on a new connection when the request is idempotent and bodiless.
        if reason == .closed, !connection.receivedResponseBytes, connection.requestCount > 1,
           exchange.isIdempotent, !exchange.hasBody, !exchange.staleRetried {
            exchange.staleRetried = true
            dispatchFresh()
            return
        }
        failed(reason)
    }

    /// Sends the request again over a new connection to the same instance.
    private func dispatchFresh() {
        guard let route = exchange.route, let instance = exchange.instance else { return }
        state = .connecting
        loop.connections.connect(to: instance, timeout: route.upstream.connectTimeout)
            .assumeIsolated()
            .whenComplete { result in self.connected(result, to: instance) }
    }

    /// An attempt failed: retry on another instance of the same pool when allowed, else answer
    /// with the error.
    private func failed(_ reason: UpstreamFailure) {
        guard let route = exchange.route, let instance = exchange.instance else { return }
        if reason == .connectRefused || reason == .connectTimeout || reason == .timeout {
            loop.healthReporter?.requestFailed(route: route.name, upstream: instance)
            instance.hasFailures.store(true, ordering: .relaxed)
        }
        if exchange.color == .green {
            let (retry, outcome, status): (BlueRetryReason, RequestOutcome, Int) = switch reason {
            case .connectRefused, .connectTimeout: (.connect, .connectError, ProxyError.forUpstream(reason).status)
            case .timeout: (.timeout, .timeout, ProxyError.forUpstream(reason).status)
            case .closed, .invalidResponse: (.reset, .invalidResponse, ProxyError.forUpstream(reason).status)
            }
            if retryOnBlue(retry, outcome: outcome, clientStatus: status) { return }
        }
        let connectFailure = reason == .connectRefused || reason == .connectTimeout
        if connectFailure, exchange.attempts < route.upstream.maxTries, let next = nextUntried(route, after: instance) {
            exchange.instance = next
            state = .idle  // dispatch() sets the next state
            dispatch()
            process()  // forwards any body and flushes; failures arrive outside read bursts
            return
        }
        let outcome: RequestOutcome = switch reason {
        case .connectRefused, .connectTimeout: .connectError
        case .timeout: .timeout
        case .closed, .invalidResponse: .invalidResponse
        }
        failExchange(.forUpstream(reason), outcome: outcome)
    }

    /// Sends the request once more, to blue, when green failed it before any byte of the answer
    /// went to the client, the request is safe to repeat, the route allows it and its budget on
    /// this loop has a retry left. Green's failure is counted in green's statistics first (the
    /// verdict must see it). Returns whether the request went to blue.
    private func retryOnBlue(_ reason: BlueRetryReason, outcome: RequestOutcome, clientStatus: Int) -> Bool {
        // The whole request went out (its body, if any, is kept), or none of it did (a failed
        // connect: the head and body are all still here).
        guard !exchange.retriedOnBlue, exchange.retrySafe, !exchange.responseStarted,
              exchange.requestDone || (state == .connecting && (exchange.keptBody?.readableBytes ?? 0) == 0),
              let route = exchange.route, route.retryOnBlue.enabled else { return false }
        let blue = route.blue.available
        guard !blue.isEmpty, loop.takeBlueRetry(route) else { return false }
        record(outcome, clientStatus: clientStatus)
        if let upstream {
            self.upstream = nil
            upstream.client = nil
            upstream.close()
        }
        route.retries.add(shard: loop.index, field: reason.rawValue)
        exchange.retriedOnBlue = true
        exchange.color = .blue
        exchange.instance = blue[route.blue.rotation.next(count: blue.count)]
        exchange.tried = []
        exchange.attempts = 0
        exchange.staleRetried = false
        exchange.start = .now()  // blue's latency is its own
        state = .idle  // dispatch() sets the next state
        dispatch()
        process()
        return true
    }

    /// On blue after green failed: the body green got goes again, after the head.
    private func sendKeptBody(_ connection: UpstreamConnection) {
        guard exchange.retriedOnBlue, let kept = exchange.keptBody, kept.readableBytes > 0 else { return }
        exchange.keptBody = nil
        connection.write(kept)
    }

    private func nextUntried(_ route: RouteRuntime, after instance: Upstream) -> Upstream? {
        exchange.tried.append(instance.id)
        let candidates = route.pool(exchange.color).available
        guard !candidates.isEmpty else { return nil }
        let start = route.pool(exchange.color).rotation.next(count: candidates.count)
        for offset in 0..<candidates.count {
            let candidate = candidates[(start + offset) % candidates.count]
            if !exchange.tried.contains(candidate.id) { return candidate }
        }
        return nil
    }

    /// Ends the exchange with an error of Teal's: an error answer when none has started, else
    /// the client connection is closed (the only way to signal a cut-off response).
    private func failExchange(_ error: ProxyError, outcome: RequestOutcome?) {
        if let outcome { record(outcome, clientStatus: exchange.responseStarted ? exchange.status : error.status) }
        if let upstream {
            self.upstream = nil
            upstream.client = nil
            upstream.close()
        }
        if exchange.responseStarted {
            flushToClient()
            closeClient()
            return
        }
        respond(error, close: exchange.closeAfter || !exchange.clientKeepAlive || !exchange.requestDone)
        if state != .closed { finishExchange() }
    }

    private func finishExchange() {
        let close = exchange.closeAfter
        exchange = Exchange()
        if close {
            flushToClient()
            closeClient()
            return
        }
        state = .idle
        setDeadline(.idle, after: loop.configuration.clientIdleTimeout)
        if inbound.readableBytes > 0 { process() }
        if clientInputClosed && state == .idle {
            // Half-closed, and the pipelined requests it sent are answered.
            flushToClient()
            closeClient()
            return
        }
        resumeReadsIfNeeded()
    }

    // MARK: Writing to the client

    private func writeResponseHead(_ head: ResponseHead, bytes: ByteBuffer, close: Bool, final: Bool = false) {
        // The sticky version cookie names the version that answers (blue's, after a retry on blue).
        let cookie = final && exchange.setsStickyCookie ? exchange.route?.sticky.map { StickyCookie(prefix: $0.setCookiePrefix, value: $0.value(of: exchange.color)) } : nil
        if let stream {
            stream.responseHead(head, bytes: bytes, setCookie: cookie?.fieldValue)
            clientNeedsFlush = true
            return
        }
        responseHead.clear()
        bytes.withUnsafeReadableBytes { raw in
            HeadWriter.clientResponse(raw, head, close: close, constants: loop.constantHeaders, stickyCookie: cookie, into: &responseHead)
        }
        responseHeadPending = true
    }

    private func writePendingResponseHead() {
        guard responseHeadPending else { return }
        responseHeadPending = false
        context?.write(wrapOutboundOut(responseHead), promise: nil)
        clientNeedsFlush = true
    }

    /// Writes an error answer of Teal's; closes the connection after it when `close`.
    private func respond(_ error: ProxyError, close: Bool) {
        if let stream {
            stream.respond(error, includeBody: !exchange.isHead)
        } else if let context {
            let text = error.response(close: close, includeBody: !exchange.isHead)
            var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
            buffer.writeString(text)
            context.write(wrapOutboundOut(buffer), promise: nil)
        } else {
            return
        }
        // Error answers may come from timers and connect callbacks, outside any read burst.
        clientNeedsFlush = true
        flushToClient()
        if close { closeClient() }
    }

    func flushToClient() {
        writePendingResponseHead()
        guard clientNeedsFlush else { return }
        clientNeedsFlush = false
        if let stream { stream.flush() } else { context?.flush() }
    }

    private func flushUpstream() {
        guard upstreamNeedsFlush else { return }
        upstreamNeedsFlush = false
        upstream?.flush()
    }

    private func closeClient() {
        guard state != .closed else { return }
        if let stream {
            // The stream's one request is over (or failed): end the stream, then let go.
            stream.close()
            clientGone()
            return
        }
        guard let context else { return }
        state = .closed
        inbound = emptyBuffer
        context.close(promise: nil)
    }

    // MARK: Statistics and health

    private func elapsed() -> UInt64 {
        let now = NIODeadline.now().uptimeNanoseconds
        let start = exchange.start.uptimeNanoseconds
        return now > start ? now - start : 0
    }

    /// Counts a finished request in its pool's recorder and latency histogram, and in its
    /// instance's answers by the status class the client got.
    private func record(_ outcome: RequestOutcome, clientStatus: Int) {
        guard let route = exchange.route else { return }
        let latency = exchange.responseStarted ? exchange.headLatency : elapsed()
        let pool = route.pool(exchange.color)
        pool.recorder.record(shard: loop.index, outcome: outcome, latencyNanoseconds: latency)
        pool.latency?.recordNanoseconds(Int64(truncatingIfNeeded: latency))
        exchange.instance?.answers.record(shard: loop.index, status: clientStatus)
    }

    private func reportSuccess() {
        guard let instance = exchange.instance, instance.hasFailures.load(ordering: .relaxed) else { return }
        instance.hasFailures.store(false, ordering: .relaxed)
        if let route = exchange.route { loop.healthReporter?.requestSucceeded(route: route.name, upstream: instance) }
    }

    // MARK: Timeouts

    private func setDeadline(_ kind: DeadlineKind, after timeout: TimeAmount) {
        deadlineKind = kind
        deadline = loop.coarseNow + timeout
    }

    /// The upstream must answer (or send more of its answer) within the route's response timeout.
    private func armResponseDeadline() {
        guard let timeout = exchange.route?.upstream.responseTimeout else { return }
        setDeadline(.response, after: TimeAmount(timeout))
    }

    /// Called by the loop's sweep when `deadline` has passed.
    func deadlinePassed() {
        // Cleared first: handling the timeout may set the next deadline (an error answer on a
        // keep-alive connection goes back to idle with an idle deadline).
        deadline = .distantFuture
        switch state {
        case .closed:
            return
        case .idle:
            if deadlineKind == .header && inbound.readableBytes > 0 {
                respond(.headerTimeout, close: true)
            } else {
                closeClient()
            }
        case .connecting, .forwarding:
            if deadlineKind == .requestBody && !exchange.requestDone {
                failExchange(.bodyTimeout, outcome: nil)
            } else {
                failed(.timeout)
            }
        case .tunnel:
            break
        }
    }
}

