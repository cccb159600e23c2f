/// Green's failures answered by blue (route file `rollout.retryOnBlue`): while a release gives
/// green a share, a retry-safe request that green fails before any byte of the answer reached the
/// client is sent once more, to blue, and the client gets blue's answer. Green's failure still
/// counts in green's statistics, so the verdict sees it.
public struct BlueRetryPolicy: Hashable, Sendable, Codable {
    /// On unless the route file says `retryOnBlue: {enabled: false}`.
    public var enabled = true
    /// Green's 500 answers are retried too (502, 503 and 504 always are).
    public var on500 = false
    /// Retries are at most this share of the route's requests (per event loop, after a first
    /// burst of `BlueRetryBudget.burst`), so a failing green cannot double blue's load.
    public var budget = 0.2
    /// Request bodies up to this many bytes as forwarded (with their chunk framing, when chunked)
    /// are kept while they go to green, so the request can be sent to blue too; a larger body
    /// makes the request one that is not repeated.
    public var maxBody = 64 * 1024

    public init() {}

    /// Whether green's answer with `status` is retried on blue.
    @inline(__always)
    public func retries(status: Int) -> Bool {
        status == 502 || status == 503 || status == 504 || (on500 && status == 500)
    }
}

/// Why a request was sent again to blue: the label of `teal_retries_total`.
public enum BlueRetryReason: Int, CaseIterable, Sendable {
    case connect, reset, timeout, status500, status502, status503, status504

    public var label: String {
        switch self {
        case .connect: "connect"
        case .reset: "reset"
        case .timeout: "timeout"
        case .status500: "status_500"
        case .status502: "status_502"
        case .status503: "status_503"
        case .status504: "status_504"
        }
    }

    public init?(status: Int) {
        switch status {
        case 500: self = .status500
        case 502: self = .status502
        case 503: self = .status503
        case 504: self = .status504
        default: return nil
        }
    }
}

/// The retry budget of one route on one event loop: a token bucket that every request of the
/// route fills by `share` of a retry (up to `burst`), and every retry empties by one. It is fed
/// the route's request count on that loop when a retry is asked for, so requests cost nothing
/// here. Pure.
public struct BlueRetryBudget: Sendable {
    /// Retries allowed at once before requests have paid for them.
    public static let burst = 10.0
    public let share: Double
    private var tokens = Self.burst
    private var seen: UInt64

    /// A budget that starts full, with `requests` already counted on this loop.
    public init(share: Double, requests: UInt64) {
        self.share = share
        seen = requests
    }

    /// Whether one more retry is allowed, given the route's request count on this loop now; takes it when so.
    /// A count below the last one seen means the route's counters were replaced (a promotion
    /// hands blue green's counters): it becomes the new baseline.
    public mutating func take(requests: UInt64) -> Bool {
        if requests > seen { tokens = min(Self.burst, tokens + Double(requests - seen) * share) }
        seen = requests
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
