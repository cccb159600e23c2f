import Dispatch
import TealCore
import TealTestSupport
import Testing

@Suite struct LatencyBucketsTests {
    /// Latencies from 0 up past the last bucket: every bucket boundary and its neighbours, plus a
    /// deterministic spread of values in between.
    static let samples: [UInt64] = {
        var values: Set<UInt64> = [0, 1, 2, 1000, 16_383, 16_384, 16_385, 1 << 36, (1 << 36) - 1, (1 << 36) + 1,
                                   1 << 40, UInt64(Int64.max)]
        for index in 0..<(LatencyBuckets.count - 1) {
            let bound = LatencyBuckets.upperBound(ofBucket: index)
            values.formUnion([bound - 1, bound, bound + 1])
        }
        var generator = SplitMix64(seed: 42)
        for _ in 0..<20_000 {
            // log-uniform from 1 ns to 2^40 ns
            let exponent = UInt64.random(in: 0...40, using: &generator)
            values.insert(UInt64.random(in: 0...(1 << exponent), using: &generator))
        }
        return values.sorted()
    }()

    @Test func layout() {
        #expect(LatencyBuckets.count == 90)
        #expect(LatencyBuckets.upperBound(ofBucket: 0) == 16_383)
        #expect(LatencyBuckets.upperBound(ofBucket: 1) == 16_384 + 4096 - 1)
        #expect(LatencyBuckets.upperBound(ofBucket: 4) == 32_767)
        #expect(LatencyBuckets.upperBound(ofBucket: LatencyBuckets.count - 2) == (1 << 36) - 1)
        #expect(LatencyBuckets.upperBound(ofBucket: LatencyBuckets.count - 1) == 1 << 36)
        #expect(LatencyBuckets.index(nanoseconds: 0) == 0)
        #expect(LatencyBuckets.index(nanoseconds: 16_383) == 0)
        #expect(LatencyBuckets.index(nanoseconds: 16_384) == 1)
        #expect(LatencyBuckets.index(nanoseconds: (1 << 36) - 1) == LatencyBuckets.count - 2)
        #expect(LatencyBuckets.index(nanoseconds: 1 << 36) == LatencyBuckets.count - 1)
        #expect(LatencyBuckets.index(nanoseconds: .max) == LatencyBuckets.count - 1)
    }

    @Test func indexIsMonotonicAndWithinBounds() {
        var previous = 0
        var failures: [UInt64] = []
        for latency in Self.samples {
            let index = LatencyBuckets.index(nanoseconds: latency)
            if index < previous || index < 0 || index >= LatencyBuckets.count { failures.append(latency) }
            previous = index
            if index < LatencyBuckets.count - 1 {
                if latency > LatencyBuckets.upperBound(ofBucket: index) { failures.append(latency) }
            } else if latency < LatencyBuckets.upperBound(ofBucket: index) {
                // the last bucket reports its lower bound
                failures.append(latency)
            }
            if index > 0, latency <= LatencyBuckets.upperBound(ofBucket: index - 1) { failures.append(latency) }
        }
        #expect(failures.isEmpty, "latencies in a wrong bucket: \(failures.prefix(10))")
    }

    @Test func everyBucketBoundIsTight() {
        for index in 0..<(LatencyBuckets.count - 1) {
            let bound = LatencyBuckets.upperBound(ofBucket: index)
            #expect(LatencyBuckets.index(nanoseconds: bound) == index)
            #expect(LatencyBuckets.index(nanoseconds: bound + 1) == index + 1)
        }
    }

    @Test func bucketsAreAtMostNineteenPercentWide() {
        for index in 2..<(LatencyBuckets.count - 1) {
            let lower = Double(LatencyBuckets.upperBound(ofBucket: index - 1) + 1)
            let upper = Double(LatencyBuckets.upperBound(ofBucket: index))
            #expect(upper / lower < 1.26)
            #expect((upper - lower) / upper <= 0.2)
        }
    }
}

@Suite struct PoolStatisticsTests {
    private static let fast: UInt64 = 100_000          // 100 µs
    private static let slow: UInt64 = 1_000_000_000    // 1 s

    private func bound(_ latency: UInt64) -> Duration {
        .nanoseconds(Int64(LatencyBuckets.upperBound(ofBucket: LatencyBuckets.index(nanoseconds: latency))))
    }

    @Test func emptyStatistics() {
        let stats = PoolStatistics()
        #expect(stats.requests == 0)
        #expect(stats.errors == 0)
        #expect(stats.errorRate == 0)
        #expect(stats.latency(quantile: 0.99) == nil)
        #expect(stats.latencyBuckets.count == LatencyBuckets.count)
    }

    @Test func quantilesOnKnownData() {
        var stats = PoolStatistics()
        for _ in 0..<99 { stats.record(.response(status: 200), latencyNanoseconds: Self.fast) }
        stats.record(.response(status: 200), latencyNanoseconds: Self.slow)
        #expect(stats.latency(quantile: 0.99) == bound(Self.fast))
        #expect(stats.latency(quantile: 1.0) == bound(Self.slow))
        #expect(stats.latency(quantile: 0.5) == bound(Self.fast))
        #expect(stats.latency(quantile: 0) == bound(Self.fast))
        #expect(bound(Self.fast) >= .nanoseconds(Int64(Self.fast)))
        #expect(bound(Self.fast) < .nanoseconds(Int64(Self.fast) * 6 / 5))
        #expect(bound(Self.slow) >= .seconds(1))
    }

    @Test func quantilesAcrossThreeBuckets() {
        var stats = PoolStatistics()
        for _ in 0..<50 { stats.record(.response(status: 200), latencyNanoseconds: 20_000) }
        for _ in 0..<40 { stats.record(.response(status: 200), latencyNanoseconds: 1_000_000) }
        for _ in 0..<10 { stats.record(.response(status: 200), latencyNanoseconds: 50_000_000) }
        #expect(stats.latency(quantile: 0.5) == bound(20_000))
        #expect(stats.latency(quantile: 0.51) == bound(1_000_000))
        #expect(stats.latency(quantile: 0.9) == bound(1_000_000))
        #expect(stats.latency(quantile: 0.91) == bound(50_000_000))
        #expect(stats.latency(quantile: 0.99) == bound(50_000_000))
    }

    @Test func recordsOutcomesAndErrorRate() {
        var stats = PoolStatistics()
        stats.record(.response(status: 200), latencyNanoseconds: 1)
        stats.record(.response(status: 404), latencyNanoseconds: 1)
        stats.record(.response(status: 499), latencyNanoseconds: 1)
        stats.record(.response(status: 500), latencyNanoseconds: 1)
        stats.record(.response(status: 503), latencyNanoseconds: 1)
        stats.record(.connectError, latencyNanoseconds: 1)
        stats.record(.timeout, latencyNanoseconds: 1)
        stats.record(.invalidResponse, latencyNanoseconds: 1)
        stats.record(.noHealthyInstance, latencyNanoseconds: 1)
        stats.record(.response(status: 302), latencyNanoseconds: 1)
        #expect(stats.requests == 10)
        #expect(stats.serverErrors == 2)
        #expect(stats.connectErrors == 1)
        #expect(stats.timeouts == 1)
        #expect(stats.invalidResponses == 1)
        #expect(stats.noHealthyInstance == 1)
        #expect(stats.errors == 6)
        #expect(stats.errorRate == 0.6)
        #expect(stats.latencyBuckets[0] == 10)
        #expect(stats.latencyBuckets.reduce(0, +) == 10)
    }

    @Test func subtractingGivesTheWindow() {
        var earlier = PoolStatistics()
        for index in 0..<30 {
            earlier.record(index % 3 == 0 ? .response(status: 500) : .response(status: 200), latencyNanoseconds: Self.fast)
        }
        var later = earlier
        for _ in 0..<10 { later.record(.timeout, latencyNanoseconds: Self.slow) }
        for _ in 0..<10 { later.record(.response(status: 200), latencyNanoseconds: Self.fast) }
        let window = later.subtracting(earlier)
        #expect(window.requests == 20)
        #expect(window.serverErrors == 0)
        #expect(window.timeouts == 10)
        #expect(window.errorRate == 0.5)
        #expect(window.latencyBuckets[LatencyBuckets.index(nanoseconds: Self.slow)] == 10)
        #expect(window.latencyBuckets[LatencyBuckets.index(nanoseconds: Self.fast)] == 10)
        #expect(window.latencyBuckets.reduce(0, +) == 20)
        #expect(window.latency(quantile: 0.5) == bound(Self.fast))
        #expect(window.latency(quantile: 0.51) == bound(Self.slow))
        #expect(later.subtracting(later) == PoolStatistics())
    }

    @Test func addingSumsAndSubtractingUndoes() {
        var a = PoolStatistics(), b = PoolStatistics()
        a.record(.response(status: 500), latencyNanoseconds: 5_000)
        a.record(.connectError, latencyNanoseconds: 70_000)
        b.record(.timeout, latencyNanoseconds: 70_000)
        b.record(.invalidResponse, latencyNanoseconds: 9_000_000)
        b.record(.noHealthyInstance, latencyNanoseconds: 0)
        let sum = a.adding(b)
        #expect(sum.requests == 5)
        #expect(sum.serverErrors == 1)
        #expect(sum.connectErrors == 1)
        #expect(sum.timeouts == 1)
        #expect(sum.invalidResponses == 1)
        #expect(sum.noHealthyInstance == 1)
        #expect(sum.latencyBuckets[LatencyBuckets.index(nanoseconds: 70_000)] == 2)
        #expect(sum.latencyBuckets[0] == 2)
        #expect(sum.subtracting(b) == a)
        #expect(sum.subtracting(a) == b)
        #expect(a.adding(b) == b.adding(a))
        #expect(a.adding(PoolStatistics()) == a)
    }
}

@Suite struct TrafficRecorderTests {
    @Test func concurrentRecordingIsExact() {
        let recorder = TrafficRecorder(shards: 4)
        #expect(recorder.shardCount == 4)
        DispatchQueue.concurrentPerform(iterations: 4) { shard in
            for index in 0..<25_000 {
                let outcome: RequestOutcome
                switch index % 10 {
                case 0: outcome = .response(status: 503)
                case 1: outcome = .connectError
                case 2, 3: outcome = .timeout
                case 4: outcome = .response(status: 404)
                default: outcome = .response(status: 200)
                }
                recorder.record(shard: shard, outcome: outcome, latencyNanoseconds: index % 2 == 0 ? 20_000 : 2_000_000)
            }
        }
        let stats = recorder.snapshot()
        #expect(stats.requests == 100_000)
        #expect(stats.serverErrors == 10_000)
        #expect(stats.connectErrors == 10_000)
        #expect(stats.timeouts == 20_000)
        #expect(stats.invalidResponses == 0)
        #expect(stats.noHealthyInstance == 0)
        #expect(stats.errors == 40_000)
        #expect(stats.latencyBuckets[LatencyBuckets.index(nanoseconds: 20_000)] == 50_000)
        #expect(stats.latencyBuckets[LatencyBuckets.index(nanoseconds: 2_000_000)] == 50_000)
        #expect(stats.latencyBuckets.reduce(0, +) == 100_000)
    }

    @Test func anyShardIndexCountsOnce() {
        let recorder = TrafficRecorder(shards: 3)
        for shard in 0..<12 {
            recorder.record(shard: shard, outcome: .invalidResponse, latencyNanoseconds: 1)
        }
        recorder.record(shard: 7, outcome: .noHealthyInstance, latencyNanoseconds: 1 << 40)
        let stats = recorder.snapshot()
        #expect(stats.requests == 13)
        #expect(stats.invalidResponses == 12)
        #expect(stats.noHealthyInstance == 1)
        #expect(stats.latencyBuckets[0] == 12)
        #expect(stats.latencyBuckets[LatencyBuckets.count - 1] == 1)
    }

    @Test func snapshotsSubtractIntoWindows() {
        let recorder = TrafficRecorder(shards: 2)
        for _ in 0..<7 { recorder.record(shard: 0, outcome: .response(status: 200), latencyNanoseconds: 30_000) }
        let first = recorder.snapshot()
        for _ in 0..<3 { recorder.record(shard: 1, outcome: .response(status: 502), latencyNanoseconds: 30_000) }
        let window = recorder.snapshot().subtracting(first)
        #expect(first.requests == 7)
        #expect(window.requests == 3)
        #expect(window.serverErrors == 3)
        #expect(window.errorRate == 1)
    }

    @Test func freshRecorderIsEmpty() {
        #expect(TrafficRecorder(shards: 8).snapshot() == PoolStatistics())
    }
}
