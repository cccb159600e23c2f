#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a release does when green gets no requests at all.
public enum NoTrafficPolicy: Sendable, Hashable, Codable {
    /// Keep going: holds end by time alone.
    case ignore
    /// Roll back when green has had a share but no request for this long.
    case rollback(after: Duration)
    /// Stop the hold clock until green gets traffic (a step cannot pass unobserved).
    case wait
}

/// A release of one route: the green pool to release and how.
public struct ReleaseSpec: Sendable, Hashable, Codable {
    public var route: String
    public var green: PoolSpec
    public var policy: RolloutPolicy

    public init(route: String, green: PoolSpec, policy: RolloutPolicy) {
        self.route = route
        self.green = green
        self.policy = policy
    }
}

/// The result of one smoke request to one green instance.
public struct SmokeOutcome: Sendable, Hashable {
    public var instance: InstanceAddress
    public var request: String
    /// `nil` when it passed; else what came back.
    public var failure: String?

    public init(instance: InstanceAddress, request: String, failure: String?) {
        self.instance = instance
        self.request = request
        self.failure = failure
    }
}

/// The release state machine: events in, actions out, time passed in. It never reads a clock and
/// does no I/O; `TealServer`'s controller carries its actions out and feeds it events.
public struct RolloutMachine: Sendable {
    /// Where a release is.
    public enum State: Sendable, Hashable {
        /// Waiting for `start`.
        case idle
        /// Smoke requests are out to every green instance; green has no user traffic.
        case smokeTesting(since: ContinuousClock.Instant)
        /// At plan step `step` since `since` (holds count from there).
        case shifting(step: Int, since: ContinuousClock.Instant)
        /// Stopped at `step` by an operator or a manual gate; `held` is the hold time already done.
        case paused(step: Int, held: Duration, gate: Bool)
        /// Green is the new blue; the old blue pool is draining until `deadline`.
        case draining(since: ContinuousClock.Instant, deadline: ContinuousClock.Instant)
        /// Done: green promoted.
        case promoted(at: ContinuousClock.Instant)
        /// Done: all traffic back on blue.
        case rolledBack(RollbackReason, at: ContinuousClock.Instant)
        /// Done: stopped by an operator, traffic back on blue.
        case aborted(String, at: ContinuousClock.Instant)
        /// Ended here: another replica runs this release now (it took the lease, or saved the
        /// release since). This replica changes nothing more; the release itself goes on there.
        case deposed(String, at: ContinuousClock.Instant)

        /// Whether the release has ended (here).
        public var isFinal: Bool {
            switch self {
            case .promoted, .rolledBack, .aborted, .deposed: true
            default: false
            }
        }

        /// A short name for displays and the journal.
        public var name: String {
            switch self {
            case .idle: "idle"
            case .smokeTesting: "smoke-testing"
            case .shifting: "shifting"
            case .paused: "paused"
            case .draining: "draining"
            case .promoted: "promoted"
            case .rolledBack: "rolled-back"
            case .aborted: "aborted"
            case .deposed: "deposed"
            }
        }
    }

    /// Something that happened.
    public enum Event: Sendable, Hashable {
        case start
        case tick
        case smokeResults([SmokeOutcome])
        /// Windows of both pools' traffic, as of the event's time.
        case statistics(green: PoolStatistics, blue: PoolStatistics)
        case pause(by: String)
        case resume(by: String)
        case promote(by: String)
        case abort(reason: String, by: String)
        case alert(name: String)
        /// The result of a hook run before entering `step`.
        case hookFinished(step: Int, failure: String?)
        /// The old blue pool has no in-flight requests or connections left.
        case drained
        /// This replica may no longer run the release: its lease was lost or taken, or the store
        /// refused a write (compare-and-set) because another replica saved it since.
        case deposed(why: String)
    }

    /// Something the controller must do.
    public enum Action: Sendable, Hashable {
        /// Publish this split for the route.
        case setSplit(Split)
        /// Send the smoke requests to every green instance and report `smokeResults`.
        case runSmoke([SmokeRequest], instances: [InstanceAddress])
        /// Run the hook for `event` (`step`, `promoted`, `rolledBack`); for `step`, report
        /// `hookFinished` before the step's split is set.
        case runHook(event: String, step: Int, split: Split)
        /// Green becomes the route's blue, at `split` (all blue, in the plan's terms); green is emptied.
        case promoteGreen(split: Split)
        /// Stop sending to the old blue pool and report `drained` when it is idle (by `deadline`).
        case drainOldBlue(deadline: ContinuousClock.Instant)
        /// Write the release's state durably.
        case persist
        /// Add an entry to the journal.
        case record(String)
        /// Deliver a `tick` at this time.
        case scheduleTick(at: ContinuousClock.Instant)
    }

    /// Why an event was refused.
    public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        public let event: String
        public let state: String
        public var description: String { "cannot \(event) a release that is \(state)" }
    }

    public let spec: ReleaseSpec
    /// How long the old blue pool may take to drain after promotion.
    public var drainTimeout: Duration = .seconds(30)
    /// How often the controller evaluates verdicts while shifting.
    public var evaluationInterval: Duration = .milliseconds(100)
    public private(set) var state = State.idle
    /// Whether a step hook is running (the step's split waits for it).
    public private(set) var hookPending: Int?
    private var lastGreenTraffic: ContinuousClock.Instant?
    private var smokePassed = false
    /// The step the smoke test stands before.
    private var pendingStep = 0

    public init(spec: ReleaseSpec) {
        self.spec = spec
    }

    private var steps: [PlanStep] { spec.policy.steps }

    private func hold(of step: Int) -> Duration { steps[step].hold ?? spec.policy.hold }

    /// All blue in the plan's terms (`6/0` for a plan `6/0 → 2/4 → 0/6`), which rollbacks, aborts
    /// and the promoted route go to.
    private var allBlue: Split { spec.policy.allBlue }

    /// Applies `event` at `now`; returns the actions to carry out, in order. Throws `Refusal`
    /// (and changes nothing) for an operator event the state does not allow.
    public mutating func handle(_ event: Event, at now: ContinuousClock.Instant) throws(Refusal) -> [Action] {
        switch (state, event) {
        case (.idle, .start):
            return begin(at: now)
        case (_, .start):
            throw refusal("start")

        case (.smokeTesting, .smokeResults(let outcomes)):
            if let failed = outcomes.first(where: { $0.failure != nil }) {
                return rollBack(.smokeFailed(instance: failed.instance, request: failed.request, detail: failed.failure!), at: now)
            }
            smokePassed = true
            let count = spec.green.instances.count
            return [.record("smoke tests passed on \(count) green instance\(count == 1 ? "" : "s")")] + enter(step: pendingStep, at: now)
        case (_, .smokeResults):
            return []

        case (.shifting(let step, let since), .hookFinished(let hookStep, let failure)) where hookPending == hookStep:
            hookPending = nil
            if let failure {
                return rollBack(.hookFailed(event: "step", command: spec.policy.hooks.step.map(ReleaseHooks.display), detail: failure), at: now)
            }
            _ = since
            state = .shifting(step: step, since: now)  // the hold counts from the split taking effect
            // Saved before the split changes: a replica that continues the release after this one
            // died finds it at this step, and sets the step's split again. (A rollback, the safe
            // direction, applies first and is saved after.)
            return [.persist, .setSplit(steps[step].split), holdTimer(step: step, since: now, at: now)]
        case (_, .hookFinished):
            return []

        case (.shifting(let step, let since), .statistics(let green, let blue)):
            if let reason = ReleaseVerdict.evaluate(green: green, blue: blue, policy: spec.policy.rollback) {
                return rollBack(reason, at: now)
            }
            if green.requests > 0 || steps[step].split.green == 0 { lastGreenTraffic = now }
            if case .rollback(let after) = spec.policy.onNoTraffic, steps[step].split.green > 0,
               now - (lastGreenTraffic ?? since) >= after {
                return rollBack(.noTraffic(for: now - (lastGreenTraffic ?? since)), at: now)
            }
            return []
        case (_, .statistics):
            return []

        case (.shifting(let step, let since), .tick):
            guard hookPending == nil else { return [] }  // the hook's end sets the timer
            if steps[step].manualGate {
                state = .paused(step: step, held: now - since, gate: true)
                return [.record("step \(step + 1) (\(steps[step].split)) is a gate: waiting for resume or promote"), .persist]
            }
            var held = now - since
            if spec.policy.onNoTraffic == .wait, steps[step].split.green > 0, lastGreenTraffic == nil { held = .zero }
            if held >= hold(of: step) {
                return step + 1 < steps.count ? enter(step: step + 1, at: now) : promote(at: now, by: "plan")
            }
            return [holdTimer(step: step, since: since, at: now)]
        case (.draining(_, let deadline), .tick):
            if now >= deadline { return finishPromotion(at: now, note: "drain deadline reached") }
            return [.scheduleTick(at: deadline)]
        case (_, .tick):
            return []

        case (.draining, .drained):
            return finishPromotion(at: now, note: "old blue pool drained")
        case (_, .drained):
            return []

        case (.shifting(let step, let since), .pause(let who)):
            state = .paused(step: step, held: now - since, gate: false)
            return [.record("paused at step \(step + 1) by \(who)"), .persist]
        case (.paused, .pause):
            return []  // already paused: harmless
        case (_, .pause):
            throw refusal("pause")

        case (.paused(let step, let held, let gate), .resume(let who)):
            if gate {
                return [.record("gate at step \(step + 1) passed by \(who)")]
                    + (step + 1 < steps.count ? enter(step: step + 1, at: now) : promote(at: now, by: who))
            }
            state = .shifting(step: step, since: now - held)
            return [.record("resumed at step \(step + 1) by \(who)"), .persist, holdTimer(step: step, since: now - held, at: now)]
        case (.shifting, .resume):
            return []  // not paused: harmless
        case (_, .resume):
            throw refusal("resume")

        case (.shifting, .promote(let who)), (.paused, .promote(let who)):
            return promote(at: now, by: who)
        case (_, .promote):
            throw refusal("promote")

        case (.smokeTesting, .abort(let reason, let who)), (.shifting, .abort(let reason, let who)),
             (.paused, .abort(let reason, let who)):
            state = .aborted("\(reason) (by \(who))", at: now)
            return [.setSplit(allBlue), .record("aborted by \(who): \(reason); all traffic on blue (\(allBlue))"), .persist,
                    .runHook(event: "rolledBack", step: currentStep ?? 0, split: allBlue)]
        case (.aborted, .abort), (.rolledBack, .abort):
            return []  // repeating abort is harmless
        case (_, .abort):
            throw refusal("abort")

        case (.smokeTesting, .alert(let name)), (.shifting, .alert(let name)), (.paused, .alert(let name)):
            return rollBack(.alert(name: name), at: now)
        case (_, .alert):
            return []

        case (let current, .deposed(let why)) where !current.isFinal:
            state = .deposed(why, at: now)
            hookPending = nil
            return []
        case (_, .deposed):
            return []
        }
    }

    /// The timer that ends the hold of `step` (held since `since`): at the hold's end, or, while
    /// the plan waits for green's first request (`onNoTraffic: wait`), at the next evaluation.
    private func holdTimer(step: Int, since: ContinuousClock.Instant, at now: ContinuousClock.Instant) -> Action {
        let waiting = spec.policy.onNoTraffic == .wait && steps[step].split.green > 0 && lastGreenTraffic == nil
        return .scheduleTick(at: waiting ? now + evaluationInterval : max(since + hold(of: step), now))
    }

    /// The plan step now in force, if any.
    public var currentStep: Int? {
        switch state {
        case .shifting(let step, _), .paused(let step, _, _): step
        default: nil
        }
    }

    private mutating func begin(at now: ContinuousClock.Instant) -> [Action] {
        [.record("release of \(spec.green.version ?? "green") started: plan \(steps.map(\.description).joined(separator: " → "))")]
            + enter(step: 0, at: now)
    }

    private mutating func enter(step: Int, at now: ContinuousClock.Instant) -> [Action] {
        // Green gets no user traffic before every green instance has passed the smoke requests.
        if steps[step].split.green > 0 && !smokePassed {
            if spec.policy.smoke.isEmpty || spec.green.instances.isEmpty {
                smokePassed = true
            } else {
                state = .smokeTesting(since: now)
                pendingStep = step
                return [.persist, .runSmoke(spec.policy.smoke, instances: spec.green.instances)]
            }
        }
        state = .shifting(step: step, since: now)
        lastGreenTraffic = nil
        hookPending = step
        let split = steps[step].split
        return [.record("step \(step + 1)/\(steps.count): \(split)"), .runHook(event: "step", step: step, split: split)]
    }

    private mutating func promote(at now: ContinuousClock.Instant, by who: String) -> [Action] {
        let deadline = now + drainTimeout
        state = .draining(since: now, deadline: deadline)
        hookPending = nil
        return [.record("promoting \(spec.green.version ?? "green") (by \(who)); draining the old blue pool"),
                .promoteGreen(split: allBlue), .drainOldBlue(deadline: deadline), .persist, .scheduleTick(at: deadline)]
    }

    private mutating func finishPromotion(at now: ContinuousClock.Instant, note: String) -> [Action] {
        state = .promoted(at: now)
        return [.record("promoted; \(note)"), .persist, .runHook(event: "promoted", step: steps.count - 1, split: steps.last?.split ?? allBlue)]
    }

    private mutating func rollBack(_ reason: RollbackReason, at now: ContinuousClock.Instant) -> [Action] {
        let step = currentStep ?? 0
        state = .rolledBack(reason, at: now)
        hookPending = nil
        return [.setSplit(allBlue), .record("rolled back: \(reason)"), .persist,
                .runHook(event: "rolledBack", step: step, split: allBlue)]
    }

    private func refusal(_ event: String) -> Refusal {
        Refusal(event: event, state: state.name)
    }
}

extension RolloutMachine {
    /// What survives a restart of a release: where it is and since when, in wall-clock time (a
    /// `ContinuousClock` instant means nothing to another process). Written at every `persist`.
    public struct Checkpoint: Sendable, Hashable, Codable {
        /// Named as `State.name` names the states (all but idle).
        public enum Phase: String, Sendable, Hashable, Codable, CaseIterable {
            case smokeTesting = "smoke-testing", shifting, paused, draining, promoted
            case rolledBack = "rolled-back", aborted
        }

        public var phase: Phase
        /// The plan step in force (or the one the smoke test stands before).
        public var step: Int
        /// When the hold of `step` started counting (shifting), or the phase began.
        public var since: Date
        /// The hold already done when paused.
        public var held: Duration?
        /// Whether a pause is a manual gate.
        public var gate: Bool
        public var smokePassed: Bool
        public var rollbackReason: RollbackReason?
        public var abortReason: String?

        public var isFinal: Bool { [.promoted, .rolledBack, .aborted].contains(phase) }

        public init(phase: Phase, step: Int, since: Date, held: Duration? = nil, gate: Bool = false, smokePassed: Bool = false,
                    rollbackReason: RollbackReason? = nil, abortReason: String? = nil) {
            self.phase = phase
            self.step = step
            self.since = since
            self.held = held
            self.gate = gate
            self.smokePassed = smokePassed
            self.rollbackReason = rollbackReason
            self.abortReason = abortReason
        }
    }

    /// The checkpoint of the current state; `nil` while idle. `now` and `wallNow` are the same
    /// moment on the two clocks.
    public func checkpoint(now: ContinuousClock.Instant, wallNow: Date) -> Checkpoint? {
        func wall(_ instant: ContinuousClock.Instant) -> Date {
            wallNow.addingTimeInterval(-Self.seconds(now - instant))
        }
        var checkpoint = Checkpoint(phase: .shifting, step: currentStep ?? pendingStep, since: wallNow, held: nil, gate: false,
                                    smokePassed: smokePassed, rollbackReason: nil, abortReason: nil)
        switch state {
        case .idle:
            return nil
        case .smokeTesting(let since):
            checkpoint.phase = .smokeTesting
            checkpoint.since = wall(since)
        case .shifting(_, let since):
            checkpoint.since = wall(since)
        case .paused(_, let held, let gate):
            checkpoint.phase = .paused
            checkpoint.held = held
            checkpoint.gate = gate
        case .draining(let since, _):
            checkpoint.phase = .draining
            checkpoint.since = wall(since)
        case .promoted(let at):
            checkpoint.phase = .promoted
            checkpoint.since = wall(at)
        case .rolledBack(let reason, let at):
            checkpoint.phase = .rolledBack
            checkpoint.since = wall(at)
            checkpoint.rollbackReason = reason
        case .aborted(let reason, let at):
            checkpoint.phase = .aborted
            checkpoint.since = wall(at)
            checkpoint.abortReason = reason
        case .deposed:
            return nil  // another replica's to save
        }
        return checkpoint
    }

    /// A machine continuing a release from its checkpoint, and the actions that pick it up: a
    /// shifting release keeps its step and counts its hold from the persisted step start; a smoke
    /// test starts over; a release that was draining is promoted (the restart ended its old
    /// connections); ended releases stay ended. Returns `nil` for a running release whose step
    /// does not fit the plan (an ended one needs no step, so it always restores).
    public static func restoring(_ spec: ReleaseSpec, from checkpoint: Checkpoint, now: ContinuousClock.Instant,
                                 wallNow: Date) -> (RolloutMachine, [Action])? {
        let running: Set<Checkpoint.Phase> = [.smokeTesting, .shifting, .paused]
        guard !running.contains(checkpoint.phase) || spec.policy.steps.indices.contains(checkpoint.step) else { return nil }
        var machine = RolloutMachine(spec: spec)
        machine.smokePassed = checkpoint.smokePassed
        machine.pendingStep = checkpoint.step
        // Stored times come from outside (a state file): bounded before they become durations, so
        // a garbled one cannot overflow the arithmetic.
        let elapsed = min(max(0, wallNow.timeIntervalSince(checkpoint.since)), Self.longestStoredSpan)
        let since = now - Duration.milliseconds(Int64(elapsed * 1000))
        let step = checkpoint.step
        switch checkpoint.phase {
        case .smokeTesting:
            machine.state = .smokeTesting(since: now)
            return (machine, [.record("restored after a restart: smoke tests start over"),
                              .runSmoke(spec.policy.smoke, instances: spec.green.instances)])
        case .shifting:
            machine.state = .shifting(step: step, since: since)
            return (machine, [.record("restored after a restart at step \(step + 1)/\(spec.policy.steps.count) "
                                      + "(\(spec.policy.steps[step].split)), held \(Duration.milliseconds(Int64(elapsed * 1000)))"),
                              .setSplit(spec.policy.steps[step].split), machine.holdTimer(step: step, since: since, at: now)])
        case .paused:
            let held = min(max(checkpoint.held ?? .zero, .zero), .seconds(Self.longestStoredSpan))
            machine.state = .paused(step: step, held: held, gate: checkpoint.gate)
            return (machine, [.record("restored after a restart: paused at step \(step + 1)"), .setSplit(spec.policy.steps[step].split)])
        case .draining:
            machine.state = .promoted(at: now)
            return (machine, [.record("restored after a restart during the drain: promoted"), .persist])
        case .promoted:
            machine.state = .promoted(at: since)
        case .rolledBack:
            machine.state = .rolledBack(checkpoint.rollbackReason ?? .aborted(by: "unknown"), at: since)
        case .aborted:
            machine.state = .aborted(checkpoint.abortReason ?? "unknown", at: since)
        }
        return (machine, [])
    }

    /// The longest time a restored release counts as held or elapsed: 10 years, in seconds.
    static let longestStoredSpan: Double = 10 * 365 * 86_400

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
