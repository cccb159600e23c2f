/// Which side of a release a pool is on.
public enum PoolColor: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The running version.
    case blue = 0
    /// The version being released.
    case green = 1

    public var description: String { self == .blue ? "blue" : "green" }
}

/// An upstream instance's address: a host name or IP literal and a TCP port.
public struct InstanceAddress: Hashable, Sendable, CustomStringConvertible, Comparable, Codable {
    /// Host name, IPv4 literal, or IPv6 literal without brackets.
    public let host: String
    /// TCP port, 1...65535.
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `1.2.3.4:80` or `[::1]:80`; `nil` when malformed. Host names are
    /// printable ASCII (IDNs in their `xn--` form): Swift compares characters, and a combining
    /// mark or emoji modifier would join a `[` or `:` into another character and hide it.
    public init?(parsing text: some StringProtocol) {
        let text = text.trimmingSpaces
        guard text.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else { return nil }
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
            guard hostPart.contains(":") else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            guard !hostPart.contains(":") else { return nil }
        }
        guard !hostPart.isEmpty, !hostPart.contains(where: { $0 == " " || $0 == "/" }),
              portPart.allSatisfy(\.isASCIIDigit), let port = Int(portPart), (1...65535).contains(port) else { return nil }
        self.init(host: String(hostPart), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.host, lhs.port) < (rhs.host, rhs.port)
    }
}

/// A set of instances that run one version of an application.
public struct PoolSpec: Hashable, Sendable, Codable {
    /// The application version the pool runs, for display and the journal.
    public var version: String?
    /// The pool's instances, without duplicates.
    public var instances: [InstanceAddress]
    /// HTTPS to the instances, when set.
    public var tls: UpstreamTLS?
    /// When set, `instances` is what this DNS name resolved to last (kept up to date by
    /// re-resolving); the route file lists no instances then.
    public var dns: DNSDiscovery?

    public init(version: String? = nil, instances: [InstanceAddress], tls: UpstreamTLS? = nil, dns: DNSDiscovery? = nil) {
        self.version = version
        self.instances = instances
        self.tls = tls
        self.dns = dns
    }

    /// Whether `other` is the same pool as a route file or a release defines it: equal, or for
    /// DNS pools the same name, version and TLS whatever the name resolves to now.
    public func isSameDefinition(as other: PoolSpec?) -> Bool {
        guard let other else { return false }
        guard let dns, other.dns == dns else { return self == other }
        return version == other.version && tls == other.tls
    }
}

/// A pool whose instances are the A and AAAA records of a DNS name (for example a Kubernetes
/// headless Service), re-resolved every `interval`.
public struct DNSDiscovery: Hashable, Sendable, Codable, CustomStringConvertible {
    public var name: String
    public var port: Int
    public var interval: Duration

    public init(name: String, port: Int, interval: Duration = .seconds(5)) {
        self.name = name
        self.port = port
        self.interval = interval
    }

    public var description: String { "\(name):\(port)" }
}

/// HTTPS from Teal to a pool's instances: the certificate is always verified, against `caFile`
/// (PEM) or the system's trust store, for `serverName` (also sent as SNI) or else the instance's
/// host.
public struct UpstreamTLS: Hashable, Sendable, Codable {
    public var caFile: String?
    public var serverName: String?

    public init(caFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.serverName = serverName
    }
}

/// Which requests a route takes: by `Host` (exact, or `*.suffix` wildcard) and path prefix.
public struct RouteMatch: Hashable, Sendable, CustomStringConvertible {
    /// The host the route serves; `nil` matches any host.
    public var host: HostPattern?
    /// The path prefix the route serves; `nil` (or `/`) matches every path.
    public var pathPrefix: String?

    public init(host: HostPattern? = nil, pathPrefix: String? = nil) {
        self.host = host
        self.pathPrefix = pathPrefix
    }

    /// A match that takes every request: a route with it is the default route.
    public static let any = RouteMatch()

    /// The prefix that is actually compared (`/` when none is given).
    public var effectivePathPrefix: String { pathPrefix ?? "/" }

    public var description: String {
        "host \(host?.description ?? "*any*") path \(effectivePathPrefix)"
    }
}

/// A `Host` pattern: an exact name, or `*.example.com` which matches any name ending in
/// `.example.com` (but not `example.com` itself). Compared case-insensitively, port ignored.
public enum HostPattern: Hashable, Sendable, CustomStringConvertible {
    /// Exactly this host name (lowercased).
    case exact(String)
    /// Any name that ends with this suffix, which starts with a dot (lowercased).
    case suffix(String)

    /// Parses `shop.example.com` or `*.example.com`; `nil` when empty or the wildcard is misplaced.
    public init?(parsing text: some StringProtocol) {
        var lower = text.trimmingSpaces.lowercased()
        if lower.hasSuffix(".") { lower.removeLast() }  // `shop.example.com.` is the same name
        guard !lower.isEmpty, !lower.contains(where: { $0 == " " || $0 == "/" || $0 == ":" }) else { return nil }
        if lower.hasPrefix("*.") {
            let suffix = String(lower.dropFirst())
            guard suffix.count > 1, !suffix.dropFirst().contains("*") else { return nil }
            self = .suffix(suffix)
        } else {
            guard !lower.contains("*") else { return nil }
            self = .exact(lower)
        }
    }

    public var description: String {
        switch self {
        case .exact(let host): host
        case .suffix(let suffix): "*" + suffix
        }
    }
}

/// How instances are probed for health, and when a failing one is taken out.
public struct HealthCheckSpec: Hashable, Sendable {
    /// Path that is requested with `GET`; a 2xx or 3xx answer is healthy.
    public var path: String = "/healthz"
    /// Time between probes of one instance.
    public var interval: Duration = .seconds(2)
    /// How long a probe may take before it counts as failed.
    public var timeout: Duration = .seconds(1)
    /// Consecutive passing probes that bring an unhealthy instance back.
    public var rise: Int = 2
    /// Consecutive failing probes that mark a healthy instance unhealthy.
    public var fall: Int = 3
    /// Consecutive connect failures or timeouts on live traffic that eject an instance.
    public var ejectAfter: Int = 5
    /// How long the first ejection lasts; each repeat doubles it, up to `maxEjection`.
    public var ejection: Duration = .seconds(10)
    /// The longest an ejection lasts.
    public var maxEjection: Duration = .seconds(300)
    /// Whether active probes run at all.
    public var enabled: Bool = true

    public init() {}
}

/// Timeouts and retries for requests forwarded to a route's instances.
public struct UpstreamSpec: Hashable, Sendable {
    /// Time to establish a TCP connection to an instance.
    public var connectTimeout: Duration = .seconds(2)
    /// Time from the request being sent until the response head arrives (504 after).
    public var responseTimeout: Duration = .seconds(30)
    /// Attempts per request across different instances of the chosen pool (1 = no retry).
    public var maxTries: Int = 3

    public init() {}
}

/// A request that a release sends directly to every green instance before green gets traffic.
public struct SmokeRequest: Hashable, Sendable, Codable {
    public var method: String = "GET"
    public var path: String
    /// The status code the answer must have.
    public var expect: Int = 200
    /// A substring the answer's body must contain, if set.
    public var bodyContains: String?
    public var timeout: Duration = .seconds(2)

    public init(path: String) { self.path = path }
}

/// When a release is rolled back.
public struct RollbackPolicy: Hashable, Sendable, Codable {
    /// Green's error rate (0...1) above which the release rolls back.
    public var maxErrorRate: Double = 0.05
    /// Green requests needed in the window before any verdict.
    public var minRequests: Int = 50
    /// Green's 99th percentile latency above which the release rolls back, if set.
    public var maxP99: Duration?

    public init() {}
}

/// One step of a release plan: a split and how long it holds, or a manual gate.
public struct PlanStep: Hashable, Sendable, CustomStringConvertible, Codable {
    public var split: Split
    /// How long the step holds; `nil` uses the policy's `hold`.
    public var hold: Duration?
    /// A gate waits for `resume` or `promote` instead of a timer.
    public var manualGate: Bool

    public init(split: Split, hold: Duration? = nil, manualGate: Bool = false) {
        self.split = split
        self.hold = hold
        self.manualGate = manualGate
    }

    public var description: String { manualGate ? "\(split) (gate)" : split.description }
}

/// A route's release policy: plan, holds, smoke requests, rollback thresholds and hooks.
public struct RolloutPolicy: Hashable, Sendable, Codable {
    public var steps: [PlanStep]
    /// Default hold time of each step.
    public var hold: Duration = .seconds(30)
    public var smoke: [SmokeRequest] = []
    public var rollback = RollbackPolicy()
    /// What happens when green gets no requests while it has a share.
    public var onNoTraffic = NoTrafficPolicy.wait
    /// Commands run at release events.
    public var hooks = ReleaseHooks()
    /// Start a release of the route's green pool as soon as the router starts (until the admin
    /// API can start one).
    public var autoStart = false

    public init(steps: [PlanStep]) { self.steps = steps }

    /// All blue in this plan's terms: its first all-blue step (`6/0` in `[6/0, 2/4, 0/6]`), else
    /// all blue at the largest scale among its steps (`6/0` for `[2/4, 0/6]`). Rollbacks, aborts
    /// and promotions of a release by this plan set this split.
    public var allBlue: Split {
        if let first = steps.first(where: { $0.split.isAllBlue }) { return first.split }
        return .allBlue(scale: steps.map(\.split.scale).max() ?? 1)
    }
}

/// Shell commands run at release events, with `TEAL_ROUTE`, `TEAL_EVENT`, `TEAL_STEP`,
/// `TEAL_SPLIT`, `TEAL_BLUE_WEIGHT`, `TEAL_GREEN_WEIGHT`, `TEAL_GREEN_VERSION` in the environment.
public struct ReleaseHooks: Hashable, Sendable, Codable {
    /// Before each step's split is set; a failure (non-zero exit or timeout) rolls back.
    public var step: String?
    /// After promotion.
    public var promoted: String?
    /// After a rollback or an abort.
    public var rolledBack: String?
    /// Longest a hook may run.
    public var timeout: Duration = .seconds(60)

    public init() {}

    /// Longest a command is shown in the journal and rollback reasons.
    public static let displayLength = 120

    /// A command as the journal shows it: its first non-blank line, cut at `displayLength`
    /// characters (with `…`); a multi-line script ends in ` …`.
    public static func display(_ command: String) -> String {
        let lines = command.split(whereSeparator: \.isNewline).map { $0.trimmingSpaces }.filter { !$0.isEmpty }
        guard let first = lines.first else { return command }
        var shown = first.count > displayLength ? String(first.prefix(displayLength)) + "…" : String(first)
        if lines.count > 1 { shown += " …" }
        return shown
    }
}

/// Lets testers reach green through the router whatever the split: a request with the header
/// (or cookie) set to the value goes to green. Off unless the route has a `preview` block.
public struct PreviewAccess: Hashable, Sendable {
    /// Header that selects green.
    public var header = "X-Teal-Pool"
    /// Value the header (or cookie) must have; set a secret here to keep previews private.
    public var value = "green"
    /// Cookie that selects green too, when set.
    public var cookie: String?

    public init() {}
}

/// A route: which requests it takes, its blue and green pools, the split between them now,
/// and how it is checked and released.
public struct Route: Hashable, Sendable {
    /// Unique name.
    public var name: String
    public var match: RouteMatch
    public var blue: PoolSpec
    public var green: PoolSpec?
    public var split: Split
    public var rollout: RolloutPolicy?
    public var health = HealthCheckSpec()
    public var upstream = UpstreamSpec()
    /// Preview access to green; `nil` (the default) turns it off.
    public var preview: PreviewAccess?
    /// Green's failures answered by blue during a release (route file `rollout.retryOnBlue`).
    public var retryOnBlue = BlueRetryPolicy()
    /// Version-sticky sessions; `nil` (the default): every request is split on its own.
    public var sticky: StickySessions?

    public init(name: String, match: RouteMatch = .any, blue: PoolSpec, green: PoolSpec? = nil,
                split: Split = .allBlue, rollout: RolloutPolicy? = nil) {
        self.name = name
        self.match = match
        self.blue = blue
        self.green = green
        self.split = split
        self.rollout = rollout
    }

    /// All blue in this route's terms: its plan's (`RolloutPolicy.allBlue`) when it has one, else
    /// at the scale of its split (`6/0` for a route at `6/0` or `2/4`).
    public var allBlue: Split {
        rollout?.allBlue ?? .allBlue(scale: split.scale)
    }

    /// The pool of a colour; green is empty when the route has none.
    public func pool(_ color: PoolColor) -> PoolSpec {
        switch color {
        case .blue: blue
        case .green: green ?? PoolSpec(instances: [])
        }
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
