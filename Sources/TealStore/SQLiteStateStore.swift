import Foundation
import GRDB
import TealCore

/// `StateStore` in one SQLite file (GRDB): WAL journal with `synchronous = FULL`, so a committed
/// transaction is on disk before the call returns. Records are stored as rows with their
/// structured parts (pools, release specs, checkpoints) as JSON text.
///
/// The schema is versioned by GRDB's migrator (table `grdb_migrations`); a file with migrations
/// this build does not know was written by a newer Teal and is refused, never rewritten.
public final class SQLiteStateStore: StateStore {
    public let path: String
    private let queue: DatabaseQueue

    /// Opens (creating it and its directory when missing) and migrates the state file. Throws
    /// `unreadable` for a file that is not a Teal state database, `newerSchema` for one a newer
    /// Teal wrote.
    public init(path: String) throws(StateStoreError) {
        self.path = path
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .unreadable(path: path, detail: "cannot create directory \(directory): \(error.localizedDescription)")
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
            try queue.writeWithoutTransaction { db in
                // Reading the schema fails here for a file that is not a database.
                _ = try db.tableExists("grdb_migrations")
                try db.execute(sql: "PRAGMA journal_mode = WAL")
            }
            let migrator = Self.migrator
            let known = Set(migrator.migrations)
            let applied = try queue.read { db in try migrator.appliedIdentifiers(db) }
            let unknown = applied.subtracting(known)
            if !unknown.isEmpty { throw StateStoreError.newerSchema(path: path, unknown: unknown.sorted()) }
            try migrator.migrate(queue)
            try queue.read { db in
                let result = try String.fetchOne(db, sql: "PRAGMA quick_check")
                guard result == "ok" else { throw StateStoreError.unreadable(path: path, detail: "integrity check: \(result ?? "no answer")") }
            }
        } catch {
            throw Self.storeError(error) { .unreadable(path: path, detail: $0) }
        }
    }

    /// `error` as a `StateStoreError`: passed through when it is one, else made by `make` from a
    /// description of it.
    private static func storeError(_ error: any Error, _ make: (String) -> StateStoreError) -> StateStoreError {
        if let error = error as? StateStoreError { return error }
        if let error = error as? DatabaseError { return make(describe(error)) }
        return make("\(error)")
    }

    /// Schema migrations, in order. Never edit a shipped one: add the next.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE routes (
                    name TEXT PRIMARY KEY NOT NULL,
                    record TEXT NOT NULL,
                    updated_at REAL NOT NULL
                );
                CREATE TABLE releases (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    route TEXT NOT NULL,
                    record TEXT NOT NULL,
                    phase TEXT NOT NULL,
                    revision INTEGER NOT NULL,
                    started_at REAL NOT NULL
                );
                CREATE INDEX releases_by_route ON releases (route, id);
                CREATE TABLE journal (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    time REAL NOT NULL,
                    route TEXT NOT NULL,
                    source TEXT NOT NULL,
                    text TEXT NOT NULL
                );
                CREATE INDEX journal_by_route ON journal (route, time);
                CREATE INDEX journal_by_time ON journal (time);
                """)
        }
        return migrator
    }

    private static func describe(_ error: DatabaseError) -> String {
        switch error.resultCode {
        case .SQLITE_NOTADB: "not a SQLite database (\(error.message ?? "file is not a database"))"
        case .SQLITE_CORRUPT: "the database is corrupt (\(error.message ?? "malformed"))"
        case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_READONLY: "cannot open it for writing (\(error.message ?? "permission denied"))"
        case .SQLITE_FULL: "the disk is full"
        default: error.message ?? "\(error)"
        }
    }

    private func write<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws(StateStoreError) -> T {
        do {
            return try await queue.write(body)
        } catch {
            throw Self.storeError(error) { .writeFailed($0) }
        }
    }

    private func read<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws(StateStoreError) -> T {
        do {
            return try await queue.read(body)
        } catch {
            let path = self.path
            throw Self.storeError(error) { .unreadable(path: path, detail: $0) }
        }
    }


    public func load() async throws(StateStoreError) -> StoredState {
        let path = self.path
        do {
            return try await read { db in
                var state = StoredState()
                for row in try Row.fetchAll(db, sql: "SELECT name, record FROM routes") {
                    let name: String = row["name"]
                    state.routes[name] = try StoredRecordText.decode(RouteRecord.self, row["record"], what: "route \(name)", store: path)
                }
                let sql = "SELECT id, route, record, revision FROM releases WHERE id IN (SELECT MAX(id) FROM releases GROUP BY route)"
                for row in try Row.fetchAll(db, sql: sql) {
                    let route: String = row["route"]
                    var record = try StoredRecordText.decode(ReleaseRecord.self, row["record"], what: "release of \(route)", store: path)
                    record.id = row["id"]
                    record.revision = row["revision"]
                    state.releases[route] = record
                }
                return state
            }
        } catch .unreadable(_, let detail) {
            throw .unreadable(path: path, detail: detail)
        }
    }

    /// One process holds the file, so no revision is kept: returns 0.
    @discardableResult
    public func saveRoute(_ record: RouteRecord) async throws(StateStoreError) -> Int64 {
        let text = try StoredRecordText.encode(record)
        try await write { db in
            try db.execute(sql: """
                INSERT INTO routes (name, record, updated_at) VALUES (?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at
                """, arguments: [record.route, text, record.updatedAt.timeIntervalSince1970])
        }
        return 0
    }

    public func deleteRoute(_ name: String) async throws(StateStoreError) {
        try await write { db in try db.execute(sql: "DELETE FROM routes WHERE name = ?", arguments: [name]) }
    }

    public func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord {
        let text = try StoredRecordText.encode(record)
        return try await write { db in
            var saved = record
            if let id = record.id {
                try db.execute(sql: "UPDATE releases SET record = ?, phase = ?, revision = ? WHERE id = ? AND revision = ?",
                               arguments: [text, record.checkpoint.phase.rawValue, record.revision, id, record.revision - 1])
                if db.changesCount == 0 {
                    let stored = try Int.fetchOne(db, sql: "SELECT revision FROM releases WHERE id = ?", arguments: [id]) ?? 0
                    throw StateStoreError.conflict(route: record.spec.route, stored: stored, attempted: record.revision)
                }
            } else {
                try db.execute(sql: "INSERT INTO releases (route, record, phase, revision, started_at) VALUES (?, ?, ?, ?, ?)",
                               arguments: [record.spec.route, text, record.checkpoint.phase.rawValue, record.revision,
                                           record.startedAt.timeIntervalSince1970])
                saved.id = db.lastInsertedRowID
            }
            return saved
        }
    }

    public func appendJournal(_ entry: JournalEntry) async throws(StateStoreError) {
        try await write { db in
            try db.execute(sql: "INSERT INTO journal (time, route, source, text) VALUES (?, ?, ?, ?)",
                           arguments: [entry.time.timeIntervalSince1970, entry.route, entry.source, entry.text])
        }
    }

    public func journal(route: String?, since: Date?, limit: Int) async throws(StateStoreError) -> [JournalEntry] {
        try await read { db in
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let route {
                conditions.append("route = ?")
                _ = arguments.append(contentsOf: [route])
            }
            if let since {
                conditions.append("time >= ?")
                _ = arguments.append(contentsOf: [since.timeIntervalSince1970])
            }
            let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            _ = arguments.append(contentsOf: [limit])
            let rows = try Row.fetchAll(db, sql: """
                SELECT time, route, source, text FROM (SELECT id, time, route, source, text FROM journal \(filter) ORDER BY id DESC LIMIT ?)
                ORDER BY id
                """, arguments: arguments)
            return rows.map { row in
                JournalEntry(time: Date(timeIntervalSince1970: row["time"]), route: row["route"], text: row["text"], source: row["source"])
            }
        }
    }

    public func pruneJournal(before cutoff: Date, keepingLatest: Int) async throws(StateStoreError) -> Int {
        let keep = max(0, keepingLatest)
        return try await write { db in
            // By age: a range of the time index.
            try db.execute(sql: "DELETE FROM journal WHERE time < ?", arguments: [cutoff.timeIntervalSince1970])
            var removed = db.changesCount
            // By count: everything up to the newest entry past the ones kept (a walk of at most
            // `keep` rows of the primary key).
            try db.execute(sql: """
                DELETE FROM journal WHERE id <= (SELECT id FROM journal ORDER BY id DESC LIMIT 1 OFFSET ?)
                """, arguments: [keep])
            removed += db.changesCount
            return removed
        }
    }

}
