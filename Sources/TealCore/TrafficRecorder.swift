import Synchronization

/// Cumulative, exact counters of one pool's traffic, cheap enough to bump on every request.
///
/// The counters are split into shards, one per event loop, so threads never write the same cache
/// line; `snapshot()` adds the shards up. Writers use relaxed atomic adds and never block.
public final class TrafficRecorder: Sendable {
    private static let fieldCount = 6
    private static let stride = fieldCount + LatencyBuckets.count
    // One block per shard, padded to a multiple of 128 bytes so shards never share a cache line.
    private static let shardStride = (stride + 15) / 16 * 16
    private nonisolated(unsafe) let counters: UnsafeMutablePointer<Atomic<UInt64>>
    /// Number of shards; `record(shard:)` takes `0..<shardCount`.
    public let shardCount: Int

    public init(shards: Int) {
        precondition(shards > 0)
        shardCount = shards
        let total = shards * Self.shardStride
        counters = .allocate(capacity: total)
        for index in 0..<total { (counters + index).initialize(to: Atomic(0)) }
    }

    deinit {
        counters.deinitialize(count: shardCount * Self.shardStride)
        counters.deallocate()
    }

    /// Counts one request in `shard` (the caller's event loop index; any index works, shards only
    /// avoid contention).
    @inline(__always)
    public func record(shard: Int, outcome: RequestOutcome, latencyNanoseconds: UInt64) {
        let base = counters + (shard % shardCount) * Self.shardStride
        base[0].wrappingAdd(1, ordering: .relaxed)
        switch outcome {
        case .response(let status): if status >= 500 { base[1].wrappingAdd(1, ordering: .relaxed) }
        case .connectError: base[2].wrappingAdd(1, ordering: .relaxed)
        case .timeout: base[3].wrappingAdd(1, ordering: .relaxed)
        case .invalidResponse: base[4].wrappingAdd(1, ordering: .relaxed)
        case .noHealthyInstance: base[5].wrappingAdd(1, ordering: .relaxed)
        }
        base[Self.fieldCount + LatencyBuckets.index(nanoseconds: latencyNanoseconds)].wrappingAdd(1, ordering: .relaxed)
    }

    /// The requests counted in one shard (an event loop reads its own, cheaply).
    @inline(__always)
    public func requests(shard: Int) -> UInt64 {
        counters[(shard % shardCount) * Self.shardStride].load(ordering: .relaxed)
    }

    /// The counts since the recorder was made, summed over shards. Counters read while requests
    /// are being recorded may be one request apart from each other; each is exact.
    public func snapshot() -> PoolStatistics {
        var stats = PoolStatistics()
        for shard in 0..<shardCount {
            let base = counters + shard * Self.shardStride
            stats.requests &+= base[0].load(ordering: .relaxed)
            stats.serverErrors &+= base[1].load(ordering: .relaxed)
            stats.connectErrors &+= base[2].load(ordering: .relaxed)
            stats.timeouts &+= base[3].load(ordering: .relaxed)
            stats.invalidResponses &+= base[4].load(ordering: .relaxed)
            stats.noHealthyInstance &+= base[5].load(ordering: .relaxed)
            for bucket in 0..<LatencyBuckets.count {
                stats.latencyBuckets[bucket] &+= base[Self.fieldCount + bucket].load(ordering: .relaxed)
            }
        }
        return stats
    }
}

/// Cumulative answers of one instance by status class (1xx … 5xx), sharded like
/// `TrafficRecorder` so event loops never write the same cache line.
public final class StatusClassCounter: Sendable {
    /// Number of classes: 1xx, 2xx, 3xx, 4xx, 5xx.
    public static let classCount = 5
    private let counters: ShardedCounters

    public init(shards: Int) {
        counters = ShardedCounters(shards: shards, fields: Self.classCount)
    }

    public var shardCount: Int { counters.shardCount }

    /// The class index of a status code: 0 for 1xx … 4 for 5xx (out-of-range codes clamp).
    @inline(__always)
    public static func classIndex(status: Int) -> Int {
        min(max(status / 100, 1), 5) - 1
    }

    /// The label of a class index: "1xx" … "5xx".
    public static func label(ofClass index: Int) -> String { "\(index + 1)xx" }

    /// Counts one answer with `status` in `shard`.
    @inline(__always)
    public func record(shard: Int, status: Int) {
        counters.add(shard: shard, field: Self.classIndex(status: status))
    }

    /// The counts per class since the counter was made, summed over shards.
    public func snapshot() -> [UInt64] { counters.snapshot() }
}

/// A few exact counters (at most 16), sharded like `TrafficRecorder` so event loops never write
/// the same cache line; `snapshot()` adds the shards up.
public final class ShardedCounters: Sendable {
    // 16 × 8 bytes a shard: two cache lines, so neighbours never share one.
    private static let shardStride = 16
    private nonisolated(unsafe) let counters: UnsafeMutablePointer<Atomic<UInt64>>
    public let shardCount: Int
    public let fieldCount: Int

    public init(shards: Int, fields: Int) {
        precondition(shards > 0 && (1...Self.shardStride).contains(fields))
        shardCount = shards
        fieldCount = fields
        counters = .allocate(capacity: shards * Self.shardStride)
        for index in 0..<shards * Self.shardStride { (counters + index).initialize(to: Atomic(0)) }
    }

    deinit {
        counters.deinitialize(count: shardCount * Self.shardStride)
        counters.deallocate()
    }

    /// Adds one to `field` in `shard`.
    @inline(__always)
    public func add(shard: Int, field: Int) {
        counters[(shard % shardCount) * Self.shardStride + field].wrappingAdd(1, ordering: .relaxed)
    }

    /// All fields of one shard added up (an event loop reads its own, cheaply).
    public func total(shard: Int) -> UInt64 {
        var sum: UInt64 = 0
        for field in 0..<fieldCount { sum &+= counters[(shard % shardCount) * Self.shardStride + field].load(ordering: .relaxed) }
        return sum
    }

    /// The counts per field since the counters were made, summed over shards.
    public func snapshot() -> [UInt64] {
        var totals = [UInt64](repeating: 0, count: fieldCount)
        for shard in 0..<shardCount {
            for index in 0..<fieldCount {
                totals[index] &+= counters[shard * Self.shardStride + index].load(ordering: .relaxed)
            }
        }
        return totals
    }
}
