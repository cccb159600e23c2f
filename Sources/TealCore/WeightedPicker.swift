import Synchronization

/// Smooth weighted round robin (the algorithm nginx uses for weighted upstreams), computed once
/// into a fixed sequence so that choosing costs one atomic increment and an array read.
///
/// For weights `[2, 4]` the sequence is `[1, 0, 1, 1, 0, 1]`: every window of `2 + 4`
/// consecutive picks holds exactly 2 of index 0 and 4 of index 1, spread as evenly as possible.
public enum SmoothWeightedRoundRobin {
    /// The full cycle of indices for `weights` (length = sum of weights after dividing by their
    /// greatest common divisor). Zero weights never appear. Empty when all weights are zero.
    public static func sequence(weights: [Int]) -> [Int] {
        precondition(weights.allSatisfy { $0 >= 0 }, "weights must not be negative")
        let divisor = weights.reduce(0, gcd)
        guard divisor > 0 else { return [] }
        let reduced = weights.map { $0 / divisor }
        let total = reduced.reduce(0, +)
        var current = [Int](repeating: 0, count: reduced.count)
        var result: [Int] = []
        result.reserveCapacity(total)
        for _ in 0..<total {
            var best = -1
            for index in reduced.indices where reduced[index] > 0 {
                current[index] += reduced[index]
                if best < 0 || current[index] > current[best] { best = index }
            }
            current[best] -= total
            result.append(best)
        }
        return result
    }

    static func gcd(_ a: Int, _ b: Int) -> Int {
        var (a, b) = (a, b)
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }
}

/// Chooses blue or green for each request according to a split, exactly: it walks the smooth
/// weighted round robin sequence of the split with one counter shared by all threads, so any
/// `blue + green` consecutive picks (with no other pickers in between) hold exactly `blue` blues.
/// Lock-free; safe to call from every event loop.
public final class PoolPicker: Sendable {
    /// The split this picker realises.
    public let split: Split
    private let sequence: [PoolColor]
    private let counter = Atomic<UInt64>(0)

    public init(split: Split) {
        self.split = split
        self.sequence = SmoothWeightedRoundRobin.sequence(weights: [split.blue, split.green])
            .map { $0 == 0 ? .blue : .green }
    }

    /// The pool for the next request.
    @inline(__always)
    public func next() -> PoolColor {
        let ticket = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return sequence[Int(ticket % UInt64(sequence.count))]
    }
}

/// Spreads requests evenly over a pool's healthy instances (plain round robin with one shared
/// atomic counter). Kept across routing snapshots so the rotation does not restart.
public final class InstanceRotation: Sendable {
    private let counter = Atomic<UInt64>(0)

    public init() {}

    /// An index in `0..<count`; `count` must be positive.
    @inline(__always)
    public func next(count: Int) -> Int {
        Int(counter.wrappingAdd(1, ordering: .relaxed).oldValue % UInt64(count))
    }
}
