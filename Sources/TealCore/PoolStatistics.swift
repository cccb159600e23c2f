/// What happened to one forwarded request, as the statistics count it.
public enum RequestOutcome: Sendable, Hashable {
    /// The instance answered with this status code.
    case response(status: Int)
    /// No connection could be made to any instance tried.
    case connectError
    /// The instance did not answer in time.
    case timeout
    /// The instance's answer was not valid HTTP, or it closed the connection mid-answer.
    case invalidResponse
    /// The pool had no healthy instance.
    case noHealthyInstance
}

/// Latency buckets: 4 per power of two of nanoseconds (a bucket's bounds differ by at most 25%), from
/// 16 µs up to about 69 s; faster requests land in the first bucket, slower in the last.
public enum LatencyBuckets {
    static let firstExponent = 14  // 2^14 ns = 16.4 µs
    static let lastExponent = 36   // 2^36 ns = 68.7 s
    static let perOctave = 4
    /// Number of buckets.
    public static let count = (lastExponent - firstExponent) * perOctave + 2

    /// The bucket a latency falls into.
    @inline(__always)
    public static func index(nanoseconds: UInt64) -> Int {
        if nanoseconds < (1 << firstExponent) { return 0 }
        let exponent = 63 - nanoseconds.leadingZeroBitCount
        if exponent >= lastExponent { return count - 1 }
        let sub = Int((nanoseconds >> UInt64(exponent - 2)) & 3)
        return (exponent - firstExponent) * perOctave + sub + 1
    }

    /// The largest latency, in nanoseconds, that falls into bucket `index` (the last is unbounded
    /// and reports its lower bound).
    public static func upperBound(ofBucket index: Int) -> UInt64 {
        if index == 0 { return (1 << firstExponent) - 1 }
        if index >= count - 1 { return 1 << lastExponent }
        let octave = (index - 1) / perOctave
        let sub = UInt64((index - 1) % perOctave)
        let exponent = UInt64(firstExponent + octave)
        let base: UInt64 = 1 << exponent
        return base + (sub + 1) * (base / 4) - 1
    }
}

/// Counts of one pool's traffic over some span: requests, errors by kind, and a latency histogram.
/// A plain value: subtract an earlier snapshot from a later one to get a window.
public struct PoolStatistics: Sendable, Hashable, Codable {
    /// Requests finished (answered by an instance, or failed).
    public var requests: UInt64 = 0
    /// Answers with status 500...599 from instances.
    public var serverErrors: UInt64 = 0
    /// Requests that failed to connect to any instance.
    public var connectErrors: UInt64 = 0
    /// Requests whose answer did not come in time.
    public var timeouts: UInt64 = 0
    /// Requests answered with an invalid response or cut off.
    public var invalidResponses: UInt64 = 0
    /// Requests that found no healthy instance.
    public var noHealthyInstance: UInt64 = 0
    /// Requests per latency bucket (see `LatencyBuckets`).
    public var latencyBuckets: [UInt64] = Array(repeating: 0, count: LatencyBuckets.count)

    public init() {}

    /// Errors of every kind: 5xx, connect errors, timeouts, invalid responses, no instance
    /// (saturating: counts never wrap into a small number).
    public var errors: UInt64 {
        [connectErrors, timeouts, invalidResponses, noHealthyInstance].reduce(serverErrors, Self.saturatingSum)
    }

    /// Errors over requests, 0 when there were no requests, at most 1.
    public var errorRate: Double { requests == 0 ? 0 : min(1, Double(errors) / Double(requests)) }

    /// The latency below which a fraction `quantile` (0...1) of requests fell, as the upper bound of
    /// its bucket (so at most 25% above the true value); `nil` with no requests.
    public func latency(quantile: Double) -> Duration? {
        let total = latencyBuckets.reduce(0, Self.saturatingSum)
        guard total > 0 else { return nil }
        // In Double, then back with a range check: the product of a huge count can round above
        // UInt64.max, and a NaN quantile must not trap.
        let wanted = ((quantile.isNaN ? 1 : min(max(quantile, 0), 1)) * Double(total)).rounded(.up)
        let rank = wanted >= Double(total) ? total : max(1, UInt64(wanted))
        var seen: UInt64 = 0
        for (index, count) in latencyBuckets.enumerated() {
            seen = Self.saturatingSum(seen, count)
            if seen >= rank { return .nanoseconds(Int64(LatencyBuckets.upperBound(ofBucket: index))) }
        }
        return .nanoseconds(Int64(LatencyBuckets.upperBound(ofBucket: LatencyBuckets.count - 1)))
    }

    /// Adds one request.
    public mutating func record(_ outcome: RequestOutcome, latencyNanoseconds: UInt64) {
        requests += 1
        switch outcome {
        case .response(let status): if status >= 500 { serverErrors += 1 }
        case .connectError: connectErrors += 1
        case .timeout: timeouts += 1
        case .invalidResponse: invalidResponses += 1
        case .noHealthyInstance: noHealthyInstance += 1
        }
        latencyBuckets[LatencyBuckets.index(nanoseconds: latencyNanoseconds)] += 1
    }

    /// The counts that happened after `earlier` (a snapshot of the same counters taken before).
    /// A counter that went backwards (other counters, a reset) counts 0, never a wrapped-around
    /// huge number; `isSeries(after:)` tells whether that happened.
    public func subtracting(_ earlier: PoolStatistics) -> PoolStatistics {
        combined(with: earlier) { $0 >= $1 ? $0 - $1 : 0 }
    }

    /// The sum of two sets of counts, saturating at `UInt64.max`.
    public func adding(_ other: PoolStatistics) -> PoolStatistics {
        combined(with: other, Self.saturatingSum)
    }

    /// Whether these counts can follow `earlier` in one series of cumulative counts: no counter is
    /// lower. When it is not, the counters were replaced (a promotion swaps pools' counters).
    public func isSeries(after earlier: PoolStatistics) -> Bool {
        guard requests >= earlier.requests, serverErrors >= earlier.serverErrors, connectErrors >= earlier.connectErrors,
              timeouts >= earlier.timeouts, invalidResponses >= earlier.invalidResponses,
              noHealthyInstance >= earlier.noHealthyInstance else { return false }
        return zip(latencyBuckets, earlier.latencyBuckets).allSatisfy { $0 >= $1 }
    }

    @inline(__always)
    static func saturatingSum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }

    /// Every counter of `self` combined with the same counter of `other` by `operation`.
    private func combined(with other: PoolStatistics, _ operation: (UInt64, UInt64) -> UInt64) -> PoolStatistics {
        var result = PoolStatistics()
        result.requests = operation(requests, other.requests)
        result.serverErrors = operation(serverErrors, other.serverErrors)
        result.connectErrors = operation(connectErrors, other.connectErrors)
        result.timeouts = operation(timeouts, other.timeouts)
        result.invalidResponses = operation(invalidResponses, other.invalidResponses)
        result.noHealthyInstance = operation(noHealthyInstance, other.noHealthyInstance)
        for index in latencyBuckets.indices {
            result.latencyBuckets[index] = operation(latencyBuckets[index], other.latencyBuckets[index])
        }
        return result
    }
}
