import NIOCore
import NIOPosix
import TealCore

/// Keep-alive connections to upstream instances, one pool per event loop, so a client
/// connection and its upstream connections share a loop and never hop threads.
/// Used only on its own event loop.
final class UpstreamConnectionPool {
    private let eventLoop: any EventLoop
    private let configuration: ProxyConfiguration
    /// Idle connections by `Upstream.id` (small, dense numbers): an array index is cheaper than
    /// hashing on every request.
    private var idle: [[UpstreamConnection]] = []
    private var sweeper: RepeatedTask?
    /// Refreshed by each sweep (every second): idle times need no finer clock.
    private var sweepClock = NIODeadline.now()
    /// Connections opened since start (for tests and metrics).
    private(set) var opened = 0
    /// Connections open now, idle or busy.
    private(set) var open = 0
    /// Connections open or being opened, by `Upstream.id`: what drains wait for.
    private var openByUpstream: [Int] = []

    init(eventLoop: any EventLoop, configuration: ProxyConfiguration) {
        self.eventLoop = eventLoop
        self.configuration = configuration
    }

    /// An idle connection to `upstream`, most recently used first, or `nil`.
    func take(_ upstream: Upstream) -> UpstreamConnection? {
        // Mutates the stored list in place: copying it out would copy its storage on write.
        guard upstream.id < idle.count else { return nil }
        while let connection = idle[upstream.id].popLast() {
            if connection.isReusable { return connection }
            connection.close()
        }
        return nil
    }

    /// Keeps `connection` for reuse, or closes it when the instance already has enough idle ones.
    func release(_ connection: UpstreamConnection) {
        let id = connection.upstream.id
        if id >= idle.count { idle.append(contentsOf: repeatElement([], count: id + 1 - idle.count)) }
        guard idle[id].count < configuration.maxIdlePerInstance, connection.isReusable else {
            connection.close()
            return
        }
        connection.idleSince = sweepClock
        idle[id].append(connection)
        startSweeperIfNeeded()
    }

    /// Opens a connection to `upstream` on this loop. IP literals were resolved once; host names
    /// go through NIO's resolver, which runs getaddrinfo off the event loop.
    func connect(to upstream: Upstream, timeout: Duration) -> EventLoopFuture<UpstreamConnection> {
        let pool = NIOLoopBound(self, eventLoop: eventLoop)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(timeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = upstream.tls {
                        try channel.pipeline.syncOperations.addHandler(try tls.handler(for: upstream.address))
                    }
                    try channel.pipeline.syncOperations.addHandler(UpstreamConnection(upstream: upstream))
                }
            }
        let connected = upstream.socketAddress.map { bootstrap.connect(to: $0) }
            ?? bootstrap.connect(host: upstream.address.host, port: upstream.address.port)
        countOpen(upstream.id, by: 1)
        return connected.flatMapThrowing { channel in
            let connection = try channel.pipeline.syncOperations.handler(type: UpstreamConnection.self)
            pool.value.opened += 1
            pool.value.open += 1
            // Counted closed by the channel's close future, which always completes: a connection
            // closed from inside this connect's callbacks (a request failing on a fresh
            // connection) never sees channelInactive, and was counted open forever.
            channel.closeFuture.assumeIsolated().whenComplete { _ in pool.value.connectionClosed(connection) }
            return connection
        }.flatMapErrorThrowing { error in
            pool.value.countOpen(upstream.id, by: -1)
            throw error
        }
    }

    /// Called when a connection's channel has closed.
    func connectionClosed(_ connection: UpstreamConnection) {
        open -= 1
        let id = connection.upstream.id
        countOpen(id, by: -1)
        if id < idle.count, let index = idle[id].firstIndex(where: { $0 === connection }) {
            idle[id].remove(at: index)
        }
    }

    private func countOpen(_ id: Int, by delta: Int) {
        if id >= openByUpstream.count { openByUpstream.append(contentsOf: repeatElement(0, count: id + 1 - openByUpstream.count)) }
        openByUpstream[id] += delta
    }

    /// Connections to these upstreams that are busy with a request or being opened.
    func busyConnections(to ids: Set<Int>) -> Int {
        ids.reduce(0) { sum, id in sum + connections(to: id).busy }
    }

    /// Open connections to one upstream: busy (a request in flight, or being opened) and idle.
    func connections(to id: Int) -> UpstreamConnectionCounts {
        let open = id < openByUpstream.count ? openByUpstream[id] : 0
        let idle = id < idle.count ? idle[id].count : 0
        return UpstreamConnectionCounts(busy: open - idle, idle: idle)
    }

    /// Closes the idle connections to these upstreams (a drained pool).
    func closeIdle(to ids: Set<Int>) {
        for id in ids where id < idle.count {
            let list = idle[id]
            idle[id] = []
            for connection in list { connection.close() }
        }
    }

    /// Closes every idle connection (shutdown).
    func closeIdle() {
        let all = idle.flatMap { $0 }
        idle.removeAll()
        for connection in all { connection.close() }
        sweeper?.cancel()
        sweeper = nil
    }

    private func startSweeperIfNeeded() {
        guard sweeper == nil else { return }
        let pool = NIOLoopBound(self, eventLoop: eventLoop)
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            pool.value.sweep()
        }
    }

    private func sweep() {
        sweepClock = .now()
        let cutoff = sweepClock - configuration.upstreamIdleTimeout
        for (id, list) in idle.enumerated() where !list.isEmpty {
            let (keep, expired) = list.reduce(into: ([UpstreamConnection](), [UpstreamConnection]())) {
                if $1.idleSince < cutoff { $0.1.append($1) } else { $0.0.append($1) }
            }
            guard !expired.isEmpty else { continue }
            idle[id] = keep
            for connection in expired { connection.close() }
        }
    }
}
