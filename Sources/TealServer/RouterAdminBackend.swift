import Foundation
import Synchronization
import TealAdmin
import TealConfig
import TealCore
import TealProxy

/// The admin API's view of a running `TealRouter`.
public struct RouterAdminBackend: AdminBackend {
    let router: TealRouter
    /// The admin token, which requests forwarded to another replica carry.
    let token: String?
    /// The Alertmanager label naming the route (for alerts forwarded to another replica).
    let routeLabel: String

    public init(router: TealRouter, token: String? = nil, routeLabel: String = AdminServer.defaultRouteLabel) {
        self.router = router
        self.token = token
        self.routeLabel = routeLabel
    }

    /// The admin API of the other replica that runs `route`'s release, when this one does not
    /// run it and the state is shared: release reads, actions and alerts for it go there.
    private func driver(of route: String) async -> AdminClient? {
        if let state = router.releases.state(route: route), !state.isFinal { return nil }
        guard let follower = router.follower, let registry = router.store as? any ReplicaRegistry,
              let listed = try? await registry.replicas(seenWithin: StateFollower.replicaTimeout),
              // Not this replica, nor one that had its admin address before it (a replica restarted
              // on the same ports finds its predecessor listed for a while: asking it would be
              // asking itself, round and round).
              let driver = listed.replicas.first(where: { $0.id != follower.replicaID && $0.drives.contains(route) && !$0.admin.isEmpty
                                                          && $0.admin != follower.record.admin })
        else { return nil }
        return try? AdminClient(address: driver.admin, token: token)
    }

    public func routes() -> [RouteView] {
        router.controller.routes.map(view)
    }

    public func route(named name: String) -> RouteView? {
        router.controller.routes.first { $0.name == name }.map(view)
    }

    public func setSplit(_ split: Split, route: String, by who: String) async throws(AdminError) -> RouteView {
        if let state = router.releases.state(route: route), !state.isFinal {
            throw .conflict("route \(route) has a release that is \(state.name); abort it (or let it end) before setting the split by hand")
        }
        do {
            let before = try await router.controller.setSplit(split, route: route)
            if before != split {
                await router.releases.record("split set to \(split) by \(who) (was \(before))", route: route, source: JournalEntry.source(of: who))
            }
        } catch .unknownRoute(let name) {
            throw .notFound("no route named \(name)")
        } catch .stateNotSaved(let detail) {
            throw .unavailable("the split was not changed: the state store cannot save it: \(detail)")
        } catch {
            throw .badRequest(error.description)
        }
        // The answer describes this change, even when another one has followed it already.
        guard var view = self.route(named: route) else { throw .notFound("no route named \(route)") }
        view.split = SplitBody(blue: split.blue, green: split.green)
        return view
    }

    public func startRollout(route name: String, request: RolloutRequest, by who: String) async throws(AdminError) -> RolloutView {
        guard let route = router.controller.routes.first(where: { $0.name == name }) else { throw .notFound("no route named \(name)") }
        var policy = route.rollout ?? RolloutPolicy(steps: [PlanStep(split: Split(blue: 1, green: 1)!), PlanStep(split: Split(blue: 0, green: 1)!)])
        if let steps = request.steps {
            guard !steps.isEmpty else { throw .badRequest("field steps must not be empty") }
            guard steps.count <= InputLimits.planSteps else {
                throw .badRequest("field steps has \(steps.count) steps; a plan has at most \(InputLimits.planSteps)")
            }
            var parsed: [PlanStep] = []
            for (index, text) in steps.enumerated() {
                guard let split = Split(parsing: text) else { throw .badRequest("field steps[\(index)]: \(Split.problem(parsing: text) ?? text)") }
                parsed.append(PlanStep(split: split))
            }
            policy.steps = parsed
        }
        if let hold = request.hold {
            policy.hold = try Self.duration(hold, field: "hold", example: "30s")
        }
        if let rate = request.maxErrorRate {
            guard (0...1).contains(rate) else { throw .badRequest("field maxErrorRate must be between 0 and 1") }
            policy.rollback.maxErrorRate = rate
        }
        if let minimum = request.minRequests {
            guard minimum >= 1 else { throw .badRequest("field minRequests must be at least 1") }
            policy.rollback.minRequests = minimum
        }
        if let p99 = request.maxP99 {
            policy.rollback.maxP99 = try Self.duration(p99, field: "maxP99", example: "800ms")
        }
        var green = route.green
        if let body = request.green {
            // Counted as JSON Schema counts a string's length: in code points.
            if let version = body.version, version.unicodeScalars.count > InputLimits.versionLength {
                throw .badRequest("field green.version is \(version.unicodeScalars.count) characters long; at most \(InputLimits.versionLength) are allowed")
            }
            guard body.instances.count <= InputLimits.poolInstances else {
                throw .badRequest("field green.instances has \(body.instances.count) instances; a pool has at most \(InputLimits.poolInstances)")
            }
            var instances: [InstanceAddress] = []
            for (index, text) in body.instances.enumerated() {
                guard let address = InstanceAddress(parsing: text) else {
                    throw .badRequest("field green.instances[\(index)]: \"\(text)\" is not host:port, e.g. 127.0.0.1:9201")
                }
                // One way to write each instance, so a list's duplicates are its repeated strings.
                guard address.description == text else {
                    throw .badRequest("field green.instances[\(index)]: write \"\(text)\" as \(address.description) (no spaces, no leading zeros)")
                }
                if let first = instances.firstIndex(of: address) {
                    throw .badRequest("field green.instances[\(index)]: \(address) is already listed as green.instances[\(first)]")
                }
                instances.append(address)
            }
            green = PoolSpec(version: body.version, instances: instances)
        }
        guard let green, !green.instances.isEmpty else {
            throw .badRequest("missing field green: the route has no green pool; give green.instances")
        }
        do {
            try await router.releases.start(ReleaseSpec(route: name, green: green, policy: policy), by: who)
        } catch {
            throw map(error)
        }
        return try await rollout(route: name)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// A duration field of a request body: with a unit, at most `longestDuration`.
    private static func duration(_ text: String, field: String, example: String) throws(AdminError) -> Duration {
        guard let duration = parseDuration(text) else { throw .badRequest("field \(field): \"\(text)\" is not a duration, e.g. \(example)") }
        guard duration <= longestDuration else {
            throw .badRequest("field \(field): \(text) is too long; the longest duration is \(formatDuration(longestDuration))")
        }
        return duration
    }

    public func rollout(route name: String) async throws(AdminError) -> RolloutView {
        guard let route = router.controller.routes.first(where: { $0.name == name }) else { throw .notFound("no route named \(name)") }
        // A driver that does not answer (it died and is still listed) leaves the stored view.
        if let driver = await driver(of: name), let view: RolloutView = try? await driver.send("GET", "/v1/routes/\(name)/rollout") {
            return view
        }
        let split = SplitBody(blue: route.split.blue, green: route.split.green)
        guard let state = router.releases.state(route: name), let spec = router.releases.spec(route: name) else {
            // Not run here and by no replica now: the release as the shared store last saved it
            // (it ended, or waits to be taken over).
            guard router.follower != nil, let stored = try? await router.releases.storedRelease(route: name) else {
                throw .notFound("route \(name) has no release")
            }
            let checkpoint = stored.checkpoint
            let held: Duration? = switch checkpoint.phase {
            case .shifting: .milliseconds(Int64(max(0, Date().timeIntervalSince(checkpoint.since)) * 1000))
            case .paused: checkpoint.held
            default: nil
            }
            return Self.view(route: name, spec: stored.spec, state: checkpoint.phase.rawValue,
                             step: checkpoint.isFinal ? nil : checkpoint.step + 1, split: split,
                             reason: checkpoint.rollbackReason?.description ?? checkpoint.abortReason, held: held)
        }
        var reason: String?
        var held: Duration?
        switch state {
        case .rolledBack(let why, _): reason = why.description
        case .aborted(let why, _): reason = why
        case .shifting(_, let since): held = .now - since
        case .paused(_, let done, _): held = done
        default: break
        }
        return Self.view(route: name, spec: spec, state: state.name, step: router.releases.step(route: name).map { $0 + 1 }, split: split,
                         reason: reason, held: held)
    }

    private static func view(route: String, spec: ReleaseSpec, state: String, step: Int?, split: SplitBody, reason: String?,
                             held: Duration?) -> RolloutView {
        let rollback = spec.policy.rollback
        let policy = RolloutView.Policy(holdSeconds: seconds(spec.policy.hold), maxErrorRate: rollback.maxErrorRate,
                                        minRequests: rollback.minRequests, maxP99Milliseconds: rollback.maxP99.map { seconds($0) * 1000 })
        return RolloutView(route: route, state: state, step: step, steps: spec.policy.steps.map(\.description), split: split,
                           reason: reason, greenVersion: spec.green.version, heldSeconds: held.map(seconds), policy: policy)
    }

    public func rolloutAction(_ action: String, route name: String, by who: String) async throws(AdminError) -> RolloutView {
        guard router.controller.routes.contains(where: { $0.name == name }) else { throw .notFound("no route named \(name)") }
        if let driver = await driver(of: name) { return try await driver.send("POST", "/v1/routes/\(name)/rollout/\(action)") }
        let event: RolloutMachine.Event = switch action {
        case "promote": .promote(by: who)
        case "pause": .pause(by: who)
        case "resume": .resume(by: who)
        default: .abort(reason: "requested", by: who)
        }
        do {
            try await router.releases.send(event, route: name)
        } catch {
            throw map(error)
        }
        return try await rollout(route: name)
    }

    public func events(route: String?, since: Date?) async -> [EventView] {
        await router.releases.events(route: route, since: since)
    }

    public func alert(route: String, name: String) async -> String {
        if let driver = await driver(of: route) {
            let payload = AlertmanagerPayload(alerts: [.init(status: "firing", labels: ["alertname": name, routeLabel: route])])
            do {
                let results: [AlertResult] = try await driver.send("POST", "/v1/alerts", body: payload)
                return results.first.map { "\($0.result) (on the replica that runs the release, \(driver.base.absoluteString))" }
                    ?? "ignored by the replica that runs the release"
            } catch {
                return "refused: the replica that runs the release did not take it: \(error)"
            }
        }
        guard let state = router.releases.state(route: route), !state.isFinal else {
            return "ignored: route \(route) has no running release"
        }
        do {
            try await router.releases.send(.alert(name: name), route: route)
        } catch {
            return "refused: \(error)"
        }
        return router.releases.state(route: route)?.name ?? "unknown"
    }

    public func reload(by who: String) async throws(AdminError) -> ReloadSummary {
        do {
            return try await router.reload(by: who)
        } catch let error as ConfigError {
            throw .badRequest("route files not reloaded, the running routes stay: \(error)")
        } catch let error as TLSCertificateError {
            throw .badRequest("not reloaded, the running certificates and routes stay: \(error)")
        } catch let error as RoutingError {
            throw AdminError(status: 503, message: "route files not reloaded: \(error)")
        } catch {
            throw AdminError(status: 500, message: "route files not reloaded: \(error)")
        }
    }

    public func metrics() async -> [UInt8] {
        let controller = router.controller
        let now = ContinuousClock.now
        var routes: [MetricsSnapshot.Route] = []
        for route in controller.routes {
            var pools: [MetricsSnapshot.Pool] = []
            for color in PoolColor.allCases where color == .blue || route.green != nil {
                let upstreams = controller.upstreams(route: route.name, pool: color)
                let connections = await router.proxy.upstreamConnections(to: upstreams)
                let instances = upstreams.map { upstream in
                    let health = controller.health(route: route.name, instance: upstream.address)
                    let counts = connections[upstream.id]
                    return MetricsSnapshot.Instance(address: upstream.address.description, healthy: health?.isAvailable(at: now) ?? false,
                                                    ejected: health?.isEjected(at: now) ?? false, answers: upstream.answers.snapshot(),
                                                    busyConnections: counts?.busy ?? 0, idleConnections: counts?.idle ?? 0,
                                                    answerOverruns: upstream.answerOverruns.load(ordering: .relaxed))
                }
                pools.append(MetricsSnapshot.Pool(color: color, version: route.pool(color).version,
                                                  statistics: controller.statistics(route: route.name, pool: color) ?? PoolStatistics(),
                                                  instances: instances))
            }
            let retries = controller.retries(route: route.name)
            routes.append(MetricsSnapshot.Route(name: route.name, split: route.split,
                                                release: router.releases.state(route: route.name)?.name, pools: pools,
                                                retriesOnBlue: BlueRetryReason.allCases.map { ($0.label, retries[$0] ?? 0) }))
        }
        let store = MetricsSnapshot.Store(revision: router.controller.servedRevision, up: router.follower?.isUp ?? true,
                                          drives: router.releases.drivenRoutes)
        return router.metrics.render(MetricsSnapshot(routes: routes, clientConnections: router.proxy.clientConnectionCount, store: store))
    }

    public func notReady() -> String? {
        guard router.proxy.localAddress != nil else { return "the proxy is not listening yet" }
        if let follower = router.follower, !follower.hasSynced { return "the state in PostgreSQL has not been read since start-up" }
        return nil
    }

    public func replicas() async throws(AdminError) -> [ReplicaView] {
        let now = Date()
        guard let follower = router.follower, let registry = router.store as? any ReplicaRegistry else {
            // A state file: this replica alone.
            return [ReplicaView(id: "local", admin: "", current: true, revision: router.controller.servedRevision, lag: 0,
                                drives: router.releases.drivenRoutes, startedAt: router.startedAt, seenSecondsAgo: 0)]
        }
        let listed: (replicas: [ReplicaRecord], latestRevision: Int64)
        do {
            listed = try await registry.replicas(seenWithin: StateFollower.replicaTimeout)
        } catch {
            throw .unavailable("the replicas cannot be listed: \(error)")
        }
        var records = listed.replicas
        // This replica is listed even before its first report reached the store.
        if !records.contains(where: { $0.id == follower.replicaID }) { records.append(follower.record) }
        return records.map { record in
            ReplicaView(id: record.id, admin: record.admin, current: record.id == follower.replicaID, revision: record.revision,
                        lag: max(0, listed.latestRevision - record.revision), drives: record.drives, startedAt: record.startedAt,
                        seenSecondsAgo: max(0, now.timeIntervalSince(record.seenAt)))
        }
    }

    private func map(_ error: ReleaseError) -> AdminError {
        switch error {
        case .unknownRoute(let name): .notFound("no route named \(name)")
        case .noRelease(let name): .conflict("route \(name) has no release")
        case .alreadyRunning, .refused, .drivenElsewhere: .conflict(error.description)
        case .storeUnavailable: .unavailable(error.description)
        case .routing(.stateNotSaved(let detail)): .unavailable("not done: the state store cannot save it: \(detail)")
        case .routing(let routing): .badRequest(routing.description)
        }
    }

    private func view(_ route: Route) -> RouteView {
        func pool(_ color: PoolColor) -> PoolView {
            let spec = route.pool(color)
            let now = ContinuousClock.now
            let instances = spec.instances.map { address in
                let health = router.controller.health(route: route.name, instance: address)
                return InstanceView(address: address.description, healthy: health?.isAvailable(at: now) ?? false,
                                    ejected: health?.isEjected(at: now) ?? false, lastProbeFailure: health?.lastProbeFailure)
            }
            let total = router.controller.statistics(route: route.name, pool: color) ?? PoolStatistics()
            let (recent, span) = router.controller.recentTraffic(route: route.name, pool: color) ?? (PoolStatistics(), .seconds(10))
            let seconds = Self.seconds(span)
            let p99 = recent.latency(quantile: 0.99).map { Self.seconds($0) * 1000 }
            return PoolView(version: spec.version, instances: instances, requestsPerSecond: Double(recent.requests) / seconds,
                            errorRate: recent.errorRate, p99Milliseconds: p99, requests: total.requests, errors: total.errors)
        }
        return RouteView(name: route.name, host: route.match.host?.description, pathPrefix: route.match.effectivePathPrefix,
                         split: SplitBody(blue: route.split.blue, green: route.split.green), blue: pool(.blue),
                         green: route.green == nil ? nil : pool(.green), rollout: router.releases.state(route: route.name)?.name)
    }
}
