import Foundation
import TealCore

/// What the admin API needs from the running router. `TealServer` implements it over the routing
/// and release controllers, so this module stays free of the server's wiring.
public protocol AdminBackend: Sendable {
    func routes() -> [RouteView]
    func route(named name: String) -> RouteView?
    /// `who` names the requester; its first word is the journal's source (`api`, `cli`).
    /// Returns the route with the split this call set.
    func setSplit(_ split: Split, route: String, by who: String) async throws(AdminError) -> RouteView
    func startRollout(route: String, request: RolloutRequest, by who: String) async throws(AdminError) -> RolloutView
    func rollout(route: String) async throws(AdminError) -> RolloutView
    func rolloutAction(_ action: String, route: String, by who: String) async throws(AdminError) -> RolloutView
    /// The journal, oldest first (at most the latest 1000 entries).
    func events(route: String?, since: Date?) async -> [EventView]
    /// A firing alert names `route`: roll its release back. Returns what was done.
    func alert(route: String, name: String) async -> String
    /// Re-reads the route files and applies them; refused (400, naming file, line and key) when
    /// one has an error, and then nothing changes.
    func reload(by who: String) async throws(AdminError) -> ReloadSummary
    /// The Prometheus text exposition of the router's metrics.
    func metrics() async -> [UInt8]
    /// The replicas sharing this one's state store (this one alone with a state file).
    func replicas() async throws(AdminError) -> [ReplicaView]
    /// `nil` when ready to take traffic (state loaded, and with a shared store caught up with it
    /// once); else why not.
    func notReady() -> String?
}

/// One replica, as `GET /v1/replicas` shows it.
public struct ReplicaView: Codable, Sendable, Equatable {
    public var id: String
    /// Its admin API, `host:port`.
    public var admin: String
    /// Whether it is the replica that answers this request.
    public var current: Bool
    /// The newest state store revision it serves.
    public var revision: Int64
    /// How many revisions it is behind the store's newest.
    public var lag: Int64
    /// Routes whose release it runs.
    public var drives: [String]
    public var startedAt: Date
    /// Seconds since it last reported itself to the store.
    public var seenSecondsAgo: Double

    public init(id: String, admin: String, current: Bool, revision: Int64, lag: Int64, drives: [String], startedAt: Date, seenSecondsAgo: Double) {
        self.id = id
        self.admin = admin
        self.current = current
        self.revision = revision
        self.lag = lag
        self.drives = drives
        self.startedAt = startedAt
        self.seenSecondsAgo = seenSecondsAgo
    }
}

/// Alertmanager's webhook payload (the fields Teal reads).
public struct AlertmanagerPayload: Codable, Sendable {
    public struct Alert: Codable, Sendable {
        public var status: String
        public var labels: [String: String]

        public init(status: String, labels: [String: String]) {
            self.status = status
            self.labels = labels
        }
    }

    public var alerts: [Alert]

    public init(alerts: [Alert]) {
        self.alerts = alerts
    }
}

/// What `POST /v1/alerts` did with each firing alert that named a route.
public struct AlertResult: Codable, Sendable, Equatable {
    public var route: String
    public var alert: String
    public var result: String

    public init(route: String, alert: String, result: String) {
        self.route = route
        self.alert = alert
        self.result = result
    }
}

/// An error answer of the admin API: status and a message that names the problem.
public struct AdminError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The HTTP status code (0 for errors that are not answers, like a refused configuration).
    public let code: Int
    public let message: String

    public init(status code: Int, message: String) {
        self.code = code
        self.message = message
    }

    public static func badRequest(_ message: String) -> AdminError { AdminError(status: 400, message: message) }
    public static func notFound(_ message: String) -> AdminError { AdminError(status: 404, message: message) }
    public static func conflict(_ message: String) -> AdminError { AdminError(status: 409, message: message) }
    /// The change could not be made durable (the state store is away): nothing changed; try again.
    public static func unavailable(_ message: String) -> AdminError { AdminError(status: 503, message: message) }

    public var description: String { code == 0 ? message : "\(code): \(message)" }
}

/// One pool of a route, as the API shows it.
public struct PoolView: Codable, Sendable, Equatable {
    public var version: String?
    public var instances: [InstanceView]
    /// Requests per second over the last window, error rate (0...1) and p99 in milliseconds.
    public var requestsPerSecond: Double
    public var errorRate: Double
    public var p99Milliseconds: Double?
    /// Cumulative counts since the router started.
    public var requests: UInt64
    public var errors: UInt64

    public init(version: String?, instances: [InstanceView], requestsPerSecond: Double, errorRate: Double,
                p99Milliseconds: Double?, requests: UInt64, errors: UInt64) {
        self.version = version
        self.instances = instances
        self.requestsPerSecond = requestsPerSecond
        self.errorRate = errorRate
        self.p99Milliseconds = p99Milliseconds
        self.requests = requests
        self.errors = errors
    }
}

/// One instance and its health.
public struct InstanceView: Codable, Sendable, Equatable {
    public var address: String
    public var healthy: Bool
    public var ejected: Bool
    public var lastProbeFailure: String?

    public init(address: String, healthy: Bool, ejected: Bool, lastProbeFailure: String?) {
        self.address = address
        self.healthy = healthy
        self.ejected = ejected
        self.lastProbeFailure = lastProbeFailure
    }
}

/// A route, as the API shows it.
public struct RouteView: Codable, Sendable, Equatable {
    public var name: String
    public var host: String?
    public var pathPrefix: String
    public var split: SplitBody
    public var blue: PoolView
    public var green: PoolView?
    public var rollout: String?

    public init(name: String, host: String?, pathPrefix: String, split: SplitBody, blue: PoolView, green: PoolView?, rollout: String?) {
        self.name = name
        self.host = host
        self.pathPrefix = pathPrefix
        self.split = split
        self.blue = blue
        self.green = green
        self.rollout = rollout
    }
}

/// `{"blue": 2, "green": 4}`.
public struct SplitBody: Codable, Sendable, Equatable {
    public var blue: Int
    public var green: Int

    public init(blue: Int, green: Int) {
        self.blue = blue
        self.green = green
    }
}

/// The body of `POST /v1/routes/{route}/rollout`: the green pool, and optionally a plan and
/// policy that replace the route's.
public struct RolloutRequest: Codable, Sendable, Equatable {
    public struct Green: Codable, Sendable, Equatable {
        public var version: String?
        public var instances: [String]

        public init(version: String?, instances: [String]) {
            self.version = version
            self.instances = instances
        }
    }

    public var green: Green?
    /// Steps as `"2/4"` or `"25%"`.
    public var steps: [String]?
    /// Hold per step, like `"30s"`.
    public var hold: String?
    /// Error rate limit, 0...1.
    public var maxErrorRate: Double?
    public var minRequests: Int?
    public var maxP99: String?

    public init(green: Green? = nil, steps: [String]? = nil, hold: String? = nil) {
        self.green = green
        self.steps = steps
        self.hold = hold
    }
}

/// A release, as the API shows it.
public struct RolloutView: Codable, Sendable, Equatable {
    /// The limits the release is judged by.
    public struct Policy: Codable, Sendable, Equatable {
        public var holdSeconds: Double
        public var maxErrorRate: Double
        public var minRequests: Int
        public var maxP99Milliseconds: Double?

        public init(holdSeconds: Double, maxErrorRate: Double, minRequests: Int, maxP99Milliseconds: Double?) {
            self.holdSeconds = holdSeconds
            self.maxErrorRate = maxErrorRate
            self.minRequests = minRequests
            self.maxP99Milliseconds = maxP99Milliseconds
        }
    }

    public var route: String
    public var state: String
    public var step: Int?
    public var steps: [String]
    public var split: SplitBody
    public var reason: String?
    public var greenVersion: String?
    /// How long the current step has held (shifting or paused), in seconds.
    public var heldSeconds: Double?
    public var policy: Policy?

    public init(route: String, state: String, step: Int?, steps: [String], split: SplitBody, reason: String?, greenVersion: String?,
                heldSeconds: Double? = nil, policy: Policy? = nil) {
        self.route = route
        self.state = state
        self.step = step
        self.steps = steps
        self.split = split
        self.reason = reason
        self.greenVersion = greenVersion
        self.heldSeconds = heldSeconds
        self.policy = policy
    }
}

/// An entry of the journal as the API shows it.
public typealias EventView = JournalEntry
