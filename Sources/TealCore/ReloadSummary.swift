/// What a reload changed, by route name.
public struct ReloadSummary: Sendable, Hashable, Codable {
    public var added: [String] = []
    public var changed: [String] = []
    public var removed: [String] = []
    public var unchanged: [String] = []

    public init() {}
}

/// How a reload of the route files changes the routes served, decided from what is served now
/// and the files now. Pure: `RoutingController` carries the plan out (saves, then publishes).
///
/// Routes keep their run-time state where the file did not change what that state rests on. For
/// each pool, an unchanged file pool keeps the served pool (a promotion, an API green); a changed
/// one takes the file's. The split stays unless green is left without instances (then all blue
/// in the file's terms). New routes start as their file says; removed ones go. DNS pools get the
/// instances their names resolve to now (`resolved`; the file lists none), and a DNS pool whose
/// name and port did not change keeps its instances when there is no fresh answer.
public enum RouteReload {
    /// A route as served now, with the file it was loaded from.
    public struct Served: Sendable, Hashable {
        public var file: Route
        public var route: Route

        public init(file: Route, route: Route) {
            self.file = file
            self.route = route
        }
    }

    /// What happens to one route of the new files, in their order.
    public enum Decision: Sendable, Hashable {
        /// A new route, served as its file says.
        case added(Route)
        /// The file did not change: everything stays.
        case unchanged(String)
        /// Served as `route` from now on. A pool whose flag is false changed: its traffic
        /// counters and rotation start over.
        case changed(Route, keepsBlue: Bool, keepsGreen: Bool)
    }

    public struct Plan: Sendable, Hashable {
        public var decisions: [Decision] = []
        public var summary = ReloadSummary()
    }

    public static func plan(served: [Served], files: [Route], resolved: [String: [PoolColor: [InstanceAddress]]] = [:]) -> Plan {
        var plan = Plan()
        for file in files {
            /// The file's pool as it will be served: a DNS pool with its instances.
            func serving(_ color: PoolColor, before: PoolSpec?) -> PoolSpec? {
                let filePool = color == .blue ? file.blue : file.green
                guard var pool = filePool, let dns = pool.dns else { return filePool }
                let sameName = before?.dns.map { $0.name == dns.name && $0.port == dns.port } ?? false
                pool.instances = resolved[file.name]?[color] ?? (sameName ? before?.instances ?? [] : [])
                return pool
            }
            guard let current = served.first(where: { $0.route.name == file.name }) else {
                plan.summary.added.append(file.name)
                var route = file
                route.blue = serving(.blue, before: nil) ?? file.blue
                route.green = serving(.green, before: nil)
                plan.decisions.append(.added(route))
                continue
            }
            guard current.file != file else {
                plan.summary.unchanged.append(file.name)
                plan.decisions.append(.unchanged(file.name))
                continue
            }
            plan.summary.changed.append(file.name)
            var route = file
            route.blue = current.file.blue == file.blue ? current.route.blue : serving(.blue, before: current.route.blue) ?? file.blue
            route.green = current.file.green == file.green ? current.route.green : serving(.green, before: current.route.green)
            route.split = current.route.split
            if route.split.green > 0 && (route.green?.instances.isEmpty ?? true) { route.split = file.allBlue }
            plan.decisions.append(.changed(route, keepsBlue: route.blue == current.route.blue, keepsGreen: route.green == current.route.green))
        }
        plan.summary.removed = served.map(\.route.name).filter { name in !files.contains { $0.name == name } }
        return plan
    }
}
