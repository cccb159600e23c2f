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

@Suite("SQLite state store")
struct SQLiteStateStoreTests {
    static let blue = PoolSpec(version: "1.0", instances: [InstanceAddress(host: "127.0.0.1", port: 9101)])
    static let green = PoolSpec(version: "1.1", instances: [InstanceAddress(host: "127.0.0.1", port: 9201)])

    static func release(route: String = "shop") -> ReleaseRecord {
        var policy = RolloutPolicy(steps: [PlanStep(split: Split(blue: 2, green: 4)!), PlanStep(split: Split(blue: 0, green: 1)!)])
        policy.hold = .seconds(30)
        policy.onNoTraffic = .rollback(after: .seconds(20))
        policy.rollback.maxP99 = .milliseconds(800)
        let checkpoint = RolloutMachine.Checkpoint(phase: .shifting, step: 1, since: Date(timeIntervalSince1970: 1_800_000_000.25),
                                                   held: nil, gate: false, smokePassed: true, rollbackReason: nil, abortReason: nil)
        return ReleaseRecord(spec: ReleaseSpec(route: route, green: green, policy: policy), startedBy: "cli",
                             startedAt: Date(timeIntervalSince1970: 1_800_000_000), checkpoint: checkpoint)
    }

    @Test("routes, releases and the journal survive closing and reopening the file")
    func roundTrip() async throws {
        let file = TemporaryStateFile()
        defer { file.remove() }
        let route = RouteRecord(route: "shop", split: Split(blue: 2, green: 4)!, blue: Self.blue, green: Self.green,
                                fileBlue: Self.blue, fileGreen: Self.green, updatedAt: Date(timeIntervalSince1970: 1_800_000_001))
        do {
            let store = try SQLiteStateStore(path: file.path)
            try await store.saveRoute(route)
            var release = try await store.saveRelease(Self.release())
            #expect(release.id != nil)
            release.checkpoint.phase = .rolledBack
            release.checkpoint.rollbackReason = .errorRate(green: 0.3, limit: 0.05, requests: 120)
            release.revision += 1
            _ = try await store.saveRelease(release)
            for index in 0..<5 {
                try await store.appendJournal(JournalEntry(time: Date(timeIntervalSince1970: 1_800_000_000 + Double(index)), route: index == 4 ? "other" : "shop",
                                                           text: "entry \(index)", source: "verdict"))
            }
        }
        let reopened = try SQLiteStateStore(path: file.path)
        let state = try await reopened.load()
        #expect(state.routes["shop"] == route)
        let release = try #require(state.releases["shop"])
        #expect(release.spec == Self.release().spec && release.revision == 2 && release.startedBy == "cli")
        #expect(release.checkpoint.phase == .rolledBack && release.checkpoint.rollbackReason == .errorRate(green: 0.3, limit: 0.05, requests: 120))
        let journal = try await reopened.journal(route: "shop", since: nil, limit: 100)
        #expect(journal.map(\.text) == ["entry 0", "entry 1", "entry 2", "entry 3"])
        let latest = try await reopened.journal(route: nil, since: Date(timeIntervalSince1970: 1_800_000_002), limit: 2)
        #expect(latest.map(\.text) == ["entry 3", "entry 4"])
    }

    @Test("journal retention: entries past the age go, then all but the latest N, in a real file that stays usable")
    func journalRetention() async throws {
        let file = TemporaryStateFile()
        defer { file.remove() }
        let start = 1_800_000_000.0
        do {
            let store = try SQLiteStateStore(path: file.path)
            // 30 entries a minute apart; the clock stepped back once (entry 20 is stamped 5 minutes after the start).
            for index in 0..<30 {
                let time = start + Double(index) * 60 - (index == 20 ? 900 : 0)
                try await store.appendJournal(JournalEntry(time: Date(timeIntervalSince1970: time), route: index % 2 == 0 ? "shop" : "api",
                                                           text: "entry \(index)", source: "api"))
            }
            // Nothing is past either limit: nothing goes.
            #expect(try await store.pruneJournal(before: Date(timeIntervalSince1970: start - 1), keepingLatest: 30) == 0)
            // By age: entries 0...9, and 20 (stamped before the cutoff), are older than 10 minutes after the start.
            #expect(try await store.pruneJournal(before: Date(timeIntervalSince1970: start + 600), keepingLatest: 1000) == 11)
            let left = try await store.journal(route: nil, since: nil, limit: 100).map(\.text)
            #expect(left == (10..<30).filter { $0 != 20 }.map { "entry \($0)" })
            // By count: the latest 5 by append order stay, whatever their routes.
            #expect(try await store.pruneJournal(before: Date(timeIntervalSince1970: start), keepingLatest: 5) == 14)
        }
        let reopened = try SQLiteStateStore(path: file.path)
        #expect(try await reopened.journal(route: nil, since: nil, limit: 100).map(\.text) == (25..<30).map { "entry \($0)" })
        #expect(try await reopened.journal(route: "shop", since: nil, limit: 100).map(\.text) == ["entry 26", "entry 28"])
        try await reopened.appendJournal(JournalEntry(time: Date(timeIntervalSince1970: start + 3600), route: "shop", text: "after", source: "api"))
        #expect(try await reopened.pruneJournal(before: Date(timeIntervalSince1970: start), keepingLatest: 2) == 4)
        #expect(try await reopened.journal(route: nil, since: nil, limit: 100).map(\.text) == ["entry 29", "after"])
        #expect(try await reopened.pruneJournal(before: Date(timeIntervalSince1970: start + 7200), keepingLatest: 2) == 2)
        #expect(try await reopened.journal(route: nil, since: nil, limit: 100).isEmpty)
    }

    @Test("a release save with a stale revision is refused and changes nothing")
    func revisionConflict() async throws {
        let file = TemporaryStateFile()
        defer { file.remove() }
        let store = try SQLiteStateStore(path: file.path)
        var saved = try await store.saveRelease(Self.release())
        saved.revision = 2
        _ = try await store.saveRelease(saved)
        var stale = saved
        stale.checkpoint.phase = .aborted
        await #expect(throws: StateStoreError.conflict(route: "shop", stored: 2, attempted: 2)) { try await store.saveRelease(stale) }
        #expect(try await store.load().releases["shop"]?.checkpoint.phase == .shifting)
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
