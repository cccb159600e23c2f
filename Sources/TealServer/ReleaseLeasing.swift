import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TealCore

/// Release leases, when replicas share a store (`ReleaseLeases`): a replica runs a release only
/// while it holds its lease. It renews the leases it holds every `leaseInterval`; one it cannot
/// renew (another replica took it, or the store has been away for `leaseTTL`) deposes its run,
/// which stops without changing anything more. Releases whose lease nobody holds (their replica
/// died, hung or lost the store) are taken over by whichever replica gets the lease first, and
/// continue from their stored checkpoint: the same step, its hold counted from the stored start.
extension ReleaseController {
    /// Takes the lease on `route`'s release for this replica (no-op without leases).
    func takeLease(route: String) async throws(ReleaseError) {
        guard let leases else { return }
        let fence: Int64?
        do {
            fence = try await leases.acquireLease(route: route, ttl: Self.leaseTTL)
        } catch {
            throw .storeUnavailable("\(error)")
        }
        guard fence != nil else { throw .drivenElsewhere(route) }
        leased.withLock { $0[route] = .now }
    }

    /// One round of lease keeping: renews the leases of running releases (deposing those it
    /// cannot keep), gives up those of ended ones, and takes over orphaned releases.
    public func keepLeases(now: ContinuousClock.Instant = .now) async {
        guard let leases else { return }
        for (route, run) in runs.withLock({ $0 }) {
            let renewed = leased.withLock { $0[route] }
            if run.state.isFinal, run.deposition == nil, !run.endSaved, store != nil {
                // An end the store did not take (it was away): saved before the lease goes, or
                // another replica would take the release over from its last saved step.
                _ = await Self.answer(within: .seconds(1)) { await run.save() }
            }
            if run.state.isFinal && (run.endSaved || store == nil || run.deposition != nil) {
                guard renewed != nil else { continue }
                await leaseChanges.withLock {
                    // Only while this ended run is still the route's: a new one may hold the lease now.
                    guard runs.withLock({ $0[route] === run }) else { return }
                    try? await leases.releaseLease(route: route)
                    leased.withLock { $0[route] = nil }
                }
                continue
            }
            // A renewal that gets no answer within a second counts as failed: the lease must not
            // outlive its time here while the store is away.
            switch await Self.answer(within: .seconds(1), { try await leases.acquireLease(route: route, ttl: Self.leaseTTL) }) {
            case .some(.success(.some)):
                leased.withLock { $0[route] = .now }
            case .some(.success(.none)):
                await run.depose(why: "another replica took its lease")
            case .some(.failure), .none:
                // An ended run whose end is not saved yet stays: its save is fenced, and it is
                // all that keeps a later take-over from continuing the release.
                if let renewed, ContinuousClock.now - renewed >= Self.leaseTTL, !run.state.isFinal {
                    await run.depose(why: "the lease could not be renewed for \(Self.leaseTTL)")
                }
            }
        }
        guard let orphans = try? await leases.unledReleases() else { return }
        for route in orphans where runs.withLock({ $0[route].map { $0.state.isFinal && $0.endSaved } ?? true }) {
            // `try?` folds "the store failed" and "another replica holds it" into nil.
            guard (try? await leases.acquireLease(route: route, ttl: Self.leaseTTL)) != nil else { continue }
            leased.withLock { $0[route] = .now }
            guard let stored = try? await storedRelease(route: route) else {
                try? await leases.releaseLease(route: route)
                leased.withLock { $0[route] = nil }
                continue
            }
            await record("taken over: its replica stopped renewing its lease; continuing from step \(stored.checkpoint.step + 1)",
                         route: route, source: "restart")
            await restore([route: stored])
        }
    }

    /// `operation`'s result, or `nil` when it has not come within `limit` (it goes on in the
    /// background; a store call ends at its own timeout).
    static func answer<T: Sendable>(within limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async -> Result<T, any Error>? {
        let box = Mutex<Result<T, any Error>?>(nil)
        await StateFollower.waiting(atMost: limit) {
            let result: Result<T, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            box.withLock { $0 = result }
        }
        return box.withLock { $0 }
    }

    /// Gives up every lease this replica holds (shutdown), waiting at most a second.
    public func releaseLeases() async {
        guard let leases else { return }
        let routes = leased.withLock { held in defer { held = [:] }; return Array(held.keys) }
        guard !routes.isEmpty else { return }
        await StateFollower.waiting(atMost: .seconds(1)) {
            for route in routes { try? await leases.releaseLease(route: route) }
        }
    }
}

/// Keeps this replica's release leases (`ReleaseController.keepLeases`) every `leaseInterval`
/// until shutdown, then gives them up so another replica continues at once.
struct LeaseKeeping: Service {
    let releases: ReleaseController

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await releases.keepLeases()
                try? await Task.sleep(for: ReleaseController.leaseInterval)
            }
        }
        releases.stopAll()
        await releases.releaseLeases()
    }
}
