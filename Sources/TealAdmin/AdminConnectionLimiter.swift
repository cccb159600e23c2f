import Hummingbird
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Which connections the admin listener keeps when more arrive than it may hold. Pure: the
/// caller passes connection ids and the time.
///
/// At the limit a new connection takes the place of the connection that has been idle longest
/// (no request in progress), so idle or half-sent connections, however many, never lock an
/// operator out; only when every kept connection is in a request is the new one refused.
struct AdminConnectionTable: Sendable {
    enum Admission: Equatable, Sendable {
        /// Kept; nothing else changes.
        case admitted
        /// Kept in place of this idle connection, which is to be closed.
        case admittedEvicting(UInt64)
        /// Not kept: every connection is in a request. Close the new one.
        case refused
    }

    private struct Entry {
        var busy = false
        /// When the connection last became idle (opened, or answered its last request).
        var idleSince: UInt64
    }

    /// The most connections kept at once.
    let limit: Int
    private var entries: [UInt64: Entry] = [:]

    init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
    }

    /// Connections kept now.
    var count: Int { entries.count }

    mutating func admit(_ id: UInt64, now: UInt64) -> Admission {
        guard entries.count >= limit else {
            entries[id] = Entry(idleSince: now)
            return .admitted
        }
        let oldestIdle = entries.filter { !$0.value.busy }.min { $0.value.idleSince < $1.value.idleSince }
        guard let victim = oldestIdle?.key else { return .refused }
        entries[victim] = nil
        entries[id] = Entry(idleSince: now)
        return .admittedEvicting(victim)
    }

    /// A request head arrived on `id`.
    mutating func requestStarted(_ id: UInt64) {
        entries[id]?.busy = true
    }

    /// The answer to `id`'s request was written.
    mutating func requestFinished(_ id: UInt64, now: UInt64) {
        entries[id]?.busy = false
        entries[id]?.idleSince = now
    }

    mutating func remove(_ id: UInt64) {
        entries[id] = nil
    }
}

/// Bounds the admin listener so nothing sent to it can starve the proxy: at most `limit`
/// connections are open at once (each kept one holds a descriptor; the rest are closed as soon
/// as they are accepted, see `AdminConnectionTable`), and a request whose body does not arrive
/// within `requestTimeout` of its head is cut off. The header and idle timeouts are Hummingbird's
/// idle timeout, which `AdminServer.application` sets.
public final class AdminConnectionLimiter: Sendable {
    private struct State {
        var table: AdminConnectionTable
        var channels: [UInt64: any Channel] = [:]
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>
    let requestTimeout: TimeAmount
    private let logger: Logger

    public init(limit: Int, requestTimeout: TimeAmount, logger: Logger) {
        state = Mutex(State(table: AdminConnectionTable(limit: limit)))
        self.requestTimeout = requestTimeout
        self.logger = logger
    }

    /// A handler for one new connection's pipeline (after the HTTP codec).
    func makeHandler() -> AdminConnectionGuard { AdminConnectionGuard(limiter: self) }

    /// Registers an accepted connection; `false` when it must be closed at once.
    func open(_ channel: any Channel) -> (id: UInt64, kept: Bool) {
        let now = NIODeadline.now().uptimeNanoseconds
        let (id, admission, victim) = state.withLock { state -> (UInt64, AdminConnectionTable.Admission, (any Channel)?) in
            state.nextID += 1
            let id = state.nextID
            let admission = state.table.admit(id, now: now)
            var victim: (any Channel)?
            switch admission {
            case .admitted: state.channels[id] = channel
            case .admittedEvicting(let old):
                state.channels[id] = channel
                victim = state.channels.removeValue(forKey: old)
            case .refused: break
            }
            return (id, admission, victim)
        }
        if let victim {
            logger.debug("admin connection limit reached: closing the longest idle connection")
            victim.close(promise: nil)
        } else if admission == .refused {
            logger.debug("admin connection limit reached and every connection is in a request: refusing a new one")
        }
        return (id, admission != .refused)
    }

    func requestStarted(_ id: UInt64) {
        state.withLock { $0.table.requestStarted(id) }
    }

    func requestFinished(_ id: UInt64) {
        let now = NIODeadline.now().uptimeNanoseconds
        state.withLock { $0.table.requestFinished(id, now: now) }
    }

    func closed(_ id: UInt64) {
        state.withLock { state in
            state.table.remove(id)
            state.channels[id] = nil
        }
    }
}

/// Tracks one admin connection for `AdminConnectionLimiter`: registers it when it becomes
/// active, marks it busy from a request head until the answer's end is written, and closes it
/// when a request's body takes longer than the limiter's request timeout.
final class AdminConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limiter: AdminConnectionLimiter
    private var id: UInt64?
    private var requestDeadline: Scheduled<Void>?

    init(limiter: AdminConnectionLimiter) {
        self.limiter = limiter
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { register(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        register(context: context)
        context.fireChannelActive()
    }

    private func register(context: ChannelHandlerContext) {
        guard id == nil else { return }
        let (id, kept) = limiter.open(context.channel)
        self.id = id
        guard !kept else { return }
        // Every kept connection is in a request: say so (an answer may come before the request
        // it answers, RFC 9112 §9.5), then close.
        let body = context.channel.allocator.buffer(string: #"{"error": "the admin API is at its connection limit, with every connection in a request; try again"}"# + "\n")
        var head = HTTPResponse(status: .serviceUnavailable)
        head.headerFields[.contentType] = "application/json"
        head.headerFields[.contentLength] = "\(body.readableBytes)"
        head.headerFields[.connection] = "close"
        head.headerFields[.retryAfter] = "1"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        requestDeadline?.cancel()
        if let id { limiter.closed(id) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            if let id { limiter.requestStarted(id) }
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            requestDeadline = context.eventLoop.scheduleTask(in: limiter.requestTimeout) {
                loopContext.value.close(promise: nil)
            }
        case .end:
            requestDeadline?.cancel()
            requestDeadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), let id { limiter.requestFinished(id) }
        context.write(data, promise: promise)
    }
}
