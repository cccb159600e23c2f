import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL 15 server for one test: `initdb` into a fresh temporary folder, started
/// with `pg_ctl` listening on 127.0.0.1 on a free port (its Unix socket in that folder), stopped
/// (`pg_ctl stop -m fast`) and removed by `stop()`. Run as the `postgres` user (`runuser`) when
/// the tests run as root, since the server refuses to run as root. It never touches the cluster
/// that Debian's package starts.
///
/// The superuser is `teal`; with a `password` it must give it over TCP (scram-sha-256), else TCP
/// connections are trusted. With `tls` (a certificate and key in PEM), TCP connections must use
/// TLS (`hostssl` only): a client without it is refused.
public final class PostgresCluster: Sendable {
    public static let binaries = "/usr/lib/postgresql/15/bin"
    public let directory: URL
    public let port: Int
    public let user = "teal"
    public let password: String?
    var dataDirectory: String { directory.appendingPathComponent("data").path }

    /// Whether the PostgreSQL 15 server programs are installed (Debian's `postgresql`).
    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: binaries + "/pg_ctl") }

    private init(directory: URL, port: Int, password: String?) {
        self.directory = directory
        self.port = port
        self.password = password
    }

    /// Runs `body` with a new cluster, and stops and removes it afterwards, whether `body` threw
    /// or not.
    public static func with<T>(password: String? = nil, tls: (certificate: String, key: String)? = nil,
                               _ body: (PostgresCluster) async throws -> T) async throws -> T {
        let cluster = try await start(password: password, tls: tls)
        do {
            let result = try await body(cluster)
            await cluster.stop()
            return result
        } catch {
            await cluster.stop()
            throw error
        }
    }

    /// Makes and starts a cluster. A port taken between choosing and binding it is retried with
    /// another (at most three tries).
    public static func start(password: String? = nil, tls: (certificate: String, key: String)? = nil) async throws -> PostgresCluster {
        guard isInstalled else { throw TealProcess.Failure("PostgreSQL 15 is not installed (apt-get install postgresql; scripts/test.sh does)") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-pg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var initdb = [binaries + "/initdb", "-D", directory.appendingPathComponent("data").path, "-U", "teal", "-E", "UTF8",
                      "--locale=C", "--no-sync", "--auth-local=trust"]
        if let password {
            let file = directory.appendingPathComponent("password")
            try Data(password.utf8).write(to: file)
            initdb += ["--auth-host=scram-sha-256", "--pwfile=" + file.path]
        } else {
            initdb += ["--auth-host=trust"]
        }
        if getuid() == 0 { try await run(["/bin/chown", "-R", "postgres:postgres", directory.path]) }
        var cluster: PostgresCluster?
        do {
            try await run(asServer(initdb))
            if let tls {
                // The server reads server.crt and server.key from its data folder (the key must be
                // its own and private), and `ssl = on` turns TLS on at every start.
                let data = directory.appendingPathComponent("data")
                for (source, name) in [(tls.certificate, "server.crt"), (tls.key, "server.key")] {
                    let target = data.appendingPathComponent(name).path
                    try await run(["/bin/cp", source, target])
                    try await run(["/bin/chmod", "600", target])
                    if getuid() == 0 { try await run(["/bin/chown", "postgres:postgres", target]) }
                }
                let method = password == nil ? "trust" : "scram-sha-256"
                try await run(asServer(["/bin/sh", "-c", "printf 'local all all trust\\nhostssl all all 127.0.0.1/32 \(method)\\n' > \(data.path)/pg_hba.conf "
                                        + "&& echo 'ssl = on' >> \(data.path)/postgresql.conf"]))
            }
            var failures: [String] = []
            for _ in 0..<3 {
                let candidate = PostgresCluster(directory: directory, port: try freePort(), password: password)
                do {
                    try await candidate.pgctl(["-l", directory.appendingPathComponent("server.log").path, "-w", "-t", "30", "-o",
                                               "-c listen_addresses=127.0.0.1 -p \(candidate.port) -k \(directory.path) -c fsync=off", "start"])
                    cluster = candidate
                    break
                } catch {
                    failures.append("\(error)")
                }
            }
            guard let cluster else { throw TealProcess.Failure("PostgreSQL did not start: \(failures.joined(separator: "; "))") }
            return cluster
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    /// Stops the server (fast: open sessions are ended) and removes its folder.
    public func stop() async {
        try? await pgctl(["-m", "fast", "-w", "-t", "30", "stop"])
        try? FileManager.default.removeItem(at: directory)
    }

    /// Stops the server (fast) and keeps its data, for `resume()`: the database goes away under
    /// the replicas that use it.
    public func pause() async throws {
        try await pgctl(["-m", "fast", "-w", "-t", "30", "stop"])
    }

    /// Starts the server again on the same port and data.
    public func resume() async throws {
        try await pgctl(["-l", directory.appendingPathComponent("server.log").path, "-w", "-t", "30", "-o",
                         "-c listen_addresses=127.0.0.1 -p \(port) -k \(directory.path) -c fsync=off", "start"])
    }

    /// Creates database `name` (owned by `teal`).
    public func createDatabase(_ name: String) async throws {
        _ = try await psql("CREATE DATABASE \"\(name)\"", database: "postgres")
    }

    /// Runs `sql` with psql over TCP as `teal`; its output (unaligned, tuples only).
    @discardableResult
    public func psql(_ sql: String, database: String) async throws -> String {
        try await Self.run([Self.binaries + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", "\(port)", "-U", user, "-d", database, "-c", sql],
                           environment: password.map { ["PGPASSWORD": $0] } ?? [:])
    }

    /// The `--state` URL of `database` (with the password in it when `withPassword`).
    public func url(database: String, withPassword: Bool = false) -> String {
        let secret = withPassword ? password.map { ":\($0)" } ?? "" : ""
        return "postgres://\(user)\(secret)@127.0.0.1:\(port)/\(database)"
    }

    private func pgctl(_ arguments: [String]) async throws {
        try await Self.run(Self.asServer([Self.binaries + "/pg_ctl", "-D", dataDirectory] + arguments))
    }

    /// `arguments` run as `postgres` when this process is root, with every inherited file
    /// descriptor past standard error closed first: the server outlives the command, and an
    /// inherited pipe end (this command's, or one of a test running beside it) would keep that
    /// pipe open, so whoever reads it to its end would wait for as long as the server runs.
    private static func asServer(_ arguments: [String]) -> [String] {
        let closeInherited = #"for f in /proc/$$/fd/*; do fd=${f##*/}; if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi; done; exec "$@""#
        return ["/bin/bash", "-c", closeInherited, "bash"] + (getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--"] : []) + arguments
    }

    @discardableResult
    private static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> String {
        let result = try await TealProcess.runCommand(arguments, environment: environment, timeout: .seconds(90))
        guard result.status == 0 else {
            throw TealProcess.Failure("\(URL(fileURLWithPath: arguments.first(where: { $0.hasPrefix("/usr/lib") }) ?? arguments[0]).lastPathComponent) failed (\(result.status)): \(result.output)")
        }
        return result.output
    }
}
