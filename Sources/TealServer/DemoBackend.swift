import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization
import TealProxy

/// A small test application, as `teal demo-backend` runs it: every path answers 200 with body
/// `NAME\n` and header `X-Backend: NAME` (or 500 with probability `errorRate`), after
/// `latency`; `/healthz` always answers 200.
///
/// For tests it also tells what it received: `X-Request-Method`, `X-Body-Bytes` and
/// `X-Body-Checksum` (FNV-1a 64 of the request body), `X-Backend-Connection` (the connection's
/// ordinal on this backend); `Expect: 100-continue` gets a 100 Continue; `X-Echo: headers` in the request returns the request's header lines
/// as the body; `X-Response-Bytes: N` returns an N-byte body, streamed with backpressure; a
/// WebSocket upgrade is accepted and every frame echoed.
public final class DemoBackend: Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        public var name = "backend"
        /// Fraction of requests (0...1) answered with 500.
        public var errorRate = 0.0
        /// Delay before each answer.
        public var latency: Duration = .zero
        /// Serve HTTPS with this server context instead of plain HTTP.
        public var tls: NIOSSLContext?

        public init(name: String, host: String = "127.0.0.1", port: Int = 0, errorRate: Double = 0, latency: Duration = .zero) {
            self.name = name
            self.host = host
            self.port = port
            self.errorRate = errorRate
            self.latency = latency
        }
    }

    public let options: Options
    private let group: any EventLoopGroup
    private let channel: Mutex<(any Channel)?> = Mutex(nil)
    private let connections = Atomic<Int>(0)

    public init(options: Options, group: any EventLoopGroup) {
        self.options = options
        self.group = group
    }

    /// Connections accepted so far.
    public var acceptedConnections: Int { connections.load(ordering: .relaxed) }

    /// Binds and starts serving; returns the bound address.
    @discardableResult
    public func start() async throws -> SocketAddress {
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                let ordinal = connections.wrappingAdd(1, ordering: .relaxed).newValue
                return channel.eventLoop.makeCompletedFuture {
                    if let tls = options.tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    let upgrader = NIOWebSocketServerUpgrader(
                        shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(WebSocketEcho()) }
                        })
                    let handler = DemoBackendHandler(backend: self, connection: ordinal)
                    let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            // After the upgrade, frames go to the echo handler only.
                            context.pipeline.syncOperations.removeHandler(bound.value, promise: nil)
                        }))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: options.host, port: options.port)
            .get()
        channel.withLock { $0 = bound }
        return bound.localAddress!
    }

    /// The bound port, once started.
    public var port: Int? { channel.withLock { $0?.localAddress?.port } }

    public func stop() async {
        let bound = channel.withLock { channel in
            defer { channel = nil }
            return channel
        }
        try? await bound?.close()
    }
}

private final class DemoBackendHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let backend: DemoBackend
    private let connection: Int
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var checksum: UInt64 = 0xcbf2_9ce4_8422_2325
    private var streamRemaining = 0
    private var streamChunk: ByteBuffer?
    private var keepAlive = true

    init(backend: DemoBackend, connection: Int) {
        self.backend = backend
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            if head.headers.first(name: "Expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            bodyBytes = 0
            checksum = 0xcbf2_9ce4_8422_2325
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
            buffer.withUnsafeReadableBytes { raw in
                for byte in raw {
                    checksum = (checksum ^ UInt64(byte)) &* 0x100_0000_01b3
                }
            }
        case .end:
            guard let head else { return }
            let latency = backend.options.latency
            if latency > .zero {
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: TimeAmount(latency)) {
                    bound.value.0.respond(context: bound.value.1, to: head)
                }
            } else {
                respond(context: context, to: head)
            }
        }
    }

    private func respond(context: ChannelHandlerContext, to request: HTTPRequestHead) {
        keepAlive = request.isKeepAlive
        let name = backend.options.name
        var headers = HTTPHeaders()
        headers.add(name: "X-Backend", value: name)
        headers.add(name: "X-Backend-Connection", value: String(connection))
        headers.add(name: "X-Request-Method", value: request.method.rawValue)
        headers.add(name: "X-Body-Bytes", value: String(bodyBytes))
        headers.add(name: "X-Body-Checksum", value: String(checksum, radix: 16))
        headers.add(name: "Content-Type", value: "text/plain")
        let failing = request.uri != "/healthz" && backend.options.errorRate > 0
            && Double.random(in: 0..<1) < backend.options.errorRate
        var body: String
        if request.uri == "/healthz" {
            body = "ok\n"
        } else if failing {
            body = "\(name) error\n"
        } else if request.headers.first(name: "X-Echo") == "headers" {
            body = request.headers.map { "\($0.name): \($0.value)\n" }.joined()
        } else if let size = request.headers.first(name: "X-Response-Bytes").flatMap(Int.init), size >= 0 {
            headers.add(name: "Content-Length", value: String(size))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: .ok, headers: headers))), promise: nil)
            var chunk = context.channel.allocator.buffer(capacity: 64 * 1024)
            chunk.writeRepeatingByte(UInt8(ascii: "x"), count: 64 * 1024)
            streamChunk = chunk
            streamRemaining = size
            writeStream(context: context)
            return
        } else {
            body = "\(name)\n"
        }
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        let status: HTTPResponseStatus = failing ? .internalServerError : .ok
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        finish(context: context)
    }

    /// Writes the streamed body while the channel takes it; the rest when it is writable again.
    /// Flushes only after the loop: a flush can make the channel writable again and call this
    /// re-entrantly, which must not end the answer twice.
    private func writeStream(context: ChannelHandlerContext) {
        guard let chunk = streamChunk else { return }
        while streamRemaining > 0 && context.channel.isWritable {
            let size = min(streamRemaining, chunk.readableBytes)
            streamRemaining -= size
            context.write(wrapOutboundOut(.body(.byteBuffer(chunk.getSlice(at: chunk.readerIndex, length: size)!))), promise: nil)
        }
        if streamRemaining == 0 {
            streamChunk = nil
            finish(context: context)
        } else {
            context.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { writeStream(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func finish(context: ChannelHandlerContext) {
        let close = !keepAlive
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if close { bound.value.close(promise: nil) }
        }
    }
}

/// Echoes every WebSocket data frame and answers close and ping frames.
private final class WebSocketEcho: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .connectionClose:
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                .whenComplete { _ in bound.value.close(promise: nil) }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .text, .binary, .continuation:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
        default:
            break
        }
    }
}
