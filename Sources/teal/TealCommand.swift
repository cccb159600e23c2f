import ArgumentParser
import Foundation
import Logging
import TealConfig
import TealCore
import NIOPosix
import NIOSSL
import TealAdmin
import TealProxy
import TealServer
import TealStorePostgres

@main
struct TealCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teal",
        abstract: "Teal: a blue-green traffic router.",
        subcommands: [Serve.self, DemoCommand.self, DemoBackendCommand.self, RoutesCommand.self, ReplicasCommand.self, SplitCommand.self, RolloutCommand.self,
                      EventsCommand.self, ReloadCommand.self])
}

/// `HOST:PORT` as an argument.
struct HostPort: ExpressibleByArgument, Sendable {
    let host: String
    let port: Int

    init?(argument: String) {
        guard let address = InstanceAddress(parsing: argument) else { return nil }
        host = address.host
        port = address.port
    }

    static var defaultCompletionKind: CompletionKind { .default }

    /// Shown in `--help` as the address itself, not the type's fields.
    var defaultValueDescription: String { description }
}

extension HostPort: CustomStringConvertible {
    var description: String { InstanceAddress(host: host, port: port).description }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the router.")

    @Option(help: "A route file, or a directory of route files (*.yaml).")
    var routes = "routes"

    @Option(help: "Address the proxy listens on (HOST:PORT).")
    var listen = HostPort(argument: "127.0.0.1:8080")!

    @Option(help: "Address of an HTTPS listener (HOST:PORT); needs --cert and --key.")
    var tlsListen: HostPort?

    @Option(help: "PEM certificate chain for the HTTPS listener (repeat for more; each pairs with the --key at the same position; SNI picks by the certificate's DNS names, the first is the default).")
    var cert: [String] = []

    @Option(help: "PEM private key of the --cert at the same position.")
    var key: [String] = []

    @Option(help: "Address of the admin API (HOST:PORT).")
    var admin = HostPort(argument: "127.0.0.1:9901")!

    @Option(help: "File holding the admin API's bearer token (else TEAL_ADMIN_TOKEN, else no token: loopback only).")
    var adminTokenFile: String?

    @Option(help: "Most connections the admin API holds open; past it a new connection replaces the longest idle one.")
    var adminMaxConnections = 512

    @Option(help: "Alertmanager label whose value names the route a firing alert rolls back.")
    var alertRouteLabel = AdminServer.defaultRouteLabel

    @Option(help: "Path of the SQLite state file, or a PostgreSQL database: postgres://USER@HOST:PORT/DB (also postgresql://; ?sslmode=require|verify-ca|verify-full[&sslrootcert=FILE] for TLS).")
    var state = ".teal/state.sqlite"

    @Option(help: "File holding the PostgreSQL password of --state postgres://... (else the URL's password, if any).")
    var statePasswordFile: String?

    @Option(help: "Journal entries older than this are deleted from the state file: a duration in h, m or s (2160h is 90 days, 720h 30 days; at most 87600h).")
    var journalMaxAge = formatDuration(JournalRetention.defaultMaxAge)

    @Option(help: "Most journal entries the state file keeps (the latest; older ones are deleted).")
    var journalMaxEntries = JournalRetention.defaultMaxEntries

    @Option(help: "Event loop threads (default: one per core).")
    var threads: Int?

    @Option(help: "Most client connections open at once.")
    var maxConnections = 10_000

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Flag(help: "Accept cleartext HTTP/2 with prior knowledge (h2c) on --listen, beside HTTP/1.1.")
    var h2c = false

    @Flag(help: "Replace the teal serve using the same state file without dropping a request: listen beside it, steer new connections here, signal it to drain, continue its releases.")
    var takeover = false

    @Option(help: "On SIGTERM/SIGINT, how long in-flight requests may take to finish before their connections are closed (e.g. 30s).")
    var drainTimeout = "30s"

    func validate() throws {
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be from 1 to 1024") }
        if maxConnections < 1 { throw ValidationError("--max-connections must be at least 1") }
        if !(1...10_000).contains(adminMaxConnections) { throw ValidationError("--admin-max-connections must be from 1 to 10000") }
        if cert.count != key.count { throw ValidationError("give one --key for each --cert (\(cert.count) certificates, \(key.count) keys)") }
        if PostgresStateConfiguration.isDatabaseURL(state) {
            let configuration: PostgresStateConfiguration
            do {
                configuration = try PostgresStateConfiguration(url: state)
            } catch {
                throw ValidationError("--state: \(error)")
            }
            if takeover { throw ValidationError("\(PostgresServeError.takeover)") }
            if statePasswordFile != nil && configuration.password != nil {
                throw ValidationError("--state has a password in it and --state-password-file gives one too: give one of them")
            }
        } else if statePasswordFile != nil {
            throw ValidationError("--state-password-file is for --state postgres://...; --state \(state) is a SQLite file")
        }
        if tlsListen != nil && cert.isEmpty { throw ValidationError("--tls-listen needs --cert and --key") }
        if tlsListen == nil && !cert.isEmpty { throw ValidationError("--cert and --key need --tls-listen") }
        guard let age = parseDuration(journalMaxAge), age >= .seconds(1), age <= JournalRetention.longestMaxAge else {
            throw ValidationError("--journal-max-age \"\(journalMaxAge)\" is not a duration from 1s to \(formatDuration(JournalRetention.longestMaxAge)), e.g. 720h for 30 days")
        }
        if !(1...JournalRetention.mostEntries).contains(journalMaxEntries) {
            throw ValidationError("--journal-max-entries must be from 1 to \(JournalRetention.mostEntries)")
        }
        guard let drain = parseDuration(drainTimeout), drain >= .zero else {
            throw ValidationError("--drain-timeout \"\(drainTimeout)\" is not a duration, e.g. 30s")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var options = ServeOptions()
        options.routesPath = routes
        options.proxy.listenHost = listen.host
        options.proxy.listenPort = listen.port
        options.proxy.maxConnections = maxConnections
        options.proxy.http2.cleartext = h2c
        if let tlsListen {
            options.proxy.tlsListenHost = tlsListen.host
            options.proxy.tlsListenPort = tlsListen.port
            options.tlsCertificates = zip(cert, key).map { TLSCertificatePair(certificatePath: $0, keyPath: $1) }
        }
        if let drain = parseDuration(drainTimeout) {
            options.proxy.drainTimeout = .nanoseconds(Int64(drain.components.seconds) * 1_000_000_000 + drain.components.attoseconds / 1_000_000_000)
        }
        options.admin.host = admin.host
        options.admin.port = admin.port
        options.admin.alertRouteLabel = alertRouteLabel
        options.admin.maxConnections = adminMaxConnections
        if let adminTokenFile {
            guard let text = try? String(contentsOfFile: adminTokenFile, encoding: .utf8),
                  !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                FileHandle.standardError.write(Data("teal: cannot read an admin token from \(adminTokenFile)\n".utf8))
                throw ExitCode(2)
            }
            options.admin.token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        } else if let token = ProcessInfo.processInfo.environment["TEAL_ADMIN_TOKEN"], !token.isEmpty {
            options.admin.token = token
        }
        do {
            try options.admin.validate()
        } catch {
            FileHandle.standardError.write(Data("teal: \(error)\n".utf8))
            throw ExitCode(2)
        }
        options.statePath = state
        if let statePasswordFile {
            guard let text = try? String(contentsOfFile: statePasswordFile, encoding: .utf8) else {
                FileHandle.standardError.write(Data("teal: cannot read the state password from --state-password-file \(statePasswordFile)\n".utf8))
                throw ExitCode(2)
            }
            // The file's last line break is not part of the password.
            options.statePassword = text.hasSuffix("\r\n") ? String(text.dropLast(2)) : text.hasSuffix("\n") ? String(text.dropLast()) : text
        }
        options.journalRetention = JournalRetention(maxAge: parseDuration(journalMaxAge) ?? JournalRetention.defaultMaxAge,
                                                    maxEntries: journalMaxEntries)
        options.threads = threads
        options.takeover = takeover
        guard FileManager.default.fileExists(atPath: routes) else {
            let hint = routes == "routes" ? " (routes/ is the default of --routes): give --routes DIR|FILE, or create routes/ with a route file" : ""
            FileHandle.standardError.write(Data("teal: --routes \(routes): no such file or directory\(hint)\n".utf8))
            throw ExitCode(2)
        }
        let router: TealRouter
        do {
            router = try await TealRouter.open(options: options, logger: Logger(label: "teal"))
        } catch let error as StateStoreError where PostgresStateConfiguration.isDatabaseURL(state) {
            let advice = switch error {
            case .newerSchema: "teal: refusing to start: run the Teal version that wrote this database, or a newer one"
            default: "teal: refusing to start: check that the database server runs and can be reached, and the user, password and database name"
            }
            FileHandle.standardError.write(Data("teal: \(error)\n\(advice)\n".utf8))
            throw ExitCode(2)
        } catch let error as StateStoreError {
            let advice = "teal: refusing to start: the state file holds the run-time splits and releases; "
                + "restore it from a backup, or move it aside to start from the route files alone"
            FileHandle.standardError.write(Data("teal: \(error)\n\(advice)\n".utf8))
            throw ExitCode(2)
        } catch {
            FileHandle.standardError.write(Data("teal: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if router.controller.routes.isEmpty {
            Logger(label: "teal").warning("no route files (*.yaml) in --routes: every request is answered 404 until one is added and reloaded (teal reload or SIGHUP)",
                                          metadata: ["routes": "\(routes)"])
        }
        // A Teal on this state file was found above (the state lock); anything else on one of
        // our addresses is another program, which --takeover cannot replace.
        if !takeover {
            let addresses = [("--listen", listen), ("--admin", admin)] + (tlsListen.map { [("--tls-listen", $0)] } ?? [])
            for (flag, address) in addresses where address.port != 0 && ProxyServer.isListening(host: address.host, port: address.port) {
                FileHandle.standardError.write(Data("teal: \(flag) \(address) is in use by another program; stop it, or give \(flag) a free address\n".utf8))
                throw ExitCode(2)
            }
        }
        try await router.run(admin: options.admin)
    }
}

struct DemoBackendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-backend",
        abstract: "Run a small test application: every path answers 200 with body NAME (or 500 with the error rate).")

    @Option(help: "Address to listen on (HOST:PORT).")
    var listen: HostPort

    @Option(help: "Name the backend answers with.")
    var name: String

    @Option(help: "Fraction of requests (0...1) answered with 500.")
    var errorRate = 0.0

    @Option(help: "Delay before each answer, in milliseconds.")
    var latencyMs = 0

    @Option(help: "Serve HTTPS with this PEM certificate chain (with --key).")
    var cert: String?

    @Option(help: "PEM private key of --cert.")
    var key: String?

    func validate() throws {
        guard (0...1).contains(errorRate) else { throw ValidationError("--error-rate must be between 0 and 1") }
        guard (0...3_600_000).contains(latencyMs) else { throw ValidationError("--latency-ms must be from 0 to 3600000 (an hour)") }
        guard (cert == nil) == (key == nil) else { throw ValidationError("--cert and --key go together") }
    }

    func run() async throws {
        var options = DemoBackend.Options(name: name, host: listen.host, port: listen.port, errorRate: errorRate,
                                          latency: .milliseconds(latencyMs))
        if let cert, let key {
            do {
                let loaded = try LoadedCertificate.load(TLSCertificatePair(certificatePath: cert, keyPath: key))
                options.tls = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: loaded.chain.map { .certificate($0) },
                                                                                        privateKey: .privateKey(loaded.key)))
            } catch {
                FileHandle.standardError.write(Data("teal: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        let backend = DemoBackend(options: options, group: MultiThreadedEventLoopGroup.singleton)
        let address = try await backend.start()
        emit("demo-backend \(name) listening on \(address)")
        try await DemoBackendService(backend: backend).runUntilSignalled()
    }
}

struct DemoCommand: AsyncParsableCommand {
    /// `swift run teal demo` runs a debug build. When the README's production build sits beside
    /// it (`.build-production/release/teal`) and is newer, the demo runs that one instead: the
    /// same code, several times faster. TEAL_DEMO_DEBUG=1 keeps the debug build.
    static func switchToProductionBuild() {
        let current = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        guard ProcessInfo.processInfo.environment["TEAL_DEMO_DEBUG"] == nil,
              current.pathComponents.contains("debug"),
              let build = current.pathComponents.lastIndex(where: { $0.hasPrefix(".build") }) else { return }
        let root = NSString.path(withComponents: Array(current.pathComponents[..<build]))
        let production = URL(fileURLWithPath: root).appendingPathComponent(".build-production/release/teal").path
        let files = FileManager.default
        guard files.isExecutableFile(atPath: production),
              let built = (try? files.attributesOfItem(atPath: production))?[.modificationDate] as? Date,
              let running = (try? files.attributesOfItem(atPath: current.path))?[.modificationDate] as? Date,
              built >= running else { return }
        emit("teal demo: running the production build \(production) (TEAL_DEMO_DEBUG=1 keeps this debug build)")
        let arguments = [production] + CommandLine.arguments.dropFirst()
        let pointers = arguments.map { strdup($0) } + [nil]
        execv(production, pointers)
        // execv returned: it failed; go on with this build.
    }

    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Start 6 blue and 6 green demo instances, the router and a load generator, and release green 6/0 → 6/1 → 2/4 → 0/6 live; a failing green is rolled back.")

    @Option(help: "Fraction of green's answers (0...1) that are 500s.")
    var greenErrorRate = 0.0

    @Option(help: "Seconds each step holds.")
    var stepSeconds = 4.0

    @Option(help: "Port the demo router listens on (a free one is used if it is taken).")
    var port = 8080

    func validate() throws {
        guard (0...1).contains(greenErrorRate) else { throw ValidationError("--green-error-rate must be between 0 and 1") }
        guard stepSeconds > 0, stepSeconds <= 3600 else { throw ValidationError("--step-seconds must be above 0 and at most 3600") }
    }

    func run() async throws {
        Self.switchToProductionBuild()
        var options = TealDemo.Options()
        options.greenErrorRate = greenErrorRate
        options.stepSeconds = stepSeconds
        options.listenPort = port
        try await TealDemo(options: options).run()
    }
}
