#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How much of the journal a state store keeps: entries younger than `maxAge`, and of those at
/// most the latest `maxEntries`. Older and surplus entries are deleted by `StateStore.pruneJournal`,
/// when `JournalPruneSchedule` says so (not per append: each prune is a bounded scan).
public struct JournalRetention: Sendable, Hashable {
    /// Entries older than this are deleted.
    public var maxAge: Duration
    /// At most this many entries are kept (the latest).
    public var maxEntries: Int

    /// 90 days.
    public static let defaultMaxAge = Duration.seconds(90 * 86_400)
    public static let defaultMaxEntries = 100_000
    /// The longest `maxAge`: 10 years (87600h).
    public static let longestMaxAge = Duration.seconds(10 * 365 * 86_400)
    /// The most `maxEntries`.
    public static let mostEntries = 100_000_000

    /// Clamps `maxAge` to 1 s ... `longestMaxAge` and `maxEntries` to 1 ... `mostEntries`.
    public init(maxAge: Duration = defaultMaxAge, maxEntries: Int = defaultMaxEntries) {
        self.maxAge = min(max(maxAge, .seconds(1)), Self.longestMaxAge)
        self.maxEntries = min(max(maxEntries, 1), Self.mostEntries)
    }

    /// Entries before this time are too old at `now`.
    public func cutoff(now: Date) -> Date {
        let (seconds, attoseconds) = maxAge.components
        return now.addingTimeInterval(-(Double(seconds) + Double(attoseconds) / 1e18))
    }
}

/// When to prune the journal: at the first chance, then after `appendsBetweenPrunes` appends or
/// `interval`, whichever comes first; never two prunes at once. Pure: time is passed in.
public struct JournalPruneSchedule: Sendable, Hashable {
    public var appendsBetweenPrunes: Int
    public var interval: Duration
    private var appendsSincePrune = 0
    private var lastPrune: ContinuousClock.Instant?
    private var pruning = false

    public init(appendsBetweenPrunes: Int = 1000, interval: Duration = .seconds(3600)) {
        self.appendsBetweenPrunes = max(1, appendsBetweenPrunes)
        self.interval = interval
    }

    /// Counts `appended` new entries (0 for a timer's check) and says whether to prune now; a
    /// `true` must be followed by `finished(at:)` once that prune is over.
    public mutating func shouldPrune(appended: Int, at now: ContinuousClock.Instant) -> Bool {
        appendsSincePrune += max(0, appended)
        guard !pruning else { return false }
        let due = lastPrune.map { appendsSincePrune >= appendsBetweenPrunes || now - $0 >= interval } ?? true
        if due {
            pruning = true
            appendsSincePrune = 0
        }
        return due
    }

    /// The prune that `shouldPrune` asked for is over (done or failed).
    public mutating func finished(at now: ContinuousClock.Instant) {
        pruning = false
        lastPrune = now
    }
}
