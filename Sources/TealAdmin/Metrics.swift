import CoreMetrics
import Prometheus
import TealCore

/// What `/metrics` reports at one moment: the routes, their pools and instances with their
/// cumulative counts. The backend gathers it; `TealMetrics` renders it.
public struct MetricsSnapshot: Sendable {
    public struct Instance: Sendable {
        public var address: String
        public var healthy: Bool
        public var ejected: Bool
        /// Answers clients got by status class, 1xx … 5xx (`StatusClassCounter.snapshot()`).
        public var answers: [UInt64]
        public var busyConnections: Int
        public var idleConnections: Int
        /// Answers from the instance with bytes past their end (dropped; the connection closed).
        public var answerOverruns: UInt64

        public init(address: String, healthy: Bool, ejected: Bool, answers: [UInt64], busyConnections: Int, idleConnections: Int,
                    answerOverruns: UInt64 = 0) {
            self.address = address
            self.answerOverruns = answerOverruns
            self.healthy = healthy
            self.ejected = ejected
            self.answers = answers
            self.busyConnections = busyConnections
            self.idleConnections = idleConnections
        }
    }

    public struct Pool: Sendable {
        public var color: PoolColor
        public var version: String?
        /// Cumulative counts of the pool's recorder (which moves with the pool at promotion).
        public var statistics: PoolStatistics
        public var instances: [Instance]

        public init(color: PoolColor, version: String?, statistics: PoolStatistics, instances: [Instance]) {
            self.color = color
            self.version = version
            self.statistics = statistics
            self.instances = instances
        }
    }

    public struct Route: Sendable {
        public var name: String
        public var split: Split
        /// The state of the route's latest release (`RolloutMachine.State.name`), if it had one.
        public var release: String?
        public var pools: [Pool]
        /// Requests green failed that were sent again to blue, by reason (`BlueRetryReason.label`).
        public var retriesOnBlue: [(reason: String, count: UInt64)]

        public init(name: String, split: Split, release: String?, pools: [Pool], retriesOnBlue: [(reason: String, count: UInt64)] = []) {
            self.name = name
            self.split = split
            self.release = release
            self.pools = pools
            self.retriesOnBlue = retriesOnBlue
        }
    }

    /// The state store as this replica sees it.
    public struct Store: Sendable {
        /// The newest store revision served (0 for a store no other replica shares).
        public var revision: Int64
        /// Whether the store is reachable (for a shared store: its change feed is connected).
        public var up: Bool
        /// The routes whose release this replica runs.
        public var drives: [String]

        public init(revision: Int64, up: Bool, drives: [String]) {
            self.revision = revision
            self.up = up
            self.drives = drives
        }
    }

    public var routes: [Route]
    public var clientConnections: Int
    public var store: Store?

    public init(routes: [Route], clientConnections: Int, store: Store? = nil) {
        self.routes = routes
        self.clientConnections = clientConnections
        self.store = store
    }
}

/// Teal's Prometheus metrics.
///
/// Two kinds of series. Those recorded as things happen live in a long-lived registry: the
/// latency histograms (recorded on the request path through swift-metrics `Timer`s) and the
/// rollback counter. Those that are counts Teal already keeps exactly (requests, errors,
/// connections, health, split, release state) are read at scrape time from a `MetricsSnapshot`
/// into a fresh registry, so the request path pays nothing extra for them. Both are rendered by
/// swift-prometheus into one exposition.
///
/// Request counters carry the pool's colour and version: at promotion, green's counters become
/// blue's (the recorder moves with the pool), so a series identified by colour alone would jump;
/// with the version label each pool's series is continuous, and a colour change starts a new one.
public final class TealMetrics: Sendable {
    /// Bucket bounds of the latency histograms.
    public static let latencyBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    public static let latencyName = "teal_request_duration_seconds"
    static let latencyHelp = "Time from receiving a request to the start of the instance's answer (or Teal's error answer), by route and pool colour."
    static let rollbacksName = "teal_rollbacks_total"
    static let rollbacksHelp = "Releases rolled back, by route and reason."

    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    public init() {
        factory = PrometheusMetricsFactory(registry: registry)
    }

    /// A metric named in full (`teal_requests_total`): no namespace or unit parts.
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The latency histogram of a route's pool colour, as a swift-metrics timer.
    public func latencyTimer(route: String, pool: PoolColor) -> CoreMetrics.Timer {
        let dimensions = [("route", route), ("pool", pool.description)]
        let histogram = registry.makeDurationHistogram(descriptor: Self.descriptor(Self.latencyName, Self.latencyHelp), labels: dimensions,
                                                       buckets: Self.latencyBuckets)
        return Timer(label: Self.latencyName, dimensions: dimensions, handler: histogram, factory: factory)
    }

    /// Counts a rollback of a route's release.
    public func recordRollback(route: String, reason: RollbackReason) {
        registry.makeCounter(descriptor: Self.descriptor(Self.rollbacksName, Self.rollbacksHelp),
                             labels: [("route", route), ("reason", reason.kind)]).increment()
    }

    /// The Prometheus text exposition of everything, with `snapshot` for the scrape-time series.
    public func render(_ snapshot: MetricsSnapshot) -> [UInt8] {
        let live = PrometheusCollectorRegistry()
        func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: UInt64) {
            live.makeCounter(descriptor: Self.descriptor(name, help), labels: labels).increment(by: Int64(clamping: value))
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            live.makeGauge(descriptor: Self.descriptor(name, help), labels: labels).set(value)
        }
        live.makeGauge(descriptor: Self.descriptor("teal_client_connections", "Client connections open now."))
            .set(Double(snapshot.clientConnections))
        if let store = snapshot.store {
            gauge("teal_state_revision", "The newest state store revision this replica serves (0 with a SQLite state file).", [], Double(store.revision))
            gauge("teal_state_store_up", "1 while the state store is reachable (PostgreSQL: this replica's change feed is connected).", [],
                  store.up ? 1 : 0)
            for route in snapshot.routes {
                gauge("teal_release_driver", "1 for the routes whose release this replica runs now.", [("route", route.name)],
                      store.drives.contains(route.name) ? 1 : 0)
            }
        }
        for route in snapshot.routes {
            let routeLabel = ("route", route.name)
            let total = Double(max(1, route.split.blue + route.split.green))
            for (color, weight) in [(PoolColor.blue, route.split.blue), (.green, route.split.green)] {
                gauge("teal_split_ratio", "Share of the route's traffic the split sends to each pool colour (0 to 1).",
                      [routeLabel, ("pool", color.description)], Double(weight) / total)
            }
            for (reason, count) in route.retriesOnBlue {
                counter("teal_retries_total", "Requests green failed before any byte of its answer reached the client, answered by blue instead, by reason.",
                        [routeLabel, ("from", "green"), ("to", "blue"), ("reason", reason)], count)
            }
            for state in RolloutMachine.Checkpoint.Phase.allCases.map(\.rawValue) {
                gauge("teal_release_state", "1 for the state of the route's latest release, 0 for the others; all 0 before its first release.",
                      [routeLabel, ("state", state)], route.release == state ? 1 : 0)
            }
            for pool in route.pools {
                let poolLabels = [routeLabel, ("pool", pool.color.description), ("version", pool.version ?? "")]
                let stats = pool.statistics
                counter("teal_pool_requests_total", "Requests sent to a pool, finished (answered or failed).", poolLabels, stats.requests)
                for (kind, value) in [("server_error", stats.serverErrors), ("connect", stats.connectErrors), ("timeout", stats.timeouts),
                                      ("invalid_response", stats.invalidResponses), ("no_healthy_instance", stats.noHealthyInstance)] {
                    counter("teal_pool_errors_total", "Failed requests of a pool by kind: 5xx answers, connect failures, timeouts, invalid answers, no healthy instance.",
                            poolLabels + [("kind", kind)], value)
                }
                for instance in pool.instances {
                    let labels = poolLabels + [("instance", instance.address)]
                    for (index, count) in instance.answers.enumerated() {
                        counter("teal_requests_total", "Answers clients got from an instance (or from Teal on its behalf), by status class.",
                                labels + [("code_class", StatusClassCounter.label(ofClass: index))], count)
                    }
                    gauge("teal_instance_healthy", "1 when the instance may get requests (passes health checks and is not ejected).",
                          labels, instance.healthy ? 1 : 0)
                    gauge("teal_instance_ejected", "1 while the instance is ejected by passive health checking.",
                          labels, instance.ejected ? 1 : 0)
                    counter("teal_upstream_answer_overruns_total",
                            "Answers from the instance with bytes past their end (a body on 204, 304 or HEAD, more than Content-Length, data after the last chunk): the bytes were dropped and the connection closed.",
                            labels, instance.answerOverruns)
                    for (state, count) in [("busy", instance.busyConnections), ("idle", instance.idleConnections)] {
                        gauge("teal_upstream_connections", "Connections from Teal to the instance, busy (request in flight or connecting) or idle.",
                              labels + [("state", state)], Double(count))
                    }
                }
            }
        }
        var buffer: [UInt8] = []
        live.emit(into: &buffer)
        registry.emit(into: &buffer)
        return buffer
    }

}
