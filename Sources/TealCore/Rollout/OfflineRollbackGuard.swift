/// A replica's own verdict on a release it does not run, while it cannot reach the shared store:
/// its own traffic, judged by the release's rollback policy (`ReleaseVerdict`) over the same
/// sliding window the driver uses. When green fails by it, the replica puts its own split back to
/// blue (the safe direction) without waiting for the driver, whose verdict and saves cannot reach
/// it now. Pure: counts and time are passed in.
public struct OfflineRollbackGuard: Sendable {
    public let policy: RollbackPolicy
    private var blue = StatisticsWindow()
    private var green = StatisticsWindow()
    private let epoch: ContinuousClock.Instant

    /// Starts judging from `now`: the counts given here are the baseline, not traffic.
    public init(policy: RollbackPolicy, blue: PoolStatistics, green: PoolStatistics, at now: ContinuousClock.Instant) {
        self.policy = policy
        epoch = now
        self.blue.record(cumulative: blue, at: now, epoch: now)
        self.green.record(cumulative: green, at: now, epoch: now)
    }

    /// Feeds the pools' cumulative counts at `now`; returns why green fails, when it does.
    public mutating func observe(blue: PoolStatistics, green: PoolStatistics, at now: ContinuousClock.Instant) -> RollbackReason? {
        self.blue.record(cumulative: blue, at: now, epoch: epoch)
        self.green.record(cumulative: green, at: now, epoch: epoch)
        return ReleaseVerdict.evaluate(green: self.green.total(at: now), blue: self.blue.total(at: now), policy: policy)
    }
}
