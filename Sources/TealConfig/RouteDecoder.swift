import Foundation
import TealCore

/// Builds a `Route` from the YAML tree of one route file, checking every key on the way.
/// The keys and their defaults are listed on `RouteFileLoader`.
enum RouteDecoder {
    /// `hookCheck`, when given, checks that hook commands can run (see `HookCommandCheck`).
    static func route(from root: ConfigNode, hookCheck: HookCommandCheck? = nil) throws(ConfigError) -> Route {
        let keys = try root.mapping(keys: ["route", "match", "blue", "green", "split", "rollout", "preview", "sticky", "health", "upstream"])
        let name = try routeName(keys.required("route", expecting: "the route's name, e.g. route: shop"))
        let blue = try pool(keys.required("blue", expecting: "the running pool, e.g. blue: {instances: [127.0.0.1:9101]}"),
                            isBlue: true, taken: [])
        var green: PoolSpec?
        if let node = keys.optional("green") {
            green = try pool(node, isBlue: false, taken: Set(blue.instances))
        }
        var route = Route(name: name, blue: blue, green: green)
        if let node = keys.optional("match") { route.match = try match(node) }
        if let node = keys.optional("split") {
            route.split = try node.split()
            if route.split.green > 0 {
                try requireGreen(green, at: node, "\(route.split) gives green traffic", orElse: "use 1/0")
            }
        }
        if let node = keys.optional("rollout") {
            route.rollout = try rollout(node, green: green, hookCheck: hookCheck, retryOnBlue: &route.retryOnBlue)
        }
        // Without a split the route starts all blue in its plan's terms (6/0 for 6/0 → 2/4 → 0/6).
        if keys.optional("split") == nil { route.split = route.allBlue }
        if let node = keys.optional("preview") {
            route.preview = try preview(node)
            if route.preview != nil {
                try requireGreen(green, anyPool: true, at: node, "sends preview requests to green", orElse: "remove preview")
            }
        }
        if let node = keys.optional("sticky") { route.sticky = try sticky(node) }
        if let node = keys.optional("health") { route.health = try health(node) }
        if let node = keys.optional("upstream") { route.upstream = try upstream(node) }
        return route
    }

    /// Throws at `node`, whose key does `what`, unless the route has green instances (with
    /// `anyPool`, a green pool, even an empty one); `fix` is the other way out.
    static func requireGreen(_ green: PoolSpec?, anyPool: Bool = false, at node: ConfigNode, _ what: String,
                             orElse fix: String) throws(ConfigError) {
        // A DNS pool gets its instances when the name resolves.
        if anyPool ? green != nil : !(green?.instances.isEmpty ?? true) || green?.dns != nil { return }
        let missing = anyPool ? "there is no green pool; add green" : "there are no green instances; add green.instances"
        throw node.error("\(what), but \(missing) or \(fix)")
    }

    /// 1 to 63 ASCII letters, digits, `.`, `_` or `-`, starting with a letter or digit.
    private static func routeName(_ node: ConfigNode) throws(ConfigError) -> String {
        let name = try node.string("the route's name")
        func allowed(_ c: Character, first: Bool) -> Bool {
            c.isASCII && (c.isLetter || c.isNumber || (!first && ".-_".contains(c)))
        }
        guard let head = name.first, allowed(head, first: true), name.count <= 63,
              name.dropFirst().allSatisfy({ allowed($0, first: false) }) else {
            throw node.error("\"\(name)\" is not a valid route name; use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit")
        }
        return name
    }

    private static func match(_ node: ConfigNode) throws(ConfigError) -> RouteMatch {
        let keys = try node.mapping(keys: ["host", "pathPrefix"])
        var match = RouteMatch.any
        if let hostNode = keys.optional("host") {
            let text = try hostNode.string("a host name like shop.example.com")
            guard let host = HostPattern(parsing: text) else {
                throw hostNode.error("\"\(text)\" is not a host name or wildcard; expected e.g. shop.example.com or *.example.com")
            }
            match.host = host
        }
        if let prefixNode = keys.optional("pathPrefix") {
            let text = try prefixNode.string("a path prefix like /api")
            guard text.hasPrefix("/"), !text.contains(where: { $0.isWhitespace || $0 == "?" || $0 == "#" }) else {
                throw prefixNode.error("\"\(text)\" is not a path prefix; expected one that starts with / and has no spaces, ? or #, e.g. /api")
            }
            match.pathPrefix = text
        }
        return match
    }

    /// A pool: blue needs at least one instance, green may have none. No instance may be listed
    /// twice, nor be in `taken` (the blue pool's, when reading green).
    private static func pool(_ node: ConfigNode, isBlue: Bool, taken: Set<InstanceAddress>) throws(ConfigError) -> PoolSpec {
        let keys = try node.mapping(keys: ["version", "instances", "tls", "dns", "resolveEvery"])
        let versionNode = keys.optional("version")
        let version = try versionNode?.string("a version string like \"1.4.2\"")
        if let version, let versionNode, version.count > InputLimits.versionLength {
            throw versionNode.error("the version is \(version.count) characters long; at most \(InputLimits.versionLength) are allowed")
        }
        var dns: DNSDiscovery?
        if let dnsNode = keys.optional("dns") {
            if keys.optional("instances") != nil {
                throw dnsNode.error("give either dns or instances, not both")
            }
            let text = try dnsNode.string("a DNS name and port, e.g. app-green.prod.svc.cluster.local:8080")
            guard let address = InstanceAddress(parsing: text) else {
                throw dnsNode.error("\"\(text)\" is not name:port, e.g. app-green.prod.svc.cluster.local:8080")
            }
            dns = DNSDiscovery(name: address.host, port: address.port)
            if let every = keys.optional("resolveEvery") {
                let interval = try every.duration()
                guard interval >= .milliseconds(100) else { throw every.error("resolveEvery must be at least 100ms") }
                dns?.interval = interval
            }
        } else if let every = keys.optional("resolveEvery") {
            throw every.error("resolveEvery needs dns")
        }
        let instancesNode = isBlue && dns == nil
            ? try keys.required("instances", expecting: "a list of host:port, e.g. [127.0.0.1:9101], or dns: name:port")
            : keys.optional("instances")
        let items = try instancesNode?.list(of: "host:port strings") ?? []
        if isBlue, items.isEmpty, let instancesNode {
            throw instancesNode.error("expected at least one host:port, found an empty list; e.g. [127.0.0.1:9101]")
        }
        if items.count > InputLimits.poolInstances, let instancesNode {
            throw instancesNode.error("\(items.count) instances listed; a pool has at most \(InputLimits.poolInstances)")
        }
        var instances: [InstanceAddress] = []
        for item in items {
            let address = try item.instance()
            if let first = instances.firstIndex(of: address) {
                throw item.error("\(address) is already listed as \(node.path).instances[\(first)]")
            }
            if taken.contains(address) {
                throw item.error("\(address) is also in blue; an instance belongs to one pool")
            }
            instances.append(address)
        }
        var tls: UpstreamTLS?
        if let tlsNode = keys.optional("tls") {
            let tlsKeys = try tlsNode.mapping(keys: ["ca", "serverName"])
            tls = UpstreamTLS(caFile: try tlsKeys.optional("ca")?.string("a PEM file of the CA certificates to trust, e.g. /etc/teal/upstream-ca.pem"),
                              serverName: try tlsKeys.optional("serverName")?.string("the name the instances' certificates carry, e.g. api.internal"))
            if let ca = tls?.caFile, !FileManager.default.isReadableFile(atPath: ca), let caNode = tlsKeys.optional("ca") {
                throw caNode.error("cannot read the CA file \(ca)")
            }
        }
        return PoolSpec(version: version, instances: instances, tls: tls, dns: dns)
    }
}
