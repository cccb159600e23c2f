import Testing
import TealCore

/// `RouteReload.plan`: what a reload of the route files keeps, takes from the files, adds and removes.
@Suite("Route reload plan")
struct RouteReloadTests {
    static func instance(_ port: Int) -> InstanceAddress { InstanceAddress(host: "127.0.0.1", port: port) }
    static func pool(_ version: String, _ ports: Int...) -> PoolSpec { PoolSpec(version: version, instances: ports.map(instance)) }

    static let shopFile = Route(name: "shop", blue: pool("1", 9001), green: pool("2", 9002), split: "6/0")

    @Test("an unchanged file keeps the run-time state (split, promoted pools); new files are added, missing ones removed")
    func unchangedAddedRemoved() {
        var served = Self.shopFile
        served.split = "2/4"
        let old = RouteReload.Served(file: Route(name: "old", blue: Self.pool("1", 9100)), route: Route(name: "old", blue: Self.pool("1", 9100)))
        let api = Route(name: "api", blue: Self.pool("7", 9200))
        let plan = RouteReload.plan(served: [RouteReload.Served(file: Self.shopFile, route: served), old], files: [Self.shopFile, api])
        #expect(plan.decisions == [.unchanged("shop"), .added(api)])
        #expect(plan.summary.unchanged == ["shop"] && plan.summary.added == ["api"] && plan.summary.removed == ["old"])
        #expect(plan.summary.changed.isEmpty)
    }

    @Test("a changed file: an unchanged file pool keeps the served pool and its counters; a changed one takes the file's; the split stays")
    func changedPools() {
        var served = Self.shopFile
        served.blue = Self.pool("2", 9002)   // green was promoted at run time
        served.green = Self.pool("3", 9003)  // and a new green set through the API
        served.split = "4/2"
        var file = Self.shopFile
        file.green = Self.pool("4", 9004)
        let plan = RouteReload.plan(served: [RouteReload.Served(file: Self.shopFile, route: served)], files: [file])
        var expected = file
        expected.blue = Self.pool("2", 9002)
        expected.split = "4/2"
        #expect(plan.decisions == [.changed(expected, keepsBlue: true, keepsGreen: false)])
        #expect(plan.summary.changed == ["shop"])
    }

    @Test("green gone from the file while it has traffic: all blue in the file's terms")
    func greenGone() {
        var served = Self.shopFile
        served.split = "2/4"
        var file = Self.shopFile
        file.green = nil
        let plan = RouteReload.plan(served: [RouteReload.Served(file: Self.shopFile, route: served)], files: [file])
        guard case .changed(let route, true, false) = plan.decisions.first else { Issue.record("\(plan.decisions)"); return }
        #expect(route.green == nil && route.split == "6/0")
    }

    @Test("DNS pools: fresh answers are served; without one a pool keeps its instances only when its name and port stayed")
    func dnsPools() {
        let dns = PoolSpec(version: "1", instances: [], dns: DNSDiscovery(name: "shop.internal", port: 8080))
        var servedRoute = Route(name: "shop", blue: dns)
        servedRoute.blue.instances = [Self.instance(9001)]
        let served = RouteReload.Served(file: Route(name: "shop", blue: dns), route: servedRoute)

        var renamedFile = Route(name: "shop", blue: PoolSpec(version: "1", instances: [], dns: DNSDiscovery(name: "shop-v2.internal", port: 8080)))
        var plan = RouteReload.plan(served: [served], files: [renamedFile])
        guard case .changed(let renamed, false, true) = plan.decisions.first else { Issue.record("\(plan.decisions)"); return }
        #expect(renamed.blue.instances.isEmpty)  // a new name with no answer yet has none

        plan = RouteReload.plan(served: [served], files: [renamedFile], resolved: ["shop": [.blue: [Self.instance(9005)]]])
        guard case .changed(let resolved, _, _) = plan.decisions.first else { Issue.record("\(plan.decisions)"); return }
        #expect(resolved.blue.instances == [Self.instance(9005)])

        // Same name and port, another interval: the file changed, the instances stay.
        renamedFile.blue.dns = DNSDiscovery(name: "shop.internal", port: 8080, interval: .seconds(30))
        plan = RouteReload.plan(served: [served], files: [renamedFile])
        guard case .changed(let kept, _, _) = plan.decisions.first else { Issue.record("\(plan.decisions)"); return }
        #expect(kept.blue.instances == [Self.instance(9001)])
    }
}
