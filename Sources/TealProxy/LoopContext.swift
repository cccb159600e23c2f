import NIOCore
import TealCore

/// What the request path of one event loop needs: the current routing snapshot, the loop's
/// upstream connection pool, and its statistics shard. Touched only on its own event loop.
final class LoopContext: @unchecked Sendable {
    let index: Int
    let eventLoop: any EventLoop
    let configuration: ProxyConfiguration
    let connections: UpstreamConnectionPool
    let healthReporter: (any UpstreamHealthReporter)?
    var snapshot: RoutingSnapshot
    private var requestCounter: UInt64 = 0
    /// The time, refreshed by the sweep every `sweepInterval`; deadlines are set from it so the
    /// request path reads no clock for them.
    private(set) var coarseNow = NIODeadline.now()
    private var handlers: [any DeadlineHolder] = []
    private var sweeper: RepeatedTask?
    static let sweepInterval = TimeAmount.milliseconds(250)
    private let requestIDPrefix: [UInt8]
    /// `X-Forwarded-Proto: http\r\nVia: ` and similar constants, rendered once.
    let constantHeaders: ProxyHeaderBytes
    /// Each route's retry-on-blue budget on this loop, by route name (touched only when green fails).
    private var blueRetryBudgets: [String: BlueRetryBudget] = [:]

    /// Takes one retry on blue from `route`'s budget on this loop, when there is one left.
    func takeBlueRetry(_ route: RouteRuntime) -> Bool {
        // Client requests: every attempt is counted in its pool, so retries are taken off.
        let requests = route.blue.recorder.requests(shard: index) &+ route.green.recorder.requests(shard: index)
            &- route.retries.total(shard: index)
        var budget = blueRetryBudgets[route.name] ?? BlueRetryBudget(share: route.retryOnBlue.budget, requests: requests)
        if budget.share != route.retryOnBlue.budget {
            budget = BlueRetryBudget(share: route.retryOnBlue.budget, requests: requests)  // the route files changed it
        }
        let allowed = budget.take(requests: requests)
        blueRetryBudgets[route.name] = budget
        return allowed
    }

    init(index: Int, eventLoop: any EventLoop, configuration: ProxyConfiguration, snapshot: RoutingSnapshot,
         healthReporter: (any UpstreamHealthReporter)?) {
        self.index = index
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.snapshot = snapshot
        self.healthReporter = healthReporter
        self.connections = UpstreamConnectionPool(eventLoop: eventLoop, configuration: configuration)
        var random = SystemRandomNumberGenerator()
        let bits: UInt64 = random.next() & 0xFFFF_FFFF_FFFF
        let prefix = String(bits, radix: 16)
        self.requestIDPrefix = Array((String(repeating: "0", count: 12 - prefix.count) + prefix + "-\(index)-").utf8)
        self.constantHeaders = ProxyHeaderBytes(viaName: configuration.viaName)
    }

    /// Starts the sweep that checks the deadlines of this loop's client connections.
    func start() {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: Self.sweepInterval, delay: Self.sweepInterval) { _ in
            bound.value.sweep()
        }
    }

    func stop() {
        sweeper?.cancel()
        sweeper = nil
        connections.closeIdle()
    }

    func register(_ handler: any DeadlineHolder) {
        handler.registryIndex = handlers.count
        handlers.append(handler)
    }

    func unregister(_ handler: any DeadlineHolder) {
        let index = handler.registryIndex
        guard index >= 0, index < handlers.count, handlers[index] === handler else { return }
        let last = handlers.removeLast()
        if index < handlers.count {
            handlers[index] = last
            last.registryIndex = index
        }
        handler.registryIndex = -1
    }

    private func sweep() {
        coarseNow = .now()
        var index = 0
        while index < handlers.count {
            let handler = handlers[index]
            if handler.deadline <= coarseNow { handler.deadlinePassed() }
            // A handler that closed was swapped out of this slot; look at the slot again.
            if index < handlers.count, handlers[index] === handler { index += 1 }
        }
    }

    /// Writes a new request id (unique in this process, random across restarts) into `buffer`.
    func writeRequestID(into buffer: inout ByteBuffer) {
        requestCounter &+= 1
        buffer.writeBytes(requestIDPrefix)
        var value = requestCounter
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { scratch in
            repeat {
                scratch[23 - count] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
                count += 1
            } while value > 0
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: scratch[(24 - count)...]))
        }
    }
}

/// Something on the loop with a deadline the sweep checks: a client request, an HTTP/2 connection.
protocol DeadlineHolder: AnyObject {
    /// When the current wait times out (coarse, checked by the loop's sweep).
    var deadline: NIODeadline { get }
    /// Position in the loop's list (kept by `LoopContext`).
    var registryIndex: Int { get set }
    /// Called by the sweep when `deadline` has passed.
    func deadlinePassed()
}
