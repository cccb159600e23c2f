import CoreMetrics
import NIOCore
import Synchronization
import TealCore

/// One upstream instance of one route as the data plane sees it. Made once per route and address
/// and kept across routing snapshots, so upstream connection pools, failure counts and answer
/// counts carry over.
public final class Upstream: Sendable, CustomStringConvertible {
    public let address: InstanceAddress
    /// Unique in the process; keys the per-loop connection pools.
    public let id: Int
    /// Resolved once when the host is an IP literal; names are resolved on each connect.
    let socketAddress: SocketAddress?
    /// Set after a failed request, cleared by the next success; lets the success path skip the
    /// health registry when nothing needs resetting.
    let hasFailures = Atomic<Bool>(false)
    /// Answers the clients of this instance got, by status class.
    public let answers: StatusClassCounter
    /// Answers that had bytes past their end (dropped, and the connection closed).
    public let answerOverruns = Atomic<UInt64>(0)
    /// HTTPS to this instance, when its pool says so.
    public let tls: UpstreamTLSClient?

    private static let nextID = Atomic<Int>(1)

    public init(address: InstanceAddress, shards: Int = 1, tls: UpstreamTLSClient? = nil) {
        self.address = address
        self.tls = tls
        self.answers = StatusClassCounter(shards: shards)
        self.id = Self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        self.socketAddress = try? SocketAddress(ipAddress: address.host, port: address.port)
    }

    public var description: String { address.description }
}

/// A pool of one route as the data plane sees it: all its instances, those that may get
/// requests now, the rotation over them and the pool's traffic counters. A class, so handing it
/// around on the request path costs one retain.
public final class PoolRuntime: Sendable {
    public let color: PoolColor
    public let version: String?
    public let all: [Upstream]
    public let available: [Upstream]
    public let rotation: InstanceRotation
    public let recorder: TrafficRecorder
    /// The pool's latency histogram (time to the response head), when metrics are exported.
    public let latency: CoreMetrics.Timer?

    public init(color: PoolColor, version: String?, all: [Upstream], available: [Upstream],
                rotation: InstanceRotation, recorder: TrafficRecorder, latency: CoreMetrics.Timer? = nil) {
        self.color = color
        self.version = version
        self.all = all
        self.available = available
        self.rotation = rotation
        self.recorder = recorder
        self.latency = latency
    }
}

/// A route as the data plane sees it.
public final class RouteRuntime: Sendable {
    public let name: String
    public let upstream: UpstreamSpec
    public let picker: PoolPicker
    public let blue: PoolRuntime
    public let green: PoolRuntime
    /// Requests it matches go to green whatever the split; `nil` when preview access is off.
    public let preview: PreviewMatcher?
    /// Which of green's failures are answered by blue, and the retries' budget.
    public let retryOnBlue: BlueRetryPolicy
    /// Retries on blue by reason (`BlueRetryReason`), kept across snapshots.
    public let retries: ShardedCounters
    /// Sticky sessions, when the route has them.
    public let sticky: StickyMatcher?

    public init(name: String, upstream: UpstreamSpec, picker: PoolPicker, blue: PoolRuntime, green: PoolRuntime,
                preview: PreviewMatcher? = nil, retryOnBlue: BlueRetryPolicy = BlueRetryPolicy(),
                retries: ShardedCounters = ShardedCounters(shards: 1, fields: BlueRetryReason.allCases.count),
                sticky: StickyMatcher? = nil) {
        self.sticky = sticky
        self.name = name
        self.upstream = upstream
        self.picker = picker
        self.blue = blue
        self.green = green
        self.preview = preview
        self.retryOnBlue = retryOnBlue
        self.retries = retries
    }

    @inline(__always)
    public func pool(_ color: PoolColor) -> PoolRuntime { color == .blue ? blue : green }
}

/// Everything the request path needs to route and pick, immutable. The controller builds a new
/// one when routes, splits or health change and publishes it to every event loop; the request
/// path reads its loop's current snapshot without locks.
public final class RoutingSnapshot: Sendable {
    public let table: RouteTable
    public let routes: [RouteRuntime]
    /// Increases with every publication.
    public let generation: Int

    public init(routes: [RouteRuntime], matches: [RouteMatch], generation: Int) {
        precondition(routes.count == matches.count)
        self.table = RouteTable(matches: matches)
        self.routes = routes
        self.generation = generation
    }

    /// A snapshot with no routes: every request gets 404.
    public static let empty = RoutingSnapshot(routes: [], matches: [], generation: 0)

}

/// Told about live-traffic failures and recoveries so passive health checking can eject
/// instances. Called on event loops; must not block.
public protocol UpstreamHealthReporter: Sendable {
    /// A connect failure or a timeout on live traffic.
    func requestFailed(route: String, upstream: Upstream)
    /// A request succeeded after earlier failures.
    func requestSucceeded(route: String, upstream: Upstream)
}
