import Logging
import NIOCore
import NIOPosix
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import NIOTLS
import Synchronization
import TealCore
#if canImport(Glibc)
import Glibc
#endif

/// The data plane's listener: accepts client connections, gives each a `ProxyHandler` on its
/// event loop, publishes routing snapshots to every loop, and drains on shutdown.
public final class ProxyServer: Sendable {
    public let configuration: ProxyConfiguration
    private let group: any EventLoopGroup
    private let contexts: [LoopContext]
    private let logger: Logger
    private let state = Mutex(ServerState())
    private let connectionCount = Atomic<Int>(0)
    private let generation = Atomic<Int>(0)

    /// TLS for the HTTPS listener (`configuration.tlsListenHost`/`tlsListenPort`), if any.
    public let tls: TLSTerminator?

    private struct ServerState {
        var channel: (any Channel)?
        var tlsChannel: (any Channel)?
        var clients: [ObjectIdentifier: any Channel] = [:]
        var snapshot = RoutingSnapshot.empty
    }

    /// Creates a server on `group` (one `LoopContext` per event loop) with `snapshot` as the
    /// first routing snapshot.
    public init(configuration: ProxyConfiguration, group: any EventLoopGroup, snapshot: RoutingSnapshot,
                healthReporter: (any UpstreamHealthReporter)? = nil, tls: TLSTerminator? = nil,
                logger: Logger = Logger(label: "teal.proxy")) {
        self.configuration = configuration
        self.tls = tls
        self.group = group
        self.logger = logger
        var contexts: [LoopContext] = []
        for (index, loop) in group.makeIterator().enumerated() {
            contexts.append(LoopContext(index: index, eventLoop: loop, configuration: configuration,
                                        snapshot: snapshot, healthReporter: healthReporter))
        }
        self.contexts = contexts
        state.withLock { $0.snapshot = snapshot }
    }

    /// The number of statistics shards to give `TrafficRecorder`s: one per event loop.
    public var shardCount: Int { contexts.count }

    /// Binds the listener; returns the bound address (useful with port 0).
    @discardableResult
    public func start() async throws -> SocketAddress {
        for context in contexts { try await context.eventLoop.submit { context.start() }.get() }
        let channel = try await listen(host: configuration.listenHost, port: configuration.listenPort, tls: nil)
        state.withLock { $0.channel = channel }
        logger.info("proxy listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        if let tls, let port = configuration.tlsListenPort {
            let tlsChannel = try await listen(host: configuration.tlsListenHost, port: port, tls: tls)
            state.withLock { $0.tlsChannel = tlsChannel }
            logger.info("proxy listening for TLS", metadata: ["address": "\(tlsChannel.localAddress.map { "\($0)" } ?? "?")"])
        }
        return channel.localAddress!
    }

    /// The bound address of the HTTPS listener, once started.
    public var tlsLocalAddress: SocketAddress? { state.withLock { $0.tlsChannel?.localAddress } }

    private func listen(host: String, port: Int, tls: TLSTerminator?) async throws -> any Channel {
        // SO_REUSEPORT lets a successor bind beside a running Teal; without `--takeover` a port
        // someone already listens on must still be refused, not silently shared.
        if !configuration.steerNewConnections, port != 0 { try Self.refuseIfListening(host: host, port: port) }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A successor (`teal serve --takeover`) binds the same port while this one drains.
            .serverChannelOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_REUSEPORT)), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            // A plain HTTP/1.1 client may shut its sending side after its request and still
            // read the answer (RFC 9112 §9.6); ProxyHandler closes once it is answered. Over TLS
            // the client's close_notify ends the connection, so half-closure stays off there.
            .childChannelOption(.allowRemoteHalfClosure, value: tls == nil)
            .childChannelInitializer { [self] channel in
                self.initialize(channel, tls: tls)
            }
            .bind(host: host, port: port)
            .get()
        if configuration.steerNewConnections {
            do {
                try await Self.steerReusePortGroup(to: channel)
            } catch {
                try? await channel.close()
                throw error
            }
        }
        return channel
    }

    /// The bound address, once started.
    public var localAddress: SocketAddress? { state.withLock { $0.channel?.localAddress } }

    private func initialize(_ channel: any Channel, tls: TLSTerminator?) -> EventLoopFuture<Void> {
        let count = connectionCount.wrappingAdd(1, ordering: .relaxed).newValue
        let id = ObjectIdentifier(channel)
        channel.closeFuture.whenComplete { [self] _ in
            connectionCount.wrappingSubtract(1, ordering: .relaxed)
            state.withLock { _ = $0.clients.removeValue(forKey: id) }
        }
        if count > configuration.maxConnections {
            logger.warning("connection limit reached; closing new connection", metadata: ["limit": "\(configuration.maxConnections)"])
            return channel.close()
        }
        state.withLock { $0.clients[id] = channel }
        guard let context = contexts.first(where: { $0.eventLoop === channel.eventLoop }) else {
            return channel.close()
        }
        return channel.eventLoop.makeCompletedFuture {
            guard let tls else {
                guard configuration.http2.cleartext else {
                    return try channel.pipeline.syncOperations.addHandler(ProxyHandler(loop: context, allocator: channel.allocator))
                }
                let limits = configuration.http2
                try channel.pipeline.syncOperations.addHandler(HandshakeDeadline(loop: context), name: HandshakeDeadline.name)
                return try channel.pipeline.syncOperations.addHandler(HTTP2PrefaceDetector { isHTTP2, channel in
                    HandshakeDeadline.remove(from: channel)
                    if isHTTP2 { return Self.configureHTTP2(channel, limits: limits, context: context, isTLS: false) }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ProxyHandler(loop: context, allocator: channel.allocator))
                    }
                })
            }
            try channel.pipeline.syncOperations.addHandler(HandshakeDeadline(loop: context), name: HandshakeDeadline.name)
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
            let limits = configuration.http2
            try channel.pipeline.syncOperations.addHandler(ApplicationProtocolNegotiationHandler { result, channel in
                HandshakeDeadline.remove(from: channel)
                guard case .negotiated("h2") = result, limits.enabled else {
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ProxyHandler(loop: context, allocator: channel.allocator, isTLS: true))
                    }
                }
                return Self.configureHTTP2(channel, limits: limits, context: context, isTLS: true)
            })
        }
    }

    /// Makes `snapshot` the routing of every event loop; returns once all loops use it, so the
    /// next request routes by it.
    public func publish(_ snapshot: RoutingSnapshot) async {
        state.withLock { $0.snapshot = snapshot }
        for context in contexts {
            try? await context.eventLoop.submit {
                // Publications may race; the newest generation wins.
                if snapshot.generation >= context.snapshot.generation { context.snapshot = snapshot }
            }.get()
        }
    }

    /// The snapshot published last.
    public var currentSnapshot: RoutingSnapshot { state.withLock { $0.snapshot } }

    /// A fresh generation number for a new snapshot.
    public func nextGeneration() -> Int { generation.wrappingAdd(1, ordering: .relaxed).newValue }

    /// Upstream connections opened since start and open now, over all loops.
    public func upstreamConnectionCounts() async -> (opened: Int, open: Int) {
        var opened = 0, open = 0
        for context in contexts {
            let counts = try? await context.eventLoop.submit { (context.connections.opened, context.connections.open) }.get()
            opened += counts?.0 ?? 0
            open += counts?.1 ?? 0
        }
        return (opened, open)
    }

    /// Upstream connections to these instances that are busy (a request in flight) or being
    /// opened, over all loops. A drained pool has none.
    public func busyUpstreamConnections(to upstreams: [Upstream]) async -> Int {
        let ids = Set(upstreams.map(\.id))
        var busy = 0
        for context in contexts {
            busy += (try? await context.eventLoop.submit { context.connections.busyConnections(to: ids) }.get()) ?? 0
        }
        return busy
    }

    /// Open connections to each of these instances (keyed by `Upstream.id`), over all loops.
    public func upstreamConnections(to upstreams: [Upstream]) async -> [Int: UpstreamConnectionCounts] {
        var counts: [Int: UpstreamConnectionCounts] = [:]
        for context in contexts {
            let perLoop = (try? await context.eventLoop.submit {
                upstreams.map { (id: $0.id, counts: context.connections.connections(to: $0.id)) }
            }.get()) ?? []
            for entry in perLoop {
                let sum = counts[entry.id, default: UpstreamConnectionCounts(busy: 0, idle: 0)]
                counts[entry.id] = UpstreamConnectionCounts(busy: sum.busy + entry.counts.busy, idle: sum.idle + entry.counts.idle)
            }
        }
        return counts
    }

    /// Drains upstreams no longer routed to, in the background: once their in-flight requests
    /// are done (or `timeout` passed) their idle connections are closed.
    public func drain(_ upstreams: [Upstream], timeout: Duration) {
        guard !upstreams.isEmpty else { return }
        let deadline = ContinuousClock.now + timeout
        Task {
            while ContinuousClock.now < deadline, await busyUpstreamConnections(to: upstreams) > 0 {
                try? await Task.sleep(for: .milliseconds(50))
            }
            await closeIdleUpstreamConnections(to: upstreams)
        }
    }

    /// Closes the idle upstream connections to these instances on every loop.
    public func closeIdleUpstreamConnections(to upstreams: [Upstream]) async {
        let ids = Set(upstreams.map(\.id))
        for context in contexts {
            try? await context.eventLoop.submit { context.connections.closeIdle(to: ids) }.get()
        }
    }

    /// Client connections open now.
    public var clientConnectionCount: Int { connectionCount.load(ordering: .relaxed) }

    /// Stops accepting, lets in-flight requests finish (keep-alive connections close after their
    /// current response), and closes what is left after `configuration.drainTimeout`.
    public func shutdown() async {
        let listeners = state.withLock { state in
            let listeners = [state.channel, state.tlsChannel].compactMap { $0 }
            state.channel = nil
            state.tlsChannel = nil
            return listeners
        }
        if !listeners.isEmpty {
            // Accept what is already queued (a successor's steering keeps new connections away).
            try? await Task.sleep(for: .nanoseconds(configuration.acceptLinger.nanoseconds))
            for listener in listeners { try? await listener.close() }
        }
        let clients = state.withLock { Array($0.clients.values) }
        for client in clients {
            client.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let deadline = ContinuousClock.now + .nanoseconds(configuration.drainTimeout.nanoseconds)
        while clientConnectionCount > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let remaining = state.withLock { Array($0.clients.values) }
        if !remaining.isEmpty {
            logger.warning("closing connections still open after the drain timeout", metadata: ["count": "\(remaining.count)"])
        }
        for client in remaining { try? await client.close() }
        for context in contexts { try? await context.eventLoop.submit { context.stop() }.get() }
        logger.info("proxy stopped")
    }
}

extension ProxyServer {
    /// Throws `EADDRINUSE` when something already listens on `host:port`: a plain bind (no
    /// SO_REUSEPORT, but SO_REUSEADDR so TIME_WAIT leftovers do not count) on a probe socket.
    static func refuseIfListening(host: String, port: Int) throws {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let family = address.protocol == .inet6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = address.withSockAddr { pointer, length in bind(fd, pointer, socklen_t(length)) }
        if result != 0 && errno == EADDRINUSE {
            throw IOError(errnoCode: EADDRINUSE, reason: "bind \(host):\(port): something else already listens there")
        }
    }

    /// Whether something already listens on `host:port` (a probe bind, as `teal serve` does before
    /// it starts, so it can name the flag whose address is taken).
    public static func isListening(host: String, port: Int) -> Bool {
        do {
            try refuseIfListening(host: host, port: port)
            return false
        } catch {
            return true
        }
    }

    /// One classic BPF instruction (`struct sock_filter`).
    private struct SocketFilter {
        var code: UInt16
        var jumpTrue: UInt8
        var jumpFalse: UInt8
        var k: UInt32
    }

    /// A classic BPF program (`struct sock_fprog`).
    private struct SocketFilterProgram: @unchecked Sendable {
        var length: UInt16
        var filter: UnsafeMutablePointer<SocketFilter>
    }

    /// Attaches a reuse-port program to the listener's group that picks socket 1 — the second
    /// listener, this one, after the running Teal's — for every new connection, so the old
    /// listener's accept queue runs dry before it closes. When the old listener is gone the index
    /// is out of range and the kernel falls back to its hash over the one socket left.
    static func steerReusePortGroup(to channel: any Channel) async throws {
        guard let provider = channel as? any SocketOptionProvider else { return }
        let program = UnsafeMutablePointer<SocketFilter>.allocate(capacity: 1)
        defer { program.deallocate() }
        program.initialize(to: SocketFilter(code: 0x06 /* BPF_RET | BPF_K */, jumpTrue: 0, jumpFalse: 0, k: 1))
        let soAttachReusePortCBPF: Int32 = 51
        try await provider.unsafeSetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(soAttachReusePortCBPF),
                                                 value: SocketFilterProgram(length: 1, filter: program)).get()
    }
}

extension ProxyServer {
    /// An HTTP/2 connection: NIOHTTP2's connection handler in frame mode, then Teal's
    /// `HTTP2ProxyConnection`, which proxies each stream without a stream channel.
    static func configureHTTP2(_ channel: any Channel, limits: HTTP2Limits, context: LoopContext, isTLS: Bool) -> EventLoopFuture<Void> {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        // Request heads are checked by HTTP2ProxyStream.renderRequestHead (cheaper); answer heads
        // come from the data plane's HTTP/1.1 parser, lowercased, without framing fields.
        connection.headerBlockValidation = .disabled
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: limits.maxHeaderListSize),
            HTTP2Setting(parameter: .initialWindowSize, value: limits.streamWindow),
        ]
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.streamResetFrameRateLimit.maximumCount = limits.maxResets
        stream.streamResetFrameRateLimit.windowLength = limits.resetWindow
        let proxy = HTTP2ProxyConnection(loop: context, limits: limits, isTLS: isTLS)
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandlers([
                NIOHTTP2Handler(mode: .server, frameDelegate: proxy, connectionConfiguration: connection, streamConfiguration: stream),
                proxy,
            ])
        }
    }
}

/// Open connections from the proxy to one instance.
public struct UpstreamConnectionCounts: Sendable, Hashable {
    /// Carrying a request, or being opened.
    public var busy: Int
    /// Kept for reuse.
    public var idle: Int

    public init(busy: Int, idle: Int) {
        self.busy = busy
        self.idle = idle
    }
}
