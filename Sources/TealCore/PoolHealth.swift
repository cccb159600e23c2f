/// The health of one instance: active probe state (rise/fall) and passive ejection (after
/// consecutive connect failures or timeouts on live traffic, for a time that doubles on repeat).
/// A pure value; time is passed in.
public struct InstanceHealth: Sendable, Hashable {
    /// Whether active probes currently call the instance up. New instances start up, so traffic
    /// flows at once; connect failures are caught by retries and passive ejection.
    public private(set) var probeUp = true
    /// Consecutive probe results in the direction opposite to `probeUp`.
    public private(set) var probeStreak = 0
    /// The last probe failure, for display.
    public private(set) var lastProbeFailure: String?
    /// Consecutive failed live requests.
    public private(set) var consecutiveFailures = 0
    /// While set and in the future, the instance is ejected.
    public private(set) var ejectedUntil: ContinuousClock.Instant?
    /// How many times in a row the instance has been ejected (the next ejection lasts
    /// `ejection * 2^ejections`, capped).
    public private(set) var ejections = 0
    private var lastEjectionEnd: ContinuousClock.Instant?

    public init() {}

    /// Whether requests may be sent to the instance at `now`.
    public func isAvailable(at now: ContinuousClock.Instant) -> Bool {
        probeUp && !isEjected(at: now)
    }

    /// Whether a passive ejection is in force at `now`.
    public func isEjected(at now: ContinuousClock.Instant) -> Bool {
        if let until = ejectedUntil { return now < until }
        return false
    }

    /// Applies an active probe result; returns whether `probeUp` changed.
    public mutating func recordProbe(passed: Bool, detail: String? = nil, spec: HealthCheckSpec) -> Bool {
        if !passed { lastProbeFailure = detail }
        if passed == probeUp {
            probeStreak = 0
            return false
        }
        probeStreak += 1
        if probeStreak >= (probeUp ? spec.fall : spec.rise) {
            probeUp = passed
            probeStreak = 0
            if passed { consecutiveFailures = 0 }
            return true
        }
        return false
    }

    /// A live request to the instance succeeded (it answered, whatever the status).
    public mutating func recordSuccess() {
        consecutiveFailures = 0
    }

    /// A live request failed to connect or timed out. Returns the ejection deadline when this
    /// failure crosses `spec.ejectAfter` and `mayEject` allows it; the caller passes `mayEject:
    /// false` when ejecting would leave the pool with no available instance.
    public mutating func recordFailure(at now: ContinuousClock.Instant, spec: HealthCheckSpec, mayEject: Bool) -> ContinuousClock.Instant? {
        consecutiveFailures += 1
        guard consecutiveFailures >= spec.ejectAfter, !isEjected(at: now), mayEject else { return nil }
        if let end = lastEjectionEnd, now - end > spec.maxEjection { ejections = 0 }
        let factor = 1 << min(ejections, 20)
        let length = min(spec.ejection * factor, spec.maxEjection)
        ejections += 1
        consecutiveFailures = 0
        let until = now + length
        ejectedUntil = until
        lastEjectionEnd = until
        return until
    }

    /// Ends an ejection whose time is over; returns whether one ended.
    public mutating func expireEjection(at now: ContinuousClock.Instant) -> Bool {
        guard let until = ejectedUntil, now >= until else { return false }
        ejectedUntil = nil
        return true
    }
}

/// The health of every instance of a route's pools, with the rule that passive ejection never
/// takes the last available instance of a pool: that instance keeps serving and the refusal is
/// reported, so an operator sees it.
public struct PoolHealth: Sendable {
    /// A change worth publishing or logging.
    public enum Change: Sendable, Hashable {
        case probeDown(InstanceAddress, detail: String?)
        case probeUp(InstanceAddress)
        case ejected(InstanceAddress, until: ContinuousClock.Instant)
        case ejectionEnded(InstanceAddress)
        /// Ejection was due but refused because no other instance of the pool is available.
        case ejectionRefusedLastInstance(InstanceAddress)
    }

    public let spec: HealthCheckSpec
    public private(set) var instances: [InstanceAddress: InstanceHealth] = [:]
    private var poolOf: [InstanceAddress: PoolColor] = [:]

    public init(spec: HealthCheckSpec, blue: [InstanceAddress], green: [InstanceAddress], keeping previous: PoolHealth? = nil) {
        self.spec = spec
        for (color, list) in [(PoolColor.blue, blue), (.green, green)] {
            for address in list {
                instances[address] = previous?.instances[address] ?? InstanceHealth()
                poolOf[address] = color
            }
        }
    }

    /// Whether `address` may get requests at `now` (unknown addresses are not available).
    public func isAvailable(_ address: InstanceAddress, at now: ContinuousClock.Instant) -> Bool {
        instances[address]?.isAvailable(at: now) ?? false
    }

    /// The available instances among `list`, in its order.
    public func available(_ list: [InstanceAddress], at now: ContinuousClock.Instant) -> [InstanceAddress] {
        list.filter { isAvailable($0, at: now) }
    }

    public mutating func recordProbe(_ address: InstanceAddress, passed: Bool, detail: String?) -> Change? {
        guard instances[address] != nil else { return nil }
        guard instances[address]!.recordProbe(passed: passed, detail: detail, spec: spec) else { return nil }
        return passed ? .probeUp(address) : .probeDown(address, detail: detail)
    }

    public mutating func recordSuccess(_ address: InstanceAddress) {
        instances[address]?.recordSuccess()
    }

    public mutating func recordFailure(_ address: InstanceAddress, at now: ContinuousClock.Instant) -> Change? {
        guard let color = poolOf[address], var health = instances[address] else { return nil }
        let others = poolOf.contains { $0.value == color && $0.key != address && isAvailable($0.key, at: now) }
        let wasDue = health.consecutiveFailures + 1 >= spec.ejectAfter && !health.isEjected(at: now)
        let until = health.recordFailure(at: now, spec: spec, mayEject: others)
        instances[address] = health
        if let until { return .ejected(address, until: until) }
        return wasDue && !others ? .ejectionRefusedLastInstance(address) : nil
    }

    /// Ends ejections whose time is over.
    public mutating func tick(at now: ContinuousClock.Instant) -> [Change] {
        var changes: [Change] = []
        for address in instances.keys.sorted() where instances[address]!.expireEjection(at: now) {
            changes.append(.ejectionEnded(address))
        }
        return changes
    }
}
