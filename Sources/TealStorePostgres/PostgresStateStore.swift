import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization
import TealCore

/// `StateStore` in a PostgreSQL database, which several Teal replicas may share. Tables carry the
/// prefix `teal_`; records are rows with their structured parts (pools, release specs,
/// checkpoints) as JSON text, as in the SQLite store, so both hold the same bytes.
///
/// Every write is one transaction that has committed (with `synchronous_commit = on`) when the
/// call returns. Release saves are compare-and-set by revision in the database, so two replicas
/// never both advance one release.
///
/// The schema is versioned in `teal_schema_migrations`; `open` migrates it inside a transaction
/// holding an advisory lock, so replicas starting together migrate once, one after the other. A
/// database with migrations this build does not know was written by a newer Teal and is refused.
///
/// Queries go through postgres-nio's pooled `PostgresClient`, whose `run()` the store runs in a
/// task of its own until `close()`.
public final class PostgresStateStore: StateStore {
    public let configuration: PostgresStateConfiguration
    /// This process's identity in the database: its leases and replica reports carry it.
    public let replicaID = String(UUID().uuidString.lowercased().prefix(13))
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger

    private init(configuration: PostgresStateConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        // The pool logs each failed connection attempt at info; a store call that fails says why.
        var background = logger
        background.logLevel = max(logger.logLevel, .notice)
        let client = PostgresClient(configuration: configuration.clientConfiguration(), backgroundLogger: background)
        self.client = client
        runner = Task { await client.run() }
    }

    /// Connects to the database, migrates its schema and returns the store. Throws `unreadable`
    /// naming the database (host, port, name) and the cause when it cannot be reached or logged
    /// in to, and `newerSchema` when a newer Teal wrote it. Call `close()` when done.
    public static func open(_ configuration: PostgresStateConfiguration,
                            logger: Logger = Logger(label: "teal.state")) async throws(StateStoreError) -> PostgresStateStore {
        // Migrating on a connection of its own reports a failure to connect at once: the pool
        // would keep retrying in the background instead.
        do {
            let connection = try await PostgresConnection.connect(configuration: try configuration.connectionConfiguration(),
                                                                   id: 0, logger: logger)
            do {
                try await Self.migrate(connection, configuration: configuration, logger: logger)
            } catch {
                try? await connection.close()
                throw error
            }
            try? await connection.close()
        } catch {
            throw Self.storeError(error, configuration: configuration) { .unreadable(path: configuration.description, detail: $0) }
        }
        return PostgresStateStore(configuration: configuration, logger: logger)
    }

    /// Closes the pooled connections; calls after this fail.
    public func close() async {
        runner.cancel()
        await runner.value
    }

    // MARK: Schema

    /// Schema migrations, in order, by identifier. Never edit a shipped one: add the next.
    static let migrations: [(id: String, sql: [String])] = [
        ("v1", [
            """
            CREATE TABLE teal_routes (
                name text PRIMARY KEY,
                record text NOT NULL,
                updated_at double precision NOT NULL
            )
            """,
            """
            CREATE TABLE teal_releases (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                route text NOT NULL,
                record text NOT NULL,
                phase text NOT NULL,
                revision bigint NOT NULL,
                started_at double precision NOT NULL
            )
            """,
            "CREATE INDEX teal_releases_by_route ON teal_releases (route, id)",
            """
            CREATE TABLE teal_journal (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                time double precision NOT NULL,
                route text NOT NULL,
                source text NOT NULL,
                text text NOT NULL
            )
            """,
            "CREATE INDEX teal_journal_by_route ON teal_journal (route, time)",
            "CREATE INDEX teal_journal_by_time ON teal_journal (time)",
        ]),
        // Route saves get a revision from one sequence, and are announced (`changeChannel`).
        ("v2", [
            "CREATE SEQUENCE teal_revision",
            "ALTER TABLE teal_routes ADD COLUMN revision bigint NOT NULL DEFAULT 0",
        ]),
        // The replicas using the database, as each last reported itself.
        ("v3", [
            """
            CREATE TABLE teal_replicas (
                id text PRIMARY KEY,
                admin text NOT NULL,
                revision bigint NOT NULL,
                drives text NOT NULL,
                started_at double precision NOT NULL,
                seen_at double precision NOT NULL
            )
            """,
        ]),
        // Who runs each release (`ReleaseLeases`).
        ("v4", [
            """
            CREATE TABLE teal_leases (
                route text PRIMARY KEY,
                holder text NOT NULL,
                fence bigint NOT NULL,
                expires_at double precision NOT NULL
            )
            """,
        ]),
        // Each replica's traffic counts of routes with a release (`TrafficExchange`).
        ("v5", [
            """
            CREATE TABLE teal_traffic (
                replica text NOT NULL,
                route text NOT NULL,
                record text NOT NULL,
                updated_at double precision NOT NULL,
                PRIMARY KEY (replica, route)
            )
            """,
        ]),
    ]

    /// The NOTIFY channel of route saves; the payload is `<route> <revision>`.
    static let changeChannel = "teal_routes"

    /// The advisory lock key that serialises migrations of one database (any fixed number works;
    /// this one spells "teal" in ASCII).
    static let migrationLock: Int64 = 0x7465_616C

    /// Brings the schema up to date in one transaction under the migration lock: a replica that
    /// starts while another migrates waits, then finds the work done.
    static func migrate(_ connection: PostgresConnection, configuration: PostgresStateConfiguration, logger: Logger) async throws {
        try await connection.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
            try await connection.query("""
                CREATE TABLE IF NOT EXISTS teal_schema_migrations (
                    id text PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var applied = Set<String>()
            for try await id in try await connection.query("SELECT id FROM teal_schema_migrations", logger: logger).decode(String.self) {
                applied.insert(id)
            }
            let unknown = applied.subtracting(migrations.map(\.id))
            if !unknown.isEmpty { throw StateStoreError.newerSchema(path: configuration.description, unknown: unknown.sorted()) }
            for migration in migrations where !applied.contains(migration.id) {
                for statement in migration.sql {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO teal_schema_migrations (id) VALUES (\(migration.id))", logger: logger)
                logger.info("state database migrated", metadata: ["migration": "\(migration.id)"])
            }
        }
    }

    // MARK: Errors

    /// `error` as a `StateStoreError`: passed through when it is one, else made by `make` from a
    /// description of it.
    static func storeError(_ error: any Error, configuration: PostgresStateConfiguration,
                           _ make: (String) -> StateStoreError) -> StateStoreError {
        if let error = error as? StateStoreError { return error }
        // A failed transaction wraps what failed in it (BEGIN, the work, COMMIT).
        if let error = error as? PostgresTransactionError,
           let cause = error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError {
            return storeError(cause, configuration: configuration, make)
        }
        return make(describe(error, configuration: configuration))
    }

    /// What went wrong, in words: postgres-nio's errors print a fixed text (so that no query or
    /// secret leaks into logs), so the parts that say what happened are picked out here.
    static func describe(_ error: any Error, configuration: PostgresStateConfiguration) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        switch error.code {
        case .server:
            let message = error.serverInfo?[.message] ?? "the server refused"
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        case .connectionError:
            return "cannot connect: " + (error.underlying.map(describeConnectionFailure) ?? "no detail")
        case .sslUnsupported:
            return "the server does not accept TLS connections (the URL asks for sslmode=\(configuration.tls.rawValue))"
        case .failedToAddSSLHandler:
            return "TLS cannot be set up: " + (error.underlying.map { "\($0)" } ?? "no detail")
        case .authMechanismRequiresPassword:
            return "the server asks for a password: give one with --state-password-file or in the URL"
        case .unsupportedAuthMechanism:
            return "the server asks for an authentication method postgres-nio does not support"
        case .serverClosedConnection, .uncleanShutdown:
            return "the server closed the connection" + (error.underlying.map { ": \(describeConnectionFailure($0))" } ?? "")
        case .clientClosedConnection, .poolClosed:
            return "the store is closed"
        default:
            return "\(error.code)" + (error.underlying.map { ": \(describeConnectionFailure($0))" } ?? "")
        }
    }

    /// A connection failure without NIO's wrapping: "connection refused", a TLS verification
    /// failure, a timeout.
    static func describeConnectionFailure(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return describeConnectionFailure(first.error) }
            if let dns = error.dnsAError ?? error.dnsAAAAError { return "host name not resolved (\(dns))" }
            return "no address to connect to"
        }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) + " (errno \(error.errnoCode))" }
        if let error = error as? ChannelError, case .connectTimeout(let amount) = error {
            return "timed out after \(amount.nanoseconds / 1_000_000_000) s"
        }
        if let error = error as? NIOSSLError { return "TLS: \(error)" }
        return "\(error)"
    }

    // MARK: Access

    private func write<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T) async throws(StateStoreError) -> T {
        let (client, logger, configuration) = (self.client, self.logger, self.configuration)
        return try await bounded(what: "saved") { () async throws(StateStoreError) -> T in
            do {
                return try await client.withTransaction(logger: logger) { connection in try await body(connection, logger) }
            } catch {
                throw Self.storeError(error, configuration: configuration) { .writeFailed($0) }
            }
        }
    }

    private func read<T: Sendable>(_ body: @escaping @Sendable (PostgresClient, Logger) async throws -> T) async throws(StateStoreError) -> T {
        let (client, logger, configuration) = (self.client, self.logger, self.configuration)
        return try await bounded(what: "read") { () async throws(StateStoreError) -> T in
            do {
                return try await body(client, logger)
            } catch {
                throw Self.storeError(error, configuration: configuration) { .unreadable(path: configuration.description, detail: $0) }
            }
        }
    }

    /// `operation`, or an error once `configuration.operationTimeout` has passed without an
    /// answer, or at once when the calling task is cancelled: the pool waits for a connection as
    /// long as the database is away, and a caller (an admin request, a release step, a shutdown)
    /// must not. A write that timed out may still commit later.
    private func bounded<T: Sendable>(what: String, _ operation: @escaping @Sendable () async throws(StateStoreError) -> T)
        async throws(StateStoreError) -> T {
        let timeout = configuration.operationTimeout, database = configuration.description
        let failure: @Sendable (String) -> StateStoreError = { detail in
            what == "read" ? .unreadable(path: database, detail: detail) : .writeFailed(detail)
        }
        let gate = OperationGate<T>()
        let result: Result<T, StateStoreError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                guard gate.install(continuation) else {
                    continuation.resume(returning: .failure(failure("cancelled")))
                    return
                }
                let work = Task {
                    do throws(StateStoreError) {
                        gate.finish(.success(try await operation()))
                    } catch {
                        gate.finish(.failure(error))
                    }
                }
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if gate.finish(.failure(failure("no answer from \(database) within \(timeout)"))) { work.cancel() }
                }
                Task {
                    await work.value
                    timer.cancel()
                }
            }
        } onCancel: {
            gate.finish(.failure(failure("cancelled")))
        }
        return try result.get()
    }

    // MARK: StateStore

    public func load() async throws(StateStoreError) -> StoredState {
        let database = configuration.description
        return try await read { client, logger in
            var state = StoredState()
            let routes = try await client.query("SELECT name, record FROM teal_routes", logger: logger)
            for try await (name, text) in routes.decode((String, String).self) {
                state.routes[name] = try StoredRecordText.decode(RouteRecord.self, text, what: "route \(name)", store: database)
            }
            let releases = try await client.query("""
                SELECT DISTINCT ON (route) id, route, record, revision FROM teal_releases ORDER BY route, id DESC
                """, logger: logger)
            for try await (id, route, text, revision) in releases.decode((Int64, String, String, Int64).self) {
                var record = try StoredRecordText.decode(ReleaseRecord.self, text, what: "release of \(route)", store: database)
                record.id = id
                record.revision = Int(revision)
                state.releases[route] = record
            }
            return state
        }
    }

    @discardableResult
    public func saveRoute(_ record: RouteRecord) async throws(StateStoreError) -> Int64 {
        try await saveRoute(record, asReleaseDriver: false)
    }

    @discardableResult
    public func saveRoute(_ record: RouteRecord, asReleaseDriver: Bool) async throws(StateStoreError) -> Int64 {
        let text = try StoredRecordText.encode(record)
        let holder = replicaID
        return try await write { connection, logger in
            // A release's own change is refused while another replica holds its lease (fencing).
            if asReleaseDriver, try await Self.leasedElsewhere(record.route, holder: holder, on: connection, logger: logger) {
                throw StateStoreError.conflict(route: record.route, stored: 0, attempted: 0)
            }
            let saved = try await connection.query("""
                INSERT INTO teal_routes (name, record, updated_at, revision)
                VALUES (\(record.route), \(text), \(record.updatedAt.timeIntervalSince1970), nextval('teal_revision'))
                ON CONFLICT (name) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at, revision = excluded.revision
                RETURNING revision
                """, logger: logger)
            var revision: Int64 = 0
            for try await value in saved.decode(Int64.self) { revision = value }
            try await Self.announce(record.route, revision, on: connection, logger: logger)
            return revision
        }
    }

    public func deleteRoute(_ name: String) async throws(StateStoreError) {
        try await write { connection, logger in
            _ = try await connection.query("DELETE FROM teal_routes WHERE name = \(name)", logger: logger)
            var revision: Int64 = 0
            for try await value in try await connection.query("SELECT nextval('teal_revision')", logger: logger).decode(Int64.self) {
                revision = value
            }
            try await Self.announce(name, revision, on: connection, logger: logger)
        }
    }

    /// Whether a replica other than `holder` holds the unexpired lease on `route`'s release.
    private static func leasedElsewhere(_ route: String, holder: String, on connection: PostgresConnection, logger: Logger) async throws -> Bool {
        let leases = try await connection.query("""
            SELECT holder FROM teal_leases WHERE route = \(route) AND holder <> \(holder)
            AND expires_at > extract(epoch FROM clock_timestamp())::double precision
            """, logger: logger)
        var leased = false
        for try await _ in leases.decode(String.self) { leased = true }
        return leased
    }

    /// Tells the replicas that follow changes that `route` was saved (or deleted) at `revision`;
    /// PostgreSQL delivers it when the transaction commits, in commit order.
    private static func announce(_ route: String, _ revision: Int64, on connection: PostgresConnection, logger: Logger) async throws {
        let rows = try await connection.query("SELECT 1 FROM pg_notify(\(changeChannel), \("\(route) \(revision)"))", logger: logger)
        for try await _ in rows.decode(Int32.self) {}
    }

    public func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord {
        let text = try StoredRecordText.encode(record)
        let phase = record.checkpoint.phase.rawValue
        let revision = Int64(record.revision)
        let holder = replicaID
        return try await write { connection, logger in
            var saved = record
            // Refused while another replica holds the release's lease (fencing).
            let leased = try await Self.leasedElsewhere(record.spec.route, holder: holder, on: connection, logger: logger)
            if let id = record.id {
                let updated = try await connection.query("""
                    UPDATE teal_releases SET record = \(text), phase = \(phase), revision = \(revision)
                    WHERE id = \(id) AND revision = \(revision - 1) AND NOT \(leased) RETURNING id
                    """, logger: logger)
                var count = 0
                for try await _ in updated.decode(Int64.self) { count += 1 }
                if count == 0 {
                    // A statement of its own sees what the other writer committed.
                    var stored: Int64 = 0
                    let rows = try await connection.query("SELECT revision FROM teal_releases WHERE id = \(id)", logger: logger)
                    for try await value in rows.decode(Int64.self) { stored = value }
                    throw StateStoreError.conflict(route: record.spec.route, stored: Int(stored), attempted: record.revision)
                }
            } else {
                if leased { throw StateStoreError.conflict(route: record.spec.route, stored: 0, attempted: record.revision) }
                let inserted = try await connection.query("""
                    INSERT INTO teal_releases (route, record, phase, revision, started_at)
                    VALUES (\(record.spec.route), \(text), \(phase), \(revision), \(record.startedAt.timeIntervalSince1970)) RETURNING id
                    """, logger: logger)
                for try await id in inserted.decode(Int64.self) { saved.id = id }
            }
            return saved
        }
    }

    public func appendJournal(_ entry: JournalEntry) async throws(StateStoreError) {
        try await write { connection, logger in
            _ = try await connection.query("""
                INSERT INTO teal_journal (time, route, source, text)
                VALUES (\(entry.time.timeIntervalSince1970), \(entry.route), \(entry.source), \(entry.text))
                """, logger: logger)
        }
    }

    public func journal(route: String?, since: Date?, limit: Int) async throws(StateStoreError) -> [JournalEntry] {
        var bindings = PostgresBindings()
        var conditions: [String] = []
        if let route {
            bindings.append(route)
            conditions.append("route = $\(bindings.count)")
        }
        if let since {
            bindings.append(since.timeIntervalSince1970)
            conditions.append("time >= $\(bindings.count)")
        }
        bindings.append(Int64(max(0, limit)))
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let query = PostgresQuery(unsafeSQL: """
            SELECT time, route, source, text FROM
                (SELECT id, time, route, source, text FROM teal_journal \(filter) ORDER BY id DESC LIMIT $\(bindings.count)) AS latest
            ORDER BY id
            """, binds: bindings)
        return try await read { client, logger in
            var entries: [JournalEntry] = []
            for try await (time, route, source, text) in try await client.query(query, logger: logger).decode((Double, String, String, String).self) {
                entries.append(JournalEntry(time: Date(timeIntervalSince1970: time), route: route, text: text, source: source))
            }
            return entries
        }
    }

    public func pruneJournal(before cutoff: Date, keepingLatest: Int) async throws(StateStoreError) -> Int {
        let keep = Int64(max(0, keepingLatest))
        return try await write { connection, logger in
            // By age: a range of the time index.
            let old = try await connection.query("""
                WITH gone AS (DELETE FROM teal_journal WHERE time < \(cutoff.timeIntervalSince1970) RETURNING 1) SELECT count(*) FROM gone
                """, logger: logger)
            var removed = 0
            for try await count in old.decode(Int64.self) { removed += Int(count) }
            // By count: everything up to the newest entry past the ones kept (a walk of at most
            // `keep` rows of the primary key).
            let surplus = try await connection.query("""
                WITH gone AS (
                    DELETE FROM teal_journal WHERE id <= (SELECT id FROM teal_journal ORDER BY id DESC LIMIT 1 OFFSET \(keep)) RETURNING 1
                ) SELECT count(*) FROM gone
                """, logger: logger)
            for try await count in surplus.decode(Int64.self) { removed += Int(count) }
            return removed
        }
    }
}

extension PostgresStateStore: StateChangeFeed {
    public func storedRoutes() async throws(StateStoreError) -> [StoredRoute] {
        let database = configuration.description
        return try await read { client, logger in
            var routes: [StoredRoute] = []
            let rows = try await client.query("SELECT name, record, revision FROM teal_routes", logger: logger)
            for try await (name, text, revision) in rows.decode((String, String, Int64).self) {
                routes.append(StoredRoute(record: try StoredRecordText.decode(RouteRecord.self, text, what: "route \(name)", store: database),
                                          revision: revision))
            }
            return routes
        }
    }

    public func storedRoute(_ name: String) async throws(StateStoreError) -> StoredRoute? {
        let database = configuration.description
        return try await read { client, logger in
            let rows = try await client.query("SELECT record, revision FROM teal_routes WHERE name = \(name)", logger: logger)
            for try await (text, revision) in rows.decode((String, Int64).self) {
                return StoredRoute(record: try StoredRecordText.decode(RouteRecord.self, text, what: "route \(name)", store: database),
                                   revision: revision)
            }
            return nil
        }
    }

    public func followChanges(listening: @escaping @Sendable () async -> Void,
                              changed: @escaping @Sendable (String, Int64) async -> Void) async throws {
        let connection = try await PostgresConnection.connect(configuration: try configuration.connectionConfiguration(), id: 1, logger: logger)
        do {
            try await connection.listen(on: Self.changeChannel) { notifications in
                await listening()
                for try await notification in notifications {
                    guard let space = notification.payload.lastIndex(of: " "),
                          let revision = Int64(notification.payload[notification.payload.index(after: space)...]) else { continue }
                    await changed(String(notification.payload[..<space]), revision)
                }
            }
        } catch {
            try? await connection.close()
            if Task.isCancelled { return }
            throw Self.storeError(error, configuration: configuration) { .unreadable(path: configuration.description, detail: $0) }
        }
        try? await connection.close()
        if !Task.isCancelled {
            throw StateStoreError.unreadable(path: configuration.description, detail: "the change feed connection was closed")
        }
    }
}

extension PostgresStateStore: ReplicaRegistry {
    public func report(_ replica: ReplicaRecord) async throws(StateStoreError) {
        let drives = try StoredRecordText.encode(replica.drives)
        try await write { connection, logger in
            _ = try await connection.query("""
                INSERT INTO teal_replicas (id, admin, revision, drives, started_at, seen_at)
                VALUES (\(replica.id), \(replica.admin), \(replica.revision), \(drives), \(replica.startedAt.timeIntervalSince1970),
                        extract(epoch FROM clock_timestamp())::double precision)
                ON CONFLICT (id) DO UPDATE SET admin = excluded.admin, revision = excluded.revision, drives = excluded.drives,
                                               seen_at = excluded.seen_at
                """, logger: logger)
        }
    }

    public func replicas(seenWithin window: Duration) async throws(StateStoreError) -> (replicas: [ReplicaRecord], latestRevision: Int64) {
        let seconds = Double(window.components.seconds) + Double(window.components.attoseconds) / 1e18
        let database = configuration.description
        return try await read { client, logger in
            var replicas: [ReplicaRecord] = []
            let rows = try await client.query("""
                SELECT id, admin, revision, drives, started_at, seen_at FROM teal_replicas
                WHERE seen_at > extract(epoch FROM clock_timestamp())::double precision - \(seconds) ORDER BY started_at, id
                """, logger: logger)
            for try await (id, admin, revision, drives, started, seen) in rows.decode((String, String, Int64, String, Double, Double).self) {
                replicas.append(ReplicaRecord(id: id, admin: admin, revision: revision,
                                              drives: try StoredRecordText.decode([String].self, drives, what: "replica \(id)", store: database),
                                              startedAt: Date(timeIntervalSince1970: started), seenAt: Date(timeIntervalSince1970: seen)))
            }
            var latest: Int64 = 0
            for try await value in try await client.query("SELECT coalesce(max(revision), 0)::bigint FROM teal_routes", logger: logger).decode(Int64.self) {
                latest = value
            }
            return (replicas, latest)
        }
    }

    public func forget(replica id: String) async throws(StateStoreError) {
        try await write { connection, logger in
            _ = try await connection.query("DELETE FROM teal_replicas WHERE id = \(id)", logger: logger)
        }
    }
}

/// The one outcome of a bounded store call: the first of its result, its timeout and its
/// caller's cancellation.
private final class OperationGate<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Result<T, StateStoreError>, Never>?
        var done = false
    }

    private let state = Mutex(State())

    /// Keeps the continuation to resume; false when the outcome came first (a cancellation).
    func install(_ continuation: CheckedContinuation<Result<T, StateStoreError>, Never>) -> Bool {
        state.withLock { state in
            guard !state.done else { return false }
            state.continuation = continuation
            return true
        }
    }

    /// Settles the outcome; false when it was settled already.
    @discardableResult
    func finish(_ result: Result<T, StateStoreError>) -> Bool {
        let (first, continuation) = state.withLock { state -> (Bool, CheckedContinuation<Result<T, StateStoreError>, Never>?) in
            guard !state.done else { return (false, nil) }
            state.done = true
            defer { state.continuation = nil }
            return (true, state.continuation)
        }
        continuation?.resume(returning: result)
        return first
    }
}

extension PostgresStateStore: ReleaseLeases {
    public func acquireLease(route: String, ttl: Duration) async throws(StateStoreError) -> Int64? {
        let seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        let holder = replicaID
        return try await write { connection, logger in
            let rows = try await connection.query("""
                INSERT INTO teal_leases (route, holder, fence, expires_at)
                VALUES (\(route), \(holder), 1, extract(epoch FROM clock_timestamp())::double precision + \(seconds))
                ON CONFLICT (route) DO UPDATE SET
                    fence = CASE WHEN teal_leases.holder = excluded.holder THEN teal_leases.fence ELSE teal_leases.fence + 1 END,
                    holder = excluded.holder, expires_at = excluded.expires_at
                WHERE teal_leases.holder = excluded.holder
                   OR teal_leases.expires_at <= extract(epoch FROM clock_timestamp())::double precision
                RETURNING fence
                """, logger: logger)
            var fence: Int64?
            for try await value in rows.decode(Int64.self) { fence = value }
            return fence
        }
    }

    public func releaseLease(route: String) async throws(StateStoreError) {
        let holder = replicaID
        try await write { connection, logger in
            // Expired, not deleted: the next holder's fence is still higher.
            _ = try await connection.query("UPDATE teal_leases SET expires_at = 0 WHERE route = \(route) AND holder = \(holder)", logger: logger)
        }
    }

    public func unledReleases() async throws(StateStoreError) -> [String] {
        try await read { client, logger in
            let rows = try await client.query("""
                SELECT latest.route FROM
                    (SELECT DISTINCT ON (route) route, phase FROM teal_releases ORDER BY route, id DESC) AS latest
                LEFT JOIN teal_leases AS lease
                    ON lease.route = latest.route AND lease.expires_at > extract(epoch FROM clock_timestamp())::double precision
                WHERE latest.phase NOT IN ('promoted', 'rolled-back', 'aborted') AND lease.route IS NULL
                ORDER BY latest.route
                """, logger: logger)
            var routes: [String] = []
            for try await route in rows.decode(String.self) { routes.append(route) }
            return routes
        }
    }
}

extension PostgresStateStore: TrafficExchange {
    public func publishTraffic(_ reports: [TrafficReport]) async throws(StateStoreError) {
        guard !reports.isEmpty else { return }
        let texts = try reports.map { report throws(StateStoreError) in (report.route, try StoredRecordText.encode(report)) }
        let replica = replicaID
        try await write { connection, logger in
            for (route, text) in texts {
                _ = try await connection.query("""
                    INSERT INTO teal_traffic (replica, route, record, updated_at)
                    VALUES (\(replica), \(route), \(text), extract(epoch FROM clock_timestamp())::double precision)
                    ON CONFLICT (replica, route) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at
                    """, logger: logger)
            }
        }
    }

    public func othersTraffic(routes: [String], within window: Duration) async throws(StateStoreError) -> [TrafficReport] {
        guard !routes.isEmpty else { return [] }
        let seconds = Double(window.components.seconds) + Double(window.components.attoseconds) / 1e18
        let replica = replicaID, database = configuration.description
        return try await read { client, logger in
            var sums: [String: TrafficReport] = [:]
            let rows = try await client.query("""
                SELECT route, record FROM teal_traffic
                WHERE replica <> \(replica) AND route = ANY(\(routes))
                  AND updated_at > extract(epoch FROM clock_timestamp())::double precision - \(seconds)
                """, logger: logger)
            for try await (route, text) in rows.decode((String, String).self) {
                let report = try StoredRecordText.decode(TrafficReport.self, text, what: "traffic of \(route)", store: database)
                guard report.blue.latencyBuckets.count == LatencyBuckets.count, report.green.latencyBuckets.count == LatencyBuckets.count
                else { continue }
                var sum = sums[route] ?? TrafficReport(route: route, blue: PoolStatistics(), green: PoolStatistics())
                sum.blue = sum.blue.adding(report.blue)
                sum.green = sum.green.adding(report.green)
                sums[route] = sum
            }
            return sums.values.sorted { $0.route < $1.route }
        }
    }
}
