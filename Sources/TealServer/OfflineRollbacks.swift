import Foundation
import Logging
import Synchronization
import TealCore

/// The safe direction while the shared store is away. A replica that cannot reach the store
/// judges the running releases it does not drive by its own traffic (`OfflineRollbackGuard`), and
/// when green fails by it, puts its own split back to blue, unsaved: the driver's verdict and
/// saves cannot reach it now. A driver's own rollback whose split could not be saved is noted
/// here too. Once the store is back, each such rollback is journaled, and the release is asked to
/// roll back (an alert to the replica that runs it) until the stored release has ended, so the
/// fleet follows and a later take-over cannot put green back.
public final class OfflineRollbacks: Sendable {
    struct Pending: Sendable {
        var text: String
        var journaled = false
        var lastAsked: ContinuousClock.Instant?
        let since: ContinuousClock.Instant
    }

    private struct State {
        /// Running releases as last read from the store, by route.
        var releases: [String: ReleaseRecord] = [:]
        var guards: [String: OfflineRollbackGuard] = [:]
        var pending: [String: Pending] = [:]
    }

    private let state = Mutex(State())
    private let controller: RoutingController
    private let logger: Logger
    /// How long a local rollback is reported (asked of the release) before it is given up.
    static let reportFor = Duration.seconds(60)
    /// How often the release is asked again while it has not ended.
    static let askEvery = Duration.seconds(1)

    init(controller: RoutingController, logger: Logger) {
        self.controller = controller
        self.logger = logger
    }

    /// The routes with a local rollback not yet reported.
    public var pendingRoutes: [String] { state.withLock { $0.pending.keys.sorted() } }

    /// The releases the store holds now (latest per route); the running ones are guarded.
    func known(_ releases: [String: ReleaseRecord]) {
        state.withLock { $0.releases = releases.filter { !$0.value.checkpoint.isFinal } }
    }

    /// One round while the store is away: each running release not driven here (`driven`) whose
    /// route gives green traffic is judged by this replica's traffic since the store went away.
    func judge(driven: Set<String>, at now: ContinuousClock.Instant) async {
        let releases = state.withLock { state in state.releases.filter { state.pending[$0.key] == nil && !driven.contains($0.key) } }
        for (route, record) in releases.sorted(by: { $0.key < $1.key }) {
            guard controller.routes.first(where: { $0.name == route })?.split.green ?? 0 > 0,
                  let blue = controller.statistics(route: route, pool: .blue),
                  let green = controller.statistics(route: route, pool: .green) else {
                state.withLock { _ = $0.guards.removeValue(forKey: route) }
                continue
            }
            let reason = state.withLock { state -> RollbackReason? in
                guard var verdict = state.guards[route] else {
                    state.guards[route] = OfflineRollbackGuard(policy: record.spec.policy.rollback, blue: blue, green: green, at: now)
                    return nil
                }
                defer { state.guards[route] = verdict }
                return verdict.observe(blue: blue, green: green, at: now)
            }
            guard let reason else { continue }
            let allBlue = record.spec.policy.allBlue
            _ = try? await controller.setSplit(allBlue, route: route, persist: false)
            logger.warning("state store away: green fails by this replica's own traffic; this replica's split is back to blue (unsaved)",
                           metadata: ["route": "\(route)", "split": "\(allBlue)", "reason": "\(reason)"])
            state.withLock { state in
                state.guards[route] = nil
                state.pending[route] = Pending(text: "split \(allBlue) (all blue) set by this replica alone while the state store was away: "
                                                   + "green failed by its own traffic: \(reason)", since: now)
            }
        }
    }

    /// A release's rollback applied here but not saved (its driver, with the store away).
    func appliedUnsaved(_ split: Split, route: String, why: String) {
        state.withLock { state in
            state.pending[route] = Pending(text: "split \(split) (all blue) applied by this replica's release driver but not saved: \(why)",
                                           since: .now)
        }
    }

    /// The store answers again: the guards' windows start over next time it goes away.
    func storeBack() {
        state.withLock { $0.guards = [:] }
    }

    /// Reports the local rollbacks while the store is back: journals each once (`record`), then
    /// asks its release to roll back (`ask`, which says whether the stored release has ended)
    /// every `askEvery`, until it has ended or `reportFor` has passed.
    func report(at now: ContinuousClock.Instant, record: (String, String) async -> Void,
                ask: (String, String) async -> Bool) async {
        let due = state.withLock { state in
            state.pending.filter { $0.value.lastAsked.map { now - $0 >= Self.askEvery } ?? true }
        }
        for (route, pending) in due.sorted(by: { $0.key < $1.key }) {
            if !pending.journaled {
                await record(pending.text, route)
                state.withLock { $0.pending[route]?.journaled = true }
            }
            let ended = await ask(route, "teal-replica-rollback")
            state.withLock { state in
                if ended || now - pending.since >= Self.reportFor {
                    state.pending[route] = nil
                } else {
                    state.pending[route]?.lastAsked = now
                }
            }
            if !ended && now - pending.since >= Self.reportFor {
                logger.error("a rollback made while the state store was away was not taken up by the release in time",
                             metadata: ["route": "\(route)"])
            }
        }
    }
}
