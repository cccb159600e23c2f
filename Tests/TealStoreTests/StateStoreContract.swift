import Foundation
import Testing
import TealCore

/// A kind of store under test: opens a store on one state (a file, a database) again and again,
/// and closes it, so the contract can check what survives a reopening.
protocol StoreOpener: Sendable {
    func open() async throws -> any StateStore
    func close(_ store: any StateStore) async
}

/// What every `StateStore` must do, run against each store (SQLite, PostgreSQL).
enum StateStoreContract {
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

    /// `body` with a store from `opener`, closed afterwards (also when `body` throws).
    static func using<T>(_ opener: some StoreOpener, _ body: (any StateStore) async throws -> T) async throws -> T {
        let store = try await opener.open()
        do {
            let result = try await body(store)
            await opener.close(store)
            return result
        } catch {
            await opener.close(store)
            throw error
        }
    }

    /// Routes, releases and the journal survive closing and reopening; a deleted route is gone;
    /// journal queries by route, since and limit give the latest entries oldest first.
    static func roundTrip(_ opener: some StoreOpener) async throws {
        let route = RouteRecord(route: "shop", split: Split(blue: 2, green: 4)!, blue: blue, green: green,
                                fileBlue: blue, fileGreen: green, updatedAt: Date(timeIntervalSince1970: 1_800_000_001))
        try await using(opener) { store in
            try await store.saveRoute(route)
            var gone = route
            gone.route = "gone"
            try await store.saveRoute(gone)
            try await store.deleteRoute("gone")
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
        try await using(opener) { reopened in
            let state = try await reopened.load()
            #expect(state.routes == ["shop": route])
            let release = try #require(state.releases["shop"])
            #expect(release.spec == Self.release().spec && release.revision == 2 && release.startedBy == "cli")
            #expect(release.checkpoint.phase == .rolledBack && release.checkpoint.rollbackReason == .errorRate(green: 0.3, limit: 0.05, requests: 120))
            let journal = try await reopened.journal(route: "shop", since: nil, limit: 100)
            #expect(journal.map(\.text) == ["entry 0", "entry 1", "entry 2", "entry 3"])
            #expect(journal.first?.time == Date(timeIntervalSince1970: 1_800_000_000) && journal.first?.source == "verdict")
            let latest = try await reopened.journal(route: nil, since: Date(timeIntervalSince1970: 1_800_000_002), limit: 2)
            #expect(latest.map(\.text) == ["entry 3", "entry 4"])
            #expect(try await reopened.journal(route: "shop", since: Date(timeIntervalSince1970: 1_800_000_001), limit: 2).map(\.text)
                == ["entry 2", "entry 3"])
            // A second release of the route: load gives the latest.
            var next = Self.release()
            next.startedBy = "api"
            let saved = try await reopened.saveRelease(next)
            #expect(saved.id != release.id)
            #expect(try await reopened.load().releases["shop"]?.startedBy == "api")
        }
    }

    /// Entries past the age go, then all but the latest N (by append order), and the store stays
    /// usable.
    static func journalRetention(_ opener: some StoreOpener) async throws {
        let start = 1_800_000_000.0
        try await using(opener) { store in
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
        try await using(opener) { reopened in
            #expect(try await reopened.journal(route: nil, since: nil, limit: 100).map(\.text) == (25..<30).map { "entry \($0)" })
            #expect(try await reopened.journal(route: "shop", since: nil, limit: 100).map(\.text) == ["entry 26", "entry 28"])
            try await reopened.appendJournal(JournalEntry(time: Date(timeIntervalSince1970: start + 3600), route: "shop", text: "after", source: "api"))
            #expect(try await reopened.pruneJournal(before: Date(timeIntervalSince1970: start), keepingLatest: 2) == 4)
            #expect(try await reopened.journal(route: nil, since: nil, limit: 100).map(\.text) == ["entry 29", "after"])
            #expect(try await reopened.pruneJournal(before: Date(timeIntervalSince1970: start + 7200), keepingLatest: 2) == 2)
            #expect(try await reopened.journal(route: nil, since: nil, limit: 100).isEmpty)
        }
    }

    /// A release save with a stale revision (or one skipping ahead) is refused and changes nothing.
    static func revisionConflict(_ opener: some StoreOpener) async throws {
        try await using(opener) { store in
            var saved = try await store.saveRelease(Self.release())
            saved.revision = 2
            _ = try await store.saveRelease(saved)
            var stale = saved
            stale.checkpoint.phase = .aborted
            await #expect(throws: StateStoreError.conflict(route: "shop", stored: 2, attempted: 2)) { try await store.saveRelease(stale) }
            var ahead = saved
            ahead.revision = 4
            ahead.checkpoint.phase = .aborted
            await #expect(throws: StateStoreError.conflict(route: "shop", stored: 2, attempted: 4)) { try await store.saveRelease(ahead) }
            #expect(try await store.load().releases["shop"]?.checkpoint.phase == .shifting)
            #expect(try await store.load().releases["shop"]?.revision == 2)
            saved.revision = 3
            saved.checkpoint.phase = .promoted
            _ = try await store.saveRelease(saved)
            #expect(try await store.load().releases["shop"]?.checkpoint.phase == .promoted)
        }
    }
}
