/// A sliding window over a pool's cumulative counters: a ring of buckets (by default 100 of
/// 100 ms, so 10 s), each holding what happened in its slice of time. Fed with cumulative
/// snapshots (`TrafficRecorder.snapshot()`) and the time they were taken; the window is the sum
/// of the buckets younger than its span. Pure: time is passed in.
public struct StatisticsWindow: Sendable {
    /// Length of one bucket.
    public let bucket: Duration
    /// Number of buckets; the window spans `bucket * count`.
    public let count: Int
    private var buckets: [PoolStatistics]
    private var bucketStart: [ContinuousClock.Instant?]
    private var last: PoolStatistics?

    public init(bucket: Duration = .milliseconds(100), count: Int = 100) {
        precondition(count > 0 && bucket > .zero)
        self.bucket = bucket
        self.count = count
        buckets = Array(repeating: PoolStatistics(), count: count)
        bucketStart = Array(repeating: nil, count: count)
    }

    /// The span the window covers.
    public var span: Duration { bucket * count }

    /// Adds what happened since the previous sample (`cumulative` minus the last one seen) to the
    /// bucket of `now`. The first sample only sets the baseline, and so does a sample that cannot
    /// follow the last one (a counter went backwards: the counters were replaced), so a swap of
    /// counters never shows as traffic. A sample before `epoch` or beyond about 290 years of it
    /// is out of range and only sets the baseline too.
    public mutating func record(cumulative: PoolStatistics, at now: ContinuousClock.Instant, epoch: ContinuousClock.Instant) {
        defer { last = cumulative }
        guard let last, cumulative.isSeries(after: last) else { return }
        let delta = cumulative.subtracting(last)
        let position = ((now - epoch) / bucket).rounded(.down)
        guard position >= 0, position < Double(Int64.max >> 8) else { return }
        let slot = Int(position)
        let index = ((slot % count) + count) % count
        let start = epoch + bucket * slot
        if bucketStart[index] != start {
            buckets[index] = PoolStatistics()
            bucketStart[index] = start
        }
        buckets[index] = buckets[index].adding(delta)
    }

    /// The counts of the buckets that started within the last `span` before `now`.
    public func total(at now: ContinuousClock.Instant) -> PoolStatistics {
        var sum = PoolStatistics()
        for index in 0..<count {
            guard let start = bucketStart[index], now - start < span, start <= now else { continue }
            sum = sum.adding(buckets[index])
        }
        return sum
    }
}
