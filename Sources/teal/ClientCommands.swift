import ArgumentParser
import Foundation
import TealAdmin
import TealCore

/// Options every client command shares.
struct ClientOptions: ParsableArguments {
    @Option(help: "Admin API address (default: $TEAL_ADMIN or http://127.0.0.1:9901). The token comes from $TEAL_ADMIN_TOKEN.")
    var admin: String?

    @Flag(help: "Print JSON for scripts instead of a table.")
    var json = false

    func client() throws -> AdminClient {
        let environment = ProcessInfo.processInfo.environment
        do {
            return try AdminClient(address: admin ?? environment["TEAL_ADMIN"] ?? "http://127.0.0.1:9901",
                                   token: environment["TEAL_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        } catch {
            throw fail(error)
        }
    }
}

/// Prints a server (or connection) error as given and exits 2.
func fail(_ error: AdminError) -> ExitCode {
    FileHandle.standardError.write(Data("teal: \(error.message)\(error.code > 0 ? " (HTTP \(error.code))" : "")\n".utf8))
    return ExitCode(2)
}

/// One JSON value on one line (`events --follow --json`: a line per entry).
func jsonLine(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}

func printJSON(_ value: some Encodable) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    if let data = try? encoder.encode(value) { print(String(decoding: data, as: UTF8.self)) }
}

/// Prints and flushes at once, for commands that keep running: a pipe then gets each line as it
/// is printed, not when a buffer fills or the command ends.
func emit(_ text: String, terminator: String = "\n") {
    print(text, terminator: terminator)
    fflush(nil)
}

func describe(_ view: RolloutView) -> String {
    let step = view.step.map { "step \($0)/\(view.steps.count) " } ?? ""
    return "\(view.route): \(view.state) \(step)split \(view.split.blue)/\(view.split.green) plan \(view.steps.joined(separator: " → "))"
        + (view.reason.map { " — \($0)" } ?? "")
}

struct RoutesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "routes", abstract: "List routes: pools, health, split, live rates.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let routes: [RouteView]
        do { routes = try await options.client().send("GET", "/v1/routes") } catch let error as AdminError { throw fail(error) }
        if options.json { printJSON(routes); return }
        print("ROUTE            SPLIT   POOL   VERSION   HEALTHY  REQ/S    ERR%   P99ms  RELEASE")
        for route in routes {
            for (name, pool) in [("blue", route.blue), ("green", route.green)] {
                guard let pool else { continue }
                let healthy = "\(pool.instances.filter(\.healthy).count)/\(pool.instances.count)"
                let p99 = pool.p99Milliseconds.map { String(format: "%.1f", $0) } ?? "-"
                print([route.name.padding(16), "\(route.split.blue)/\(route.split.green)".padding(7), name.padding(6),
                       (pool.version ?? "-").padding(9), healthy.padding(8), String(format: "%.1f", pool.requestsPerSecond).padding(8),
                       String(format: "%.2f", pool.errorRate * 100).padding(6), p99.padding(6), route.rollout ?? "-"].joined(separator: " "))
            }
        }
    }
}

struct ReplicasCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicas",
        abstract: "List the teal serve replicas sharing this one's state (PostgreSQL): admin address, revision served, lag, releases run.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let replicas: [ReplicaView]
        do { replicas = try await options.client().send("GET", "/v1/replicas") } catch let error as AdminError { throw fail(error) }
        if options.json { printJSON(replicas); return }
        print("REPLICA        ADMIN                  REVISION  LAG    SEEN   DRIVES")
        for replica in replicas {
            let name = replica.id + (replica.current ? "*" : "")
            print([name.padding(14), (replica.admin.isEmpty ? "-" : replica.admin).padding(22), "\(replica.revision)".padding(9),
                   "\(replica.lag)".padding(6), String(format: "%.1fs", replica.seenSecondsAgo).padding(6),
                   replica.drives.isEmpty ? "-" : replica.drives.joined(separator: ",")].joined(separator: " "))
        }
    }
}

struct SplitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "split", abstract: "Set a route's split by hand, e.g. teal split shop 2/4.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Route name.") var route: String
    @Argument(help: "Split B/G, e.g. 2/4, or a green percentage, e.g. 25%.") var split: String

    func validate() throws {
        if let problem = Split.problem(parsing: split) { throw ValidationError("split \(problem)") }
    }

    func run() async throws {
        guard let parsed = Split(parsing: split) else { throw ValidationError("split \"\(split)\" is not B/G, e.g. 2/4") }
        let view: RouteView
        do {
            view = try await options.client().send("PUT", "/v1/routes/\(route)/split", body: SplitBody(blue: parsed.blue, green: parsed.green))
        } catch let error as AdminError { throw fail(error) }
        if options.json { printJSON(view) } else { print("\(view.name): split \(view.split.blue)/\(view.split.green)") }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "Print the journal: what happened, when, and who asked.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Only this route's entries.") var route: String?
    @Option(help: "Only entries from this time on (ISO 8601, e.g. 2026-11-27T10:00:00Z).") var since: String?
    @Flag(help: "Keep printing new entries as they come (every second) until interrupted.") var follow = false

    func run() async throws {
        let client = try options.client()
        let formatter = ISO8601DateFormatter()
        var from = since
        // Entries already printed at or after the last whole second asked for (`since` is inclusive).
        var printed = Set<EventView>()
        repeat {
            var query: [String] = []
            if let route { query.append("route=\(route.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? route)") }
            if let from { query.append("since=\(from.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? from)") }
            let events: [EventView]
            do {
                events = try await client.send("GET", "/v1/events" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
            } catch { throw fail(error) }
            let fresh = events.filter { !printed.contains($0) }
            if options.json && !follow {
                printJSON(fresh)
            } else {
                for event in fresh {
                    if options.json {
                        emit(jsonLine(event))
                    } else {
                        emit("\(formatter.string(from: event.time))  \(event.route.padding(16)) \(event.source.padding(10)) \(event.text)")
                    }
                }
            }
            if let last = events.last?.time {
                let second = Date(timeIntervalSince1970: last.timeIntervalSince1970.rounded(.down))
                from = formatter.string(from: second)
                printed = Set(events.filter { $0.time >= second })
            }
            if follow { try await Task.sleep(for: .seconds(1)) }
        } while follow
    }
}

struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Re-read the route files (as SIGHUP does); a file with an error is refused and the running routes stay.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let summary: ReloadSummary
        let client = try options.client()
        do { summary = try await client.send("POST", "/v1/reload") } catch { throw fail(error) }
        if options.json { printJSON(summary); return }
        func list(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ", ") }
        print("reloaded: added \(list(summary.added)); changed \(list(summary.changed)); removed \(list(summary.removed)); "
            + "unchanged \(list(summary.unchanged))")
    }
}

struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout", abstract: "Run and follow releases.",
        subcommands: [Start.self, Status.self, Action.Promote.self, Action.Pause.self, Action.Resume.self, Action.Abort.self, Wait.self])

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a release of a route's green pool (or the one given).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Route name.") var route: String
        @Option(help: "Green version.") var greenVersion: String?
        @Option(help: "Green instance HOST:PORT (repeat for each).") var greenInstance: [String] = []
        @Option(help: "Plan, e.g. 6/0,2/4,0/6.") var steps: String?
        @Option(help: "Hold per step, e.g. 30s.") var hold: String?

        func run() async throws {
            var body = RolloutRequest()
            if !greenInstance.isEmpty { body.green = .init(version: greenVersion, instances: greenInstance) }
            body.steps = steps.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            body.hold = hold
            let view: RolloutView
            let client = try options.client()
            do {
                view = try await client.send("POST", "/v1/routes/\(route)/rollout", body: body)
            } catch {
                throw fail(AdminError(status: error.code, message: Self.inFlagTerms(error.message)))
            }
            if options.json { printJSON(view) } else { print(describe(view)) }
        }

        /// The API names body fields; this command's user gave flags.
        static func inFlagTerms(_ message: String) -> String {
            [("field green.instances", "--green-instance"), ("green.instances", "--green-instance HOST:PORT (repeat for each)"),
             ("field green.version", "--green-version"), ("field steps", "--steps"), ("field hold", "--hold")]
                .reduce(message) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a route's release; --watch redraws it until it ends.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Route name.") var route: String
        @Flag(help: "Follow the release until it ends: on a terminal, redraw the split, each pool's traffic and the verdict's numbers every half second; piped, print a line only when the release changes.") var watch = false

        func run() async throws {
            let client = try options.client()
            guard watch else {
                let view: RolloutView
                do { view = try await client.send("GET", "/v1/routes/\(route)/rollout") } catch { throw fail(error) }
                if options.json { printJSON(view) } else { print(describe(view)) }
                return
            }
            let terminal = isatty(STDOUT_FILENO) == 1 && !options.json
            var last: RolloutView?
            while true {
                var view: RolloutView
                do { view = try await client.send("GET", "/v1/routes/\(route)/rollout") } catch { throw fail(error) }
                if terminal {
                    let traffic: RouteView? = try? await client.send("GET", "/v1/routes/\(route)")
                    // Home, clear the screen, draw: the view stays in place, as watch(1) does.
                    emit("\u{1B}[H\u{1B}[2J" + StatusScreen.render(view, route: traffic), terminator: "")
                } else {
                    // The hold clock moves every poll; a change is anything else.
                    view.heldSeconds = nil
                    if view != last {
                        emit(options.json ? jsonLine(view) : describe(view))
                        last = view
                    }
                }
                if ["promoted", "rolled-back", "aborted"].contains(view.state) { break }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    enum Action {
        static func perform(_ action: String, route: String, options: ClientOptions) async throws {
            let view: RolloutView
            do { view = try await options.client().send("POST", "/v1/routes/\(route)/rollout/\(action)") } catch let error as AdminError { throw fail(error) }
            if options.json { printJSON(view) } else { print(describe(view)) }
        }

        struct Promote: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Promote green now.")
            @OptionGroup var options: ClientOptions
            @Argument(help: "Route name.") var route: String
            func run() async throws { try await Action.perform("promote", route: route, options: options) }
        }

        struct Pause: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Pause the release (the hold clock stops).")
            @OptionGroup var options: ClientOptions
            @Argument(help: "Route name.") var route: String
            func run() async throws { try await Action.perform("pause", route: route, options: options) }
        }

        struct Resume: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Resume a paused release or pass a gate.")
            @OptionGroup var options: ClientOptions
            @Argument(help: "Route name.") var route: String
            func run() async throws { try await Action.perform("resume", route: route, options: options) }
        }

        struct Abort: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Abort the release: all traffic back on blue.")
            @OptionGroup var options: ClientOptions
            @Argument(help: "Route name.") var route: String
            func run() async throws { try await Action.perform("abort", route: route, options: options) }
        }
    }

    struct Wait: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait until the release ends: exit 0 promoted, 1 rolled back or aborted, 2 error or timeout.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Route name.") var route: String
        @Option(help: "Give up after this many seconds.") var timeout = 3600.0

        func validate() throws {
            guard timeout > 0, timeout <= 31_536_000 else { throw ValidationError("--timeout must be above 0 and at most 31536000 seconds (a year)") }
        }

        func run() async throws {
            let json = options.json
            let result = await (try options.client()).waitForOutcome(route: route, timeout: .milliseconds(Int64(timeout * 1000))) { view in
                if !json { print(describe(view)) }
            }
            if json, let view = result.view { printJSON(view) }
            if let error = result.error { throw fail(error) }
            throw ExitCode(result.code)
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
