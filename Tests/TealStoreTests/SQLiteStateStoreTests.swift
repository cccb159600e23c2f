import Foundation
import GRDB
import Testing
import TealCore
import TealStore

/// A state file in a fresh temporary directory, removed afterwards.
struct TemporaryStateFile {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-store-\(UUID().uuidString)")
    var path: String { directory.appendingPathComponent("state.sqlite").path }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

/// Opens SQLite stores on one file.
struct SQLiteOpener: StoreOpener {
    let path: String
    func open() async throws -> any StateStore { try SQLiteStateStore(path: path) }
    func close(_ store: any StateStore) async {}
}

@Suite("SQLite state store")
struct SQLiteStateStoreTests {
    @Test("routes, releases and the journal survive closing and reopening the file")
    func roundTrip() async throws {
        let file = TemporaryStateFile()
        defer { file.remove() }
        try await StateStoreContract.roundTrip(SQLiteOpener(path: file.path))
    }

    @Test("journal retention: entries past the age go, then all but the latest N, in a real file that stays usable")
    func journalRetention() async throws {
        let file = TemporaryStateFile()
        defer { file.remove() }
        try await StateStoreContract.journalRetention(SQLiteOpener(path: file.path))
    }

    @Test("a release save with a stale revision is refused and changes nothing")
    func revisionConflict() async throws {
        let file = TemporaryStateFile()
        defer { file.remove() }
        try await StateStoreContract.revisionConflict(SQLiteOpener(path: file.path))
    }

    @Test("a file that is not a database, a corrupt one, and one from a newer Teal are refused with what is wrong")
    func badFiles() async throws {
        let file = TemporaryStateFile()
        defer { file.remove() }
        try FileManager.default.createDirectory(at: file.directory, withIntermediateDirectories: true)
        try Data("this is not a database, it is a text file that someone copied here\n".utf8).write(to: URL(fileURLWithPath: file.path))
        #expect {
            _ = try SQLiteStateStore(path: file.path)
        } throws: { error in
            "\(error)".contains("state file \(file.path) cannot be read: not a SQLite database")
        }

        // A real state file with its pages overwritten in the middle.
        try FileManager.default.removeItem(atPath: file.path)
        do {
            let store = try SQLiteStateStore(path: file.path)
            for index in 0..<400 {
                try await store.appendJournal(JournalEntry(time: Date(), route: "shop", text: String(repeating: "x", count: 200) + "\(index)", source: "api"))
            }
        }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file.path))
        try handle.seek(toOffset: 4096 * 3)
        handle.write(Data(repeating: 0xA5, count: 4096 * 4))
        try handle.close()
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file.path + suffix) }
        #expect {
            _ = try SQLiteStateStore(path: file.path)
        } throws: { error in
            "\(error)".hasPrefix("state file \(file.path) cannot be read")
        }

        // A schema migration this build does not know.
        try FileManager.default.removeItem(atPath: file.path)
        _ = try SQLiteStateStore(path: file.path)
        try await DatabaseQueue(path: file.path).write { db in try db.execute(sql: "INSERT INTO grdb_migrations VALUES ('v9')") }
        #expect(throws: StateStoreError.newerSchema(path: file.path, unknown: ["v9"])) { _ = try SQLiteStateStore(path: file.path) }
    }
}
