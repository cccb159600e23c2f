import Foundation
import TealCore
import Yams

/// Reads route files (YAML, one route per file) into `Route` values, and checks a set of routes
/// for conflicts between files.
///
/// Every problem is a `ConfigError` naming the file, the line and the key. Unknown keys are errors
/// at every level. The keys, their types and defaults:
///
/// | key | type | default |
/// |---|---|---|
/// | `route` | name: 1–63 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit | required |
/// | `match.host` | `shop.example.com` or `*.example.com` | any host |
/// | `match.pathPrefix` | path starting with `/`, no spaces, `?` or `#` | `/` |
/// | `blue.version` | string (`1.5` is kept as written) | none |
/// | `blue.instances` | non-empty list of `host:port`, no duplicates | required |
/// | `green.version`, `green.instances` | as blue; instances may be empty, none shared with blue | no green pool |
/// | `blue.dns`, `green.dns` | `name:port` instead of `instances`: the pool is what the name resolves to (A and AAAA), re-resolved every `resolveEvery` (duration ≥ 100ms, default `5s`); a failed or empty answer keeps the last set | none |
/// | `blue.tls`, `green.tls` | `{ca: PEM file (readable), serverName}`: HTTPS to the instances, certificate verified against `ca` (else the system store) for `serverName` (else the instance host) | plain HTTP |
/// | `split` | `B/G` (`2/4`) or green percentage (`25%`); green > 0 needs green instances | all blue in the plan's terms (`6/0` for steps `[6/0, 2/4, 0/6]`), `1/0` without a plan |
/// | `rollout.steps` | non-empty list of splits, or `{split, hold}` / `{split, gate: true}` | required in `rollout` |
/// | `rollout.hold` | duration | `30s` |
/// | `rollout.smoke[]` | `{path (required), expect: 100...599 = 200, method = GET, bodyContains, timeout = 2s}` | none |
/// | `rollout.rollback.maxErrorRate` | `5%`, `0.5%` or a fraction 0...1 | `5%` |
/// | `rollout.rollback.minRequests` | integer >= 1 | `50` |
/// | `rollout.rollback.maxP99` | duration | none |
/// | `rollout.onNoTraffic` | `wait` (a step waits for green's first request), `ignore`, or `{rollback: <duration>}` | `wait` |
/// | `rollout.hooks.step`, `rollout.hooks.promoted`, `rollout.hooks.rolledBack` | shell command, not empty, run by `/bin/sh -c` in Teal's working directory; its program must resolve when the file loads (`HookCommandCheck`: on `PATH`, or with a `/` an executable file, relative to the working directory) | none |
/// | `rollout.hooks.timeout` | duration | `60s` |
/// | `rollout.autoStart` | boolean; `true` needs green instances | `false` |
/// | `rollout.retryOnBlue.enabled` | boolean: green's failed safe requests are answered by blue | `true` |
/// | `rollout.retryOnBlue.on500` | boolean: green's 500s count as failures too (502, 503, 504 always do) | `false` |
/// | `rollout.retryOnBlue.budget` | rate: retries at most this share of the route's requests | `20%` |
/// | `rollout.retryOnBlue.maxBody` | bytes, 0 to 16 MiB: request bodies up to this size are kept for a retry | `65536` |
/// | `preview` | `true` (defaults), `false`, or a mapping of the keys below; needs a green pool | off |
/// | `sticky` | exactly one of `versionCookie: NAME` (the answer sets cookie NAME to the version that served it; requests with it keep that version while it has weight), `keyHeader: NAME` or `keyCookie: NAME` (that header's or cookie's value, hashed over the split's weights); names are tokens | off |
/// | `preview.header` | header name: letters, digits and ``!#$%&'*+-.^_`\|~`` | `X-Teal-Pool` |
/// | `preview.value` | visible ASCII characters, no spaces | `green` |
/// | `preview.cookie` | cookie name, same characters as `preview.header` | none |
/// | `preview.enabled` | boolean; `false` turns preview off | `true` |
/// | `health.path` | request path | `/healthz` |
/// | `health.interval`, `health.timeout` | durations, timeout <= interval | `2s`, `1s` |
/// | `health.rise`, `health.fall`, `health.ejectAfter` | integers >= 1 | `2`, `3`, `5` |
/// | `health.ejection`, `health.maxEjection` | durations, ejection <= maxEjection | `10s`, `300s` |
/// | `health.enabled` | boolean | `true` |
/// | `upstream.connectTimeout`, `upstream.responseTimeout` | durations | `2s`, `30s` |
/// | `upstream.maxTries` | integer 1...10 | `3` |
///
/// Durations are a number and a unit: `250ms`, `30s`, `5m`, `1h`, `1.5s`; they must be above 0.
/// A key with no value (`green:`) counts as absent; a route with no `match` is the default route.
public enum RouteFileLoader {
    /// Reads the routes at `path`: a single route file, or a directory whose `*.yaml` and `*.yml`
    /// files are read in name order (other files and names starting with `.` are ignored).
    /// Then checks them together with `validate(_:files:)`. An empty directory gives `[]`.
    ///
    /// Hook commands are checked with `hookCheck` (by default against this process's `PATH` and
    /// working directory, where hooks run).
    public static func loadRoutes(at path: String, hookCheck: HookCommandCheck = .current) throws(ConfigError) -> [Route] {
        let files = try routeFiles(at: path)
        var routes: [Route] = []
        for file in files {
            routes.append(try parseRoute(yaml: readText(of: file), file: file, hookCheck: hookCheck))
        }
        try validate(routes, files: files)
        return routes
    }

    /// Reads one route file's text; `file` is only used in errors. Hook commands are checked
    /// only with a `hookCheck` (`loadRoutes` always checks them).
    public static func parseRoute(yaml: String, file: String, hookCheck: HookCommandCheck? = nil) throws(ConfigError) -> Route {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw syntaxError(error, file: file)
        }
        guard let root else {
            throw ConfigError(file: file, message: "the file has no route; expected at least `route` and `blue`")
        }
        return try RouteDecoder.route(from: ConfigNode(root: root, file: file), hookCheck: hookCheck)
    }

    /// Checks routes read from different files against each other: route names are unique, no two
    /// routes have the same match (host and effective path prefix), and so at most one is the
    /// default route. `files[i]` is the file `routes[i]` came from; errors name both files.
    public static func validate(_ routes: [Route], files: [String]) throws(ConfigError) {
        precondition(routes.count == files.count, "one file per route")
        var fileByName: [String: String] = [:]
        var earlierByMatch: [MatchKey: (route: String, file: String)] = [:]
        for (route, file) in zip(routes, files) {
            if let other = fileByName[route.name] {
                throw ConfigError(file: file, key: "route",
                                  message: "route `\(route.name)` is already defined in \(other); route names must be unique")
            }
            fileByName[route.name] = file
            let key = MatchKey(route.match)
            if let other = earlierByMatch[key] {
                let message = key.isDefault
                    ? "route `\(route.name)` has no match, but route `\(other.route)` in \(other.file) is already the default route; give one of them a match"
                    : "match (\(route.match)) is the same as route `\(other.route)`'s in \(other.file); each route needs its own host or pathPrefix"
                throw ConfigError(file: file, key: "match", message: message)
            }
            earlierByMatch[key] = (route.name, file)
        }
    }

    /// What makes two matches the same: host pattern and effective path prefix.
    private struct MatchKey: Hashable {
        let host: HostPattern?
        let pathPrefix: String

        init(_ match: RouteMatch) {
            host = match.host
            pathPrefix = match.effectivePathPrefix
        }

        var isDefault: Bool { host == nil && pathPrefix == "/" }
    }

    private static func routeFiles(at path: String) throws(ConfigError) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ConfigError(file: path, message: "no such file or directory")
        }
        guard isDirectory.boolValue else { return [path] }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw ConfigError(file: path, message: "cannot list the directory")
        }
        let directory = path.hasSuffix("/") ? path : path + "/"
        return names
            .filter { !$0.hasPrefix(".") && ($0.hasSuffix(".yaml") || $0.hasSuffix(".yml")) }
            .sorted()
            .map { directory + $0 }
    }

    private static func readText(of file: String) throws(ConfigError) -> String {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError(file: file, message: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, message: "the file is not UTF-8 text")
        }
        return text
    }

    /// A Yams parse failure as a `ConfigError` at the line libyaml points to.
    private static func syntaxError(_ error: any Error, file: String) -> ConfigError {
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            var message = "invalid YAML: \(problem)" + (context.map { " (\($0.text))" } ?? "")
            if (problem + (context?.text ?? "")).contains("alias") {
                message += "; a value that starts with * must be quoted, e.g. \"*.example.com\""
            }
            return ConfigError(file: file, line: mark.line, message: message)
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "`\($0)`" }.joined(separator: ", ")
            return ConfigError(file: file, line: context.mark.line,
                               message: "invalid YAML: key \(keys) appears more than once in the same mapping")
        default:
            return ConfigError(file: file, message: "invalid YAML: \(error)")
        }
    }
}
