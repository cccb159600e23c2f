import NIOCore

/// Closes a client connection that has not reached its protocol handler within the header read
/// timeout: a TLS handshake that never finishes, or (with h2c on) a plain connection whose first
/// bytes never show whether it speaks HTTP/2. Until `ProxyHandler` or `HTTP2ProxyConnection`
/// takes over, with deadlines of their own, nothing else watches such a connection, so idle
/// sockets could pile up to the connection limit. Removed by name once the protocol is known.
final class HandshakeDeadline: ChannelInboundHandler, RemovableChannelHandler, DeadlineHolder {
    typealias InboundIn = ByteBuffer

    static let name = "teal.handshake-deadline"

    private let loop: LoopContext
    private var context: ChannelHandlerContext?
    private(set) var deadline = NIODeadline.distantFuture
    var registryIndex = -1

    init(loop: LoopContext) {
        self.loop = loop
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        deadline = loop.coarseNow + loop.configuration.headerReadTimeout
        loop.register(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        loop.unregister(self)
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        loop.unregister(self)
        context.fireChannelInactive()
    }

    func deadlinePassed() {
        deadline = .distantFuture
        loop.unregister(self)
        context?.close(promise: nil)
    }

    /// Takes the deadline off `channel` (its protocol handler is being installed).
    static func remove(from channel: any Channel) {
        channel.pipeline.syncOperations.removeHandler(name: name, promise: nil)
    }
}
