/// Why a release was (or would be) rolled back, with the numbers that decided it.
public enum RollbackReason: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Green's error rate in the window was above the policy's limit.
    case errorRate(green: Double, limit: Double, requests: UInt64)
    /// Green's 99th percentile latency was above the limit.
    case latency(p99: Duration, limit: Duration, requests: UInt64)
    /// Green's error rate was clearly worse than blue's over the same window.
    case worseThanBlue(green: Double, blue: Double, z: Double, greenRequests: UInt64, blueRequests: UInt64)
    /// Green got no requests for longer than the policy allows.
    case noTraffic(for: Duration)
    /// A smoke request to a green instance failed.
    case smokeFailed(instance: InstanceAddress, request: String, detail: String)
    /// A hook failed before a step: which event's, its command (as `ReleaseHooks.display` shows
    /// it; `nil` in records from before commands were kept), and what came back.
    case hookFailed(event: String, command: String? = nil, detail: String)
    /// An alert named the route.
    case alert(name: String)
    /// An operator aborted the release.
    case aborted(by: String)

    /// A short, stable name of the kind of reason, for metric labels: error_rate, latency,
    /// worse_than_blue, no_traffic, smoke_failed, hook_failed, alert, aborted.
    public var kind: String {
        switch self {
        case .errorRate: "error_rate"
        case .latency: "latency"
        case .worseThanBlue: "worse_than_blue"
        case .noTraffic: "no_traffic"
        case .smokeFailed: "smoke_failed"
        case .hookFailed: "hook_failed"
        case .alert: "alert"
        case .aborted: "aborted"
        }
    }

    public var description: String {
        func percent(_ value: Double) -> String { "\((value * 1000).rounded() / 10)%" }
        switch self {
        case .errorRate(let green, let limit, let requests):
            return "green error rate \(percent(green)) over \(requests) requests exceeds \(percent(limit))"
        case .latency(let p99, let limit, let requests):
            return "green p99 \(p99) over \(requests) requests exceeds \(limit)"
        case .worseThanBlue(let green, let blue, let z, let greenRequests, let blueRequests):
            return "green error rate \(percent(green)) (\(greenRequests) requests) is worse than blue's \(percent(blue)) "
                + "(\(blueRequests) requests), z = \((z * 10).rounded() / 10)"
        case .noTraffic(let duration):
            return "green received no requests for \(duration)"
        case .smokeFailed(let instance, let request, let detail):
            return "smoke request \(request) to \(instance) failed: \(detail)"
        case .hookFailed(let event, let command, let detail):
            return "\(event) hook \(command.map { "\($0) " } ?? "")failed: \(detail)"
        case .alert(let name):
            return "alert \(name) fired"
        case .aborted(let who):
            return "aborted by \(who)"
        }
    }
}

/// Decides from one window of blue's and green's traffic whether green is healthy.
///
/// Rules, with at least `policy.minRequests` green requests in the window (fewer: no verdict):
/// 1. green's error rate above `policy.maxErrorRate` → roll back;
/// 2. green's p99 above `policy.maxP99` (when set) → roll back;
/// 3. green clearly worse than blue → roll back. "Clearly" means a one-sided two-proportion z-test
///    with z ≥ `zThreshold` (3.0: about 1 in 700 by chance for equal versions) AND green's rate at
///    least `minExcess` (1 percentage point) above blue's, with at least `policy.minRequests`
///    requests on each side; small samples and tiny differences never trigger it.
public enum ReleaseVerdict {
    public static let zThreshold = 3.0
    public static let minExcess = 0.01

    /// `nil` when green is healthy or there is too little data; otherwise why to roll back.
    public static func evaluate(green: PoolStatistics, blue: PoolStatistics, policy: RollbackPolicy) -> RollbackReason? {
        let minimum = UInt64(max(1, policy.minRequests))
        guard green.requests >= minimum else { return nil }
        if green.errorRate > policy.maxErrorRate {
            return .errorRate(green: green.errorRate, limit: policy.maxErrorRate, requests: green.requests)
        }
        if let limit = policy.maxP99, let p99 = green.latency(quantile: 0.99), p99 > limit {
            return .latency(p99: p99, limit: limit, requests: green.requests)
        }
        guard blue.requests >= minimum else { return nil }
        let z = zScore(green: green, blue: blue)
        if z >= zThreshold && green.errorRate - blue.errorRate >= minExcess {
            return .worseThanBlue(green: green.errorRate, blue: blue.errorRate, z: z,
                                  greenRequests: green.requests, blueRequests: blue.requests)
        }
        return nil
    }

    /// The two-proportion z statistic for "green's error rate is above blue's" (pooled variance);
    /// 0 when the pooled rate is 0 or 1.
    public static func zScore(green: PoolStatistics, blue: PoolStatistics) -> Double {
        let n1 = Double(green.requests), n2 = Double(blue.requests)
        guard n1 > 0, n2 > 0 else { return 0 }
        let pooled = min(1, (Double(green.errors) + Double(blue.errors)) / (n1 + n2))
        let variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
        guard variance > 0 else { return 0 }
        return (green.errorRate - blue.errorRate) / variance.squareRoot()
    }
}
