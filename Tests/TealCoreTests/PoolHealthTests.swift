import TealCore
import Testing

private let base = ContinuousClock.now

private func spec(fall: Int = 3, rise: Int = 2, ejectAfter: Int = 5, ejection: Duration = .seconds(10),
                  maxEjection: Duration = .seconds(300)) -> HealthCheckSpec {
    var spec = HealthCheckSpec()
    spec.fall = fall
    spec.rise = rise
    spec.ejectAfter = ejectAfter
    spec.ejection = ejection
    spec.maxEjection = maxEjection
    return spec
}

private func address(_ text: String) -> InstanceAddress { InstanceAddress(parsing: text)! }

@Suite struct InstanceHealthProbeTests {
    @Test func startsUpAndAvailable() {
        let health = InstanceHealth()
        #expect(health.probeUp)
        #expect(health.isAvailable(at: base))
        #expect(!health.isEjected(at: base))
        #expect(health.consecutiveFailures == 0)
        #expect(health.ejections == 0)
    }

    @Test(arguments: [1, 2, 3, 5])
    func fallsAfterNFailingProbes(fall: Int) {
        var health = InstanceHealth()
        let spec = spec(fall: fall)
        for probe in 1...fall {
            let changed = health.recordProbe(passed: false, detail: "refused \(probe)", spec: spec)
            #expect(changed == (probe == fall))
            #expect(health.probeUp == (probe < fall))
        }
        #expect(health.lastProbeFailure == "refused \(fall)")
        #expect(!health.isAvailable(at: base))
        #expect(health.probeStreak == 0)
    }

    @Test(arguments: [1, 2, 4])
    func risesAfterMPassingProbes(rise: Int) {
        var health = InstanceHealth()
        let spec = spec(fall: 1, rise: rise)
        #expect(health.recordProbe(passed: false, spec: spec) == true)
        #expect(!health.probeUp)
        for probe in 1...rise {
            let changed = health.recordProbe(passed: true, spec: spec)
            #expect(changed == (probe == rise))
            #expect(health.probeUp == (probe == rise))
        }
        #expect(health.isAvailable(at: base))
    }

    @Test func fallStreakResetsOnAPass() {
        var health = InstanceHealth()
        let spec = spec(fall: 3)
        #expect(health.recordProbe(passed: false, spec: spec) == false)
        #expect(health.recordProbe(passed: false, spec: spec) == false)
        #expect(health.probeStreak == 2)
        #expect(health.recordProbe(passed: true, spec: spec) == false)
        #expect(health.probeStreak == 0)
        #expect(health.recordProbe(passed: false, spec: spec) == false)
        #expect(health.recordProbe(passed: false, spec: spec) == false)
        #expect(health.probeUp)
        #expect(health.recordProbe(passed: false, spec: spec) == true)
        #expect(!health.probeUp)
    }

    @Test func riseStreakResetsOnAFailure() {
        var health = InstanceHealth()
        let spec = spec(fall: 1, rise: 3)
        #expect(health.recordProbe(passed: false, spec: spec) == true)
        #expect(health.recordProbe(passed: true, spec: spec) == false)
        #expect(health.recordProbe(passed: true, spec: spec) == false)
        #expect(health.recordProbe(passed: false, spec: spec) == false)
        #expect(health.recordProbe(passed: true, spec: spec) == false)
        #expect(health.recordProbe(passed: true, spec: spec) == false)
        #expect(!health.probeUp)
        #expect(health.recordProbe(passed: true, spec: spec) == true)
        #expect(health.probeUp)
    }

    @Test func passingProbesKeepAnUpInstanceUp() {
        var health = InstanceHealth()
        for _ in 0..<10 { #expect(health.recordProbe(passed: true, spec: spec()) == false) }
        #expect(health.probeUp)
        #expect(health.lastProbeFailure == nil)
    }
}

@Suite struct InstanceHealthEjectionTests {
    /// Records `count` failures at `now`; returns the deadlines returned (nil entries included).
    private func fail(_ health: inout InstanceHealth, _ count: Int, at now: ContinuousClock.Instant,
                      spec: HealthCheckSpec, mayEject: Bool = true) -> [ContinuousClock.Instant?] {
        (0..<count).map { _ in health.recordFailure(at: now, spec: spec, mayEject: mayEject) }
    }

    @Test func ejectsAfterConsecutiveFailures() {
        var health = InstanceHealth()
        let spec = spec(ejectAfter: 5)
        let results = fail(&health, 5, at: base, spec: spec)
        #expect(results.prefix(4).allSatisfy { $0 == nil })
        #expect(results[4] == base + .seconds(10))
        #expect(health.ejectedUntil == base + .seconds(10))
        #expect(health.ejections == 1)
        #expect(health.consecutiveFailures == 0)
        #expect(health.isEjected(at: base))
        #expect(health.isEjected(at: base + .seconds(9)))
        #expect(!health.isAvailable(at: base + .milliseconds(9999)))
        #expect(!health.isEjected(at: base + .seconds(10)))
        #expect(health.isAvailable(at: base + .seconds(10)))
    }

    @Test func successResetsTheFailureStreak() {
        var health = InstanceHealth()
        let spec = spec(ejectAfter: 5)
        #expect(fail(&health, 4, at: base, spec: spec).allSatisfy { $0 == nil })
        #expect(health.consecutiveFailures == 4)
        health.recordSuccess()
        #expect(health.consecutiveFailures == 0)
        #expect(fail(&health, 4, at: base, spec: spec).allSatisfy { $0 == nil })
        #expect(!health.isEjected(at: base))
        #expect(health.recordFailure(at: base, spec: spec, mayEject: true) == base + .seconds(10))
    }

    @Test func repeatsDoubleUpToTheCap() throws {
        var health = InstanceHealth()
        let spec = spec(ejectAfter: 2, ejection: .seconds(10), maxEjection: .seconds(300))
        var now = base
        var lengths: [Duration] = []
        for _ in 0..<8 {
            let until = try #require(fail(&health, 2, at: now, spec: spec).last!)
            lengths.append(until - now)
            #expect(health.expireEjection(at: until) == true)
            now = until  // fails again as soon as the ejection ends
        }
        #expect(lengths == [10, 20, 40, 80, 160, 300, 300, 300].map { Duration.seconds($0) })
        #expect(health.ejections == 8)
    }

    @Test func failuresDuringAnEjectionDoNotExtendIt() {
        var health = InstanceHealth()
        let spec = spec(ejectAfter: 2)
        #expect(fail(&health, 2, at: base, spec: spec).last! == base + .seconds(10))
        #expect(fail(&health, 6, at: base + .seconds(1), spec: spec).allSatisfy { $0 == nil })
        #expect(health.ejectedUntil == base + .seconds(10))
        #expect(health.ejections == 1)
    }

    @Test func longHealthyPeriodResetsTheDoubling() {
        var health = InstanceHealth()
        let spec = spec(ejectAfter: 1, ejection: .seconds(10), maxEjection: .seconds(60))
        #expect(health.recordFailure(at: base, spec: spec, mayEject: true) == base + .seconds(10))
        let second = base + .seconds(10)
        #expect(health.recordFailure(at: second, spec: spec, mayEject: true) == second + .seconds(20))
        // More than maxEjection after the last ejection ended: back to the first length.
        let third = second + .seconds(20) + .seconds(61)
        #expect(health.recordFailure(at: third, spec: spec, mayEject: true) == third + .seconds(10))
        #expect(health.ejections == 1)
    }

    @Test func mayEjectFalseRefuses() {
        var health = InstanceHealth()
        let spec = spec(ejectAfter: 3)
        #expect(fail(&health, 10, at: base, spec: spec, mayEject: false).allSatisfy { $0 == nil })
        #expect(!health.isEjected(at: base))
        #expect(health.consecutiveFailures == 10)
        #expect(health.ejections == 0)
        // once ejecting is allowed, the next failure ejects
        #expect(health.recordFailure(at: base, spec: spec, mayEject: true) == base + .seconds(10))
    }

    @Test func expireEjectionOnlyWhenTimeIsOver() {
        var health = InstanceHealth()
        #expect(health.expireEjection(at: base) == false)
        let spec = spec(ejectAfter: 1)
        _ = health.recordFailure(at: base, spec: spec, mayEject: true)
        #expect(health.expireEjection(at: base + .seconds(5)) == false)
        #expect(health.ejectedUntil != nil)
        #expect(health.expireEjection(at: base + .seconds(10)) == true)
        #expect(health.ejectedUntil == nil)
        #expect(health.expireEjection(at: base + .seconds(11)) == false)
    }

    @Test func probeRecoveryClearsTheFailureStreak() {
        var health = InstanceHealth()
        let spec = spec(fall: 1, rise: 1, ejectAfter: 5)
        _ = fail(&health, 4, at: base, spec: spec, mayEject: true)
        #expect(health.recordProbe(passed: false, spec: spec) == true)
        #expect(health.recordProbe(passed: true, spec: spec) == true)
        #expect(health.consecutiveFailures == 0)
    }
}

@Suite struct PoolHealthTests {
    let a = address("10.0.0.1:80"), b = address("10.0.0.2:80"), g = address("10.0.1.1:80")

    @Test func ejectsWhenAnotherInstanceIsAvailable() {
        var pool = PoolHealth(spec: spec(ejectAfter: 3), blue: [a, b], green: [g])
        #expect(pool.recordFailure(a, at: base) == nil)
        #expect(pool.recordFailure(a, at: base) == nil)
        #expect(pool.recordFailure(a, at: base) == .ejected(a, until: base + .seconds(10)))
        #expect(!pool.isAvailable(a, at: base))
        #expect(pool.isAvailable(b, at: base))
        #expect(pool.available([a, b], at: base) == [b])
        #expect(pool.available([a, b], at: base + .seconds(10)) == [a, b])
    }

    @Test func neverEjectsTheLastAvailableInstance() {
        var pool = PoolHealth(spec: spec(ejectAfter: 3), blue: [a, b], green: [g])
        for _ in 0..<3 { _ = pool.recordFailure(a, at: base) }
        #expect(!pool.isAvailable(a, at: base))
        #expect(pool.recordFailure(b, at: base) == nil)
        #expect(pool.recordFailure(b, at: base) == nil)
        #expect(pool.recordFailure(b, at: base) == .ejectionRefusedLastInstance(b))
        #expect(pool.recordFailure(b, at: base) == .ejectionRefusedLastInstance(b))
        #expect(pool.isAvailable(b, at: base))
        // After a's ejection ends, b may be ejected.
        let later = base + .seconds(10)
        #expect(pool.recordFailure(b, at: later) == .ejected(b, until: later + .seconds(10)))
    }

    @Test func singleInstancePoolIsNeverEjected() {
        var pool = PoolHealth(spec: spec(ejectAfter: 2), blue: [a], green: [g, b])
        #expect(pool.recordFailure(a, at: base) == nil)
        #expect(pool.recordFailure(a, at: base) == .ejectionRefusedLastInstance(a))
        #expect(pool.isAvailable(a, at: base))
        // The green pool has two instances, so green can lose one.
        #expect(pool.recordFailure(g, at: base) == nil)
        #expect(pool.recordFailure(g, at: base) == .ejected(g, until: base + .seconds(10)))
    }

    @Test func probeDownInstanceDoesNotCountAsAvailable() {
        var pool = PoolHealth(spec: spec(fall: 1, ejectAfter: 1), blue: [a, b], green: [])
        #expect(pool.recordProbe(b, passed: false, detail: "timeout") == .probeDown(b, detail: "timeout"))
        #expect(!pool.isAvailable(b, at: base))
        #expect(pool.recordFailure(a, at: base) == .ejectionRefusedLastInstance(a))
        #expect(pool.recordProbe(b, passed: true, detail: nil) == nil)  // rise 2
        #expect(pool.recordProbe(b, passed: true, detail: nil) == .probeUp(b))
        #expect(pool.recordFailure(a, at: base) == .ejected(a, until: base + .seconds(10)))
    }

    @Test func recordSuccessResetsTheStreak() {
        var pool = PoolHealth(spec: spec(ejectAfter: 3), blue: [a, b], green: [])
        _ = pool.recordFailure(a, at: base)
        _ = pool.recordFailure(a, at: base)
        pool.recordSuccess(a)
        #expect(pool.instances[a]?.consecutiveFailures == 0)
        #expect(pool.recordFailure(a, at: base) == nil)
        #expect(pool.recordFailure(a, at: base) == nil)
        #expect(pool.recordFailure(a, at: base) == .ejected(a, until: base + .seconds(10)))
    }

    @Test func tickEndsEjectionsWhenTimePasses() {
        var pool = PoolHealth(spec: spec(ejectAfter: 1, ejection: .seconds(10)), blue: [a, b], green: [g, address("10.0.1.2:80")])
        #expect(pool.recordFailure(a, at: base) == .ejected(a, until: base + .seconds(10)))
        #expect(pool.recordFailure(g, at: base + .seconds(4)) == .ejected(g, until: base + .seconds(14)))
        #expect(pool.tick(at: base + .seconds(9)) == [])
        #expect(pool.tick(at: base + .seconds(10)) == [.ejectionEnded(a)])
        #expect(pool.tick(at: base + .seconds(11)) == [])
        #expect(pool.tick(at: base + .seconds(20)) == [.ejectionEnded(g)])
        #expect(pool.tick(at: base + .seconds(30)) == [])
        #expect(pool.instances[a]?.ejectedUntil == nil)
    }

    @Test func tickReportsInAddressOrder() {
        let c = address("10.0.0.3:80")
        var pool = PoolHealth(spec: spec(ejectAfter: 1), blue: [c, b, a], green: [])
        _ = pool.recordFailure(c, at: base)
        _ = pool.recordFailure(a, at: base)
        #expect(pool.tick(at: base + .seconds(60)) == [.ejectionEnded(a), .ejectionEnded(c)])
    }

    @Test func unknownAddresses() {
        var pool = PoolHealth(spec: spec(), blue: [a], green: [])
        let unknown = address("192.0.2.1:80")
        #expect(!pool.isAvailable(unknown, at: base))
        #expect(pool.recordFailure(unknown, at: base) == nil)
        #expect(pool.recordProbe(unknown, passed: false, detail: nil) == nil)
        #expect(pool.instances[unknown] == nil)
    }

    @Test func keepsStateOfInstancesThatRemain() {
        var pool = PoolHealth(spec: spec(ejectAfter: 1), blue: [a, b], green: [])
        _ = pool.recordFailure(a, at: base)
        let rebuilt = PoolHealth(spec: pool.spec, blue: [a], green: [g], keeping: pool)
        #expect(rebuilt.instances[a] == pool.instances[a])
        #expect(rebuilt.isAvailable(a, at: base) == false)
        #expect(rebuilt.instances[b] == nil)
        #expect(rebuilt.instances[g] == InstanceHealth())
    }
}
