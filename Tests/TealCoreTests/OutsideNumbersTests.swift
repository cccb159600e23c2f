import Foundation
import TealCore
import TealTestSupport
import Testing

/// Numbers from outside (API bodies, route files, state files) and counters that can go backwards
/// must never trap: each case here crashed the whole router once, or could have.
@Suite("Outside numbers never trap")
struct OutsideNumbersTests {
    /// Values at and around every edge a weight, count or time can hit.
    static let extremeInts: [Int] = [Int.min, Int.min + 1, -1_000_001, -1, 0, 1, 2, 999, 1000, 1001, 65_535, 1 << 31,
                                     Int(Int32.max), Int.max / 2, Int.max - 1, Int.max]
    static let extremeCounts: [UInt64] = [0, 1, 2, 1 << 32, UInt64.max / 2, UInt64.max - 1, UInt64.max]

    @Test("huge split weights are refused, not added (PUT split with 9223372036854775807/1 killed teal serve)")
    func hugeSplitWeights() {
        #expect(Split(blue: Int.max, green: 1) == nil)
        #expect(Split(blue: 1, green: Int.max) == nil)
        #expect(Split(blue: Int.max, green: Int.max) == nil)
        #expect(Split(blue: Int.min, green: Int.min) == nil)
        #expect(Split(parsing: "9223372036854775807/1") == nil)
        #expect(Split(parsing: "99999999999999999999999/1") == nil)
        #expect(Split(blue: Split.maxWeight, green: Split.maxWeight)?.description == "1000/1000")
        let decoded = try? JSONDecoder().decode(Split.self, from: Data(#"{"blue": 9223372036854775807, "green": 1}"#.utf8))
        #expect(decoded == nil)
    }

    @Test("a counter that goes backwards (a promotion swaps counters) rebaselines the window instead of wrapping")
    func windowAfterCounterSwap() {
        let epoch = ContinuousClock.now
        var window = StatisticsWindow()
        var before = PoolStatistics()
        before.requests = 80
        before.latencyBuckets[3] = 80
        window.record(cumulative: before, at: epoch, epoch: epoch)
        // The counters now belong to another pool: fewer requests, in other buckets.
        var after = PoolStatistics()
        after.requests = 110
        after.latencyBuckets[3] = 10
        after.latencyBuckets[5] = 100
        window.record(cumulative: after, at: epoch + .milliseconds(250), epoch: epoch)
        let total = window.total(at: epoch + .milliseconds(300))
        // Wrapped, bucket 3 would hold 2^64 - 70 and the sum of the buckets would trap.
        #expect(total.requests == 0)
        #expect(total.latency(quantile: 0.99) == nil)
        // Counting goes on from the new baseline.
        var later = after
        later.requests += 5
        later.latencyBuckets[5] += 5
        window.record(cumulative: later, at: epoch + .milliseconds(500), epoch: epoch)
        let next = window.total(at: epoch + .milliseconds(600))
        #expect(next.requests == 5 && next.latencyBuckets[5] == 5)
    }

    @Test("statistics at the ends of their range: sums saturate, subtraction never wraps, quantiles stay in range")
    func statisticsAtTheEnds() {
        var full = PoolStatistics()
        full.requests = .max
        full.serverErrors = .max
        full.timeouts = .max
        full.latencyBuckets = Array(repeating: .max, count: LatencyBuckets.count)
        #expect(full.errors == .max)
        #expect(full.errorRate == 1)
        #expect(full.adding(full).requests == .max)
        #expect(PoolStatistics().subtracting(full).requests == 0)
        for quantile in [0, 0.5, 0.99, 1, 2, -1, .nan, .infinity] {
            #expect(full.latency(quantile: quantile) != nil)
        }
        var one = PoolStatistics()
        one.record(.response(status: 200), latencyNanoseconds: .max)
        #expect(one.latency(quantile: 1) != nil)
    }

    @Test("a state file's garbled release times restore without trapping")
    func garbledCheckpointTimes() {
        let spec = ReleaseSpec(route: "r", green: PoolSpec(instances: [InstanceAddress(host: "127.0.0.1", port: 2)]),
                               policy: RolloutPolicy(steps: [PlanStep(split: Split(blue: 1, green: 1)!)]))
        let times = [Date.distantPast, Date.distantFuture, Date(timeIntervalSince1970: -1e15), Date(timeIntervalSince1970: 1e15)]
        let helds: [Duration?] = [nil, .zero, .seconds(Int64.max), .seconds(Int64.min), .nanoseconds(-1)]
        for phase in RolloutMachine.Checkpoint.Phase.allCases {
            for since in times {
                for held in helds {
                    let checkpoint = RolloutMachine.Checkpoint(phase: phase, step: 0, since: since, held: held)
                    #expect(RolloutMachine.restoring(spec, from: checkpoint, now: .now, wallNow: Date()) != nil)
                }
            }
        }
    }

    /// Seeded and bounded: the same inputs every run. Drives every pure type that takes outside
    /// numbers with values mixed from the edges and at random; any trap ends the test process.
    @Test("seeded fuzz: splits, plans, statistics windows, verdicts and health with extreme values (200,000 rounds)")
    func seededFuzz() async throws {
        nonisolated(unsafe) var problems: [String] = []
        // Seconds of CPU: on a thread of its own, not one of the few that run every test's tasks.
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread { continuation.resume(with: Result { problems = Self.fuzz() }) }.start()
        }
        #expect(problems.isEmpty, "\(problems.prefix(10))")
    }

    /// The rounds of `seededFuzz`; returns what was wrong (a trap ends the process instead).
    static func fuzz() -> [String] {
        var problems: [String] = []
        var random = SplitMix64(seed: 0x7EA1_13)
        func int() -> Int {
            random.next() % 3 == 0 ? Int(truncatingIfNeeded: random.next()) : Self.extremeInts.randomElement(using: &random)!
        }
        func count() -> UInt64 {
            random.next() % 3 == 0 ? random.next() : Self.extremeCounts.randomElement(using: &random)!
        }
        func statistics() -> PoolStatistics {
            var stats = PoolStatistics()
            stats.requests = count()
            stats.serverErrors = count()
            stats.connectErrors = count()
            stats.timeouts = count()
            stats.invalidResponses = count()
            stats.noHealthyInstance = count()
            for _ in 0..<3 { stats.latencyBuckets[Int(random.next() % UInt64(LatencyBuckets.count))] = count() }
            return stats
        }
        let alphabet = Array("0123456789/%. -+e")
        let epoch = ContinuousClock.now
        var window = StatisticsWindow()
        var policy = RollbackPolicy()
        var machine = RolloutMachine(spec: ReleaseSpec(route: "r", green: PoolSpec(instances: [InstanceAddress(host: "127.0.0.1", port: 2)]),
                                                       policy: RolloutPolicy(steps: [PlanStep(split: Split(blue: 1, green: 1)!)])))
        _ = try? machine.handle(.start, at: epoch)
        var health = PoolHealth(spec: HealthCheckSpec(), blue: [InstanceAddress(host: "127.0.0.1", port: 1), InstanceAddress(host: "127.0.0.1", port: 3)],
                                green: [])
        var splits = 0
        for round in 0..<200_000 {
            if let split = Split(blue: int(), green: int()) {
                splits += 1
                if !(0...Split.maxWeight).contains(split.blue) || !(0...Split.maxWeight).contains(split.green) || !(0...1).contains(split.greenFraction) {
                    problems.append("split \(split)")
                }
            }
            let text = String((0..<Int(random.next() % 30)).map { _ in alphabet.randomElement(using: &random)! })
            if let parsed = Split(parsing: text), parsed.blue + parsed.green == 0 { problems.append("parsed \(text)") }
            let stats = statistics()
            _ = stats.latency(quantile: Double(bitPattern: random.next()))
            _ = stats.errorRate
            _ = stats.subtracting(statistics()).adding(statistics())
            // Windows: cumulative counts that jump, fall back, and come at times far from the epoch.
            let offset = Duration.nanoseconds(Int64(truncatingIfNeeded: random.next()) / (round % 2 == 0 ? 1 : 1_000_000))
            window.record(cumulative: stats, at: epoch + offset, epoch: epoch)
            let total = window.total(at: epoch + offset)
            _ = total.latency(quantile: 0.99)
            policy.minRequests = max(1, int())
            policy.maxErrorRate = Double(random.next() % 101) / 100
            _ = ReleaseVerdict.evaluate(green: statistics(), blue: statistics(), policy: policy)
            _ = try? machine.handle(.statistics(green: statistics(), blue: statistics()), at: epoch + .milliseconds(round))
            var spec = HealthCheckSpec()
            spec.ejectAfter = max(1, int() % 10)
            spec.ejection = .seconds(Int64(random.next() % (365 * 86_400)) + 1)
            spec.maxEjection = .seconds(365 * 86_400)
            _ = health.recordFailure(InstanceAddress(host: "127.0.0.1", port: 1), at: epoch + .seconds(Int64(round)))
            _ = health.tick(at: epoch + .seconds(Int64(round)))
            health = PoolHealth(spec: spec, blue: [InstanceAddress(host: "127.0.0.1", port: 1), InstanceAddress(host: "127.0.0.1", port: 3)],
                                green: [], keeping: health)
        }
        if splits == 0 { problems.append("no valid split generated") }
        return problems
    }
}
