import Dispatch
import Synchronization
import TealCore
import TealTestSupport
import Testing

private func greatestCommonDivisor(_ a: Int, _ b: Int) -> Int {
    var (a, b) = (a, b)
    while b != 0 { (a, b) = (b, a % b) }
    return a
}

/// Every (blue, green) pair with weights in 0...24 except 0/0.
private let smallPairs: [(Int, Int)] = (0...24).flatMap { blue in
    (0...24).compactMap { green in blue == 0 && green == 0 ? nil : (blue, green) }
}

@Suite struct SmoothWeightedRoundRobinTests {
    @Test func documentedExamples() {
        #expect(SmoothWeightedRoundRobin.sequence(weights: [2, 4]) == [1, 0, 1])
        #expect(SmoothWeightedRoundRobin.sequence(weights: [1, 2]) == [1, 0, 1])
        #expect(SmoothWeightedRoundRobin.sequence(weights: [3, 5]) == [1, 0, 1, 0, 1, 1, 0, 1])
        #expect(SmoothWeightedRoundRobin.sequence(weights: [6, 0]) == [0])
        #expect(SmoothWeightedRoundRobin.sequence(weights: [0, 6]) == [1])
        #expect(SmoothWeightedRoundRobin.sequence(weights: [1, 1]) == [0, 1])
        #expect(SmoothWeightedRoundRobin.sequence(weights: [0, 0]) == [])
        #expect(SmoothWeightedRoundRobin.sequence(weights: []) == [])
    }

    @Test func threeWeights() {
        let sequence = SmoothWeightedRoundRobin.sequence(weights: [5, 1, 1])
        #expect(sequence.count == 7)
        #expect(sequence.filter { $0 == 0 }.count == 5)
        #expect(sequence.filter { $0 == 1 }.count == 1)
        #expect(sequence.filter { $0 == 2 }.count == 1)
        // nginx's well-known example: a a b a c a a
        #expect(sequence == [0, 0, 1, 0, 2, 0, 0])
    }

    @Test func zeroWeightNeverAppears() {
        let sequence = SmoothWeightedRoundRobin.sequence(weights: [3, 0, 2])
        #expect(sequence.count == 5)
        #expect(!sequence.contains(1))
    }

    /// Randomized: for weights in 0...1000 the cycle has length (B+G)/gcd and holds B/gcd blues.
    @Test func randomizedCycleCounts() {
        var generator = SplitMix64(seed: 0x7EA1_2024)
        var checked = 0
        while checked < 300 {
            let blue = Int.random(in: 0...1000, using: &generator)
            let green = Int.random(in: 0...1000, using: &generator)
            if blue == 0 && green == 0 { continue }
            checked += 1
            let divisor = greatestCommonDivisor(blue, green)
            let sequence = SmoothWeightedRoundRobin.sequence(weights: [blue, green])
            #expect(sequence.count == (blue + green) / divisor, "\(blue)/\(green)")
            #expect(sequence.filter { $0 == 0 }.count == blue / divisor, "\(blue)/\(green)")
            #expect(sequence.filter { $0 == 1 }.count == green / divisor, "\(blue)/\(green)")

            // A picker over one full B+G window hands out exactly B blues and G greens.
            let picker = PoolPicker(split: Split(blue: blue, green: green)!)
            var blues = 0
            for _ in 0..<(blue + green) where picker.next() == .blue { blues += 1 }
            #expect(blues == blue, "\(blue)/\(green)")
        }
    }

    @Test func randomizedExtremes() {
        for (blue, green) in [(1000, 1), (1, 1000), (1000, 1000), (999, 1000), (997, 991), (1000, 0), (0, 1000)] {
            let divisor = greatestCommonDivisor(blue, green)
            let sequence = SmoothWeightedRoundRobin.sequence(weights: [blue, green])
            #expect(sequence.count == (blue + green) / divisor)
            #expect(sequence.filter { $0 == 0 }.count == blue / divisor)
        }
    }
}

@Suite struct PoolPickerTests {
    /// The picks of a fresh picker for `cycles` windows of `blue + green`.
    private func picks(_ blue: Int, _ green: Int, cycles: Int) -> [PoolColor] {
        let picker = PoolPicker(split: Split(blue: blue, green: green)!)
        return (0..<((blue + green) * cycles)).map { _ in picker.next() }
    }

    /// Every sliding window of B+G consecutive picks, at every offset, holds exactly B blue.
    @Test func everySlidingWindowIsExactForAllSmallSplits() {
        for (blue, green) in smallPairs {
            let window = blue + green
            let sequence = picks(blue, green, cycles: 5)
            // prefix[i] = blues among the first i picks
            var prefix = [0]
            prefix.reserveCapacity(sequence.count + 1)
            for color in sequence { prefix.append(prefix.last! + (color == .blue ? 1 : 0)) }
            var failures = 0
            for start in 0...(sequence.count - window) {
                let blues = prefix[start + window] - prefix[start]
                if blues != blue { failures += 1 }
            }
            #expect(failures == 0, "split \(blue)/\(green): \(failures) windows off")
        }
    }

    /// Smoothness: any window of w consecutive picks holds floor or ceil of w*B/(B+G) blues.
    @Test func picksAreSpreadEvenlyForAllSmallSplits() {
        for (blue, green) in smallPairs {
            let total = blue + green
            let sequence = picks(blue, green, cycles: 3)
            var prefix = [0]
            for color in sequence { prefix.append(prefix.last! + (color == .blue ? 1 : 0)) }
            var failures = 0
            for width in 1...total {
                let low = width * blue / total
                let high = (width * blue + total - 1) / total
                for start in 0...(sequence.count - width) {
                    let blues = prefix[start + width] - prefix[start]
                    if blues < low || blues > high { failures += 1 }
                }
            }
            #expect(failures == 0, "split \(blue)/\(green): \(failures) uneven windows")
        }
    }

    @Test func allBlueNeverPicksGreen() {
        let sequence = picks(6, 0, cycles: 1000)
        #expect(sequence.count == 6000)
        #expect(sequence.allSatisfy { $0 == .blue })
    }

    @Test func allGreenNeverPicksBlue() {
        let sequence = picks(0, 6, cycles: 1000)
        #expect(sequence.count == 6000)
        #expect(sequence.allSatisfy { $0 == .green })
    }

    @Test func twoFourIsExactInEverySixConsecutive() {
        let sequence = picks(2, 4, cycles: 200)
        for start in 0...(sequence.count - 6) {
            let window = sequence[start..<(start + 6)]
            #expect(window.filter { $0 == .blue }.count == 2)
            #expect(window.filter { $0 == .green }.count == 4)
        }
        #expect(Array(sequence.prefix(6)) == [.green, .blue, .green, .green, .blue, .green])
    }

    @Test func keepsItsSplit() {
        let split = Split(blue: 2, green: 4)!
        #expect(PoolPicker(split: split).split == split)
    }

    /// Tickets come from one atomic counter, so concurrent pickers still get exact totals.
    @Test func concurrentPicksAreExact() {
        let picker = PoolPicker(split: Split(blue: 2, green: 4)!)
        let blueTotal = Atomic<Int>(0)
        let greenTotal = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            var blue = 0, green = 0
            for _ in 0..<60_000 {
                switch picker.next() {
                case .blue: blue += 1
                case .green: green += 1
                }
            }
            blueTotal.add(blue, ordering: .relaxed)
            greenTotal.add(green, ordering: .relaxed)
        }
        #expect(blueTotal.load(ordering: .relaxed) == 80_000)
        #expect(greenTotal.load(ordering: .relaxed) == 160_000)
        // The shared counter continues exactly where the threads left off (240_000 % 3 == 0).
        #expect(picker.next() == .green)
        #expect(picker.next() == .blue)
    }
}

@Suite struct InstanceRotationTests {
    @Test(arguments: [1, 2, 3, 5, 7])
    func spreadsEvenly(count: Int) {
        let rotation = InstanceRotation()
        var hits = [Int](repeating: 0, count: count)
        for round in 0..<(count * 1000) {
            let index = rotation.next(count: count)
            #expect(index == round % count)
            hits[index] += 1
        }
        #expect(hits == [Int](repeating: 1000, count: count))
    }

    @Test func keepsRotatingWhenTheCountChanges() {
        let rotation = InstanceRotation()
        #expect((0..<4).map { _ in rotation.next(count: 4) } == [0, 1, 2, 3])
        // The counter is at 4 now; with 3 instances it continues at 4 % 3.
        #expect((0..<3).map { _ in rotation.next(count: 3) } == [1, 2, 0])
    }

    @Test func concurrentRotationIsEven() {
        let rotation = InstanceRotation()
        let hits = Mutex([0, 0, 0])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            var local = [0, 0, 0]
            for _ in 0..<30_000 { local[rotation.next(count: 3)] += 1 }
            hits.withLock { total in
                for index in 0..<3 { total[index] += local[index] }
            }
        }
        #expect(hits.withLock { $0 } == [40_000, 40_000, 40_000])
    }
}
