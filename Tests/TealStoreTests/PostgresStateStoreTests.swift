import Foundation
import Testing
import TealCore
import TealStorePostgres
import TealTestSupport

/// Opens PostgreSQL stores on one database.
struct PostgresOpener: StoreOpener {
    let configuration: PostgresStateConfiguration
    func open() async throws -> any StateStore { try await PostgresStateStore.open(configuration) }
    func close(_ store: any StateStore) async { await (store as? PostgresStateStore)?.close() }
}

/// The store contract and PostgreSQL's own cases, each against a throwaway cluster
/// (`PostgresCluster`) on 127.0.0.1.
@Suite("PostgreSQL state store")
struct PostgresStateStoreTests {
    /// A new database `name` in `cluster`, and the configuration of a store on it.
    static func database(_ cluster: PostgresCluster, _ name: String = "teal") async throws -> PostgresStateConfiguration {
        try await cluster.createDatabase(name)
        return try PostgresStateConfiguration(url: cluster.url(database: name, withPassword: true))
    }

    @Test("routes, releases and the journal survive closing and reopening the store")
    func roundTrip() async throws {
        try await PostgresCluster.with { cluster in
            try await StateStoreContract.roundTrip(PostgresOpener(configuration: try await Self.database(cluster)))
        }
    }

    @Test("journal retention: entries past the age go, then all but the latest N")
    func journalRetention() async throws {
        try await PostgresCluster.with { cluster in
            try await StateStoreContract.journalRetention(PostgresOpener(configuration: try await Self.database(cluster)))
        }
    }

    @Test("a release save with a stale revision is refused and changes nothing, also when another replica saved it")
    func revisionConflict() async throws {
        try await PostgresCluster.with { cluster in
            let opener = PostgresOpener(configuration: try await Self.database(cluster))
            try await StateStoreContract.revisionConflict(opener)
            // Two replicas on one database: both read revision 1, the first to save revision 2 wins.
            try await StateStoreContract.using(opener) { first in
                try await StateStoreContract.using(opener) { second in
                    let created = try await first.saveRelease(StateStoreContract.release(route: "api"))
                    let seen = try #require(try await second.load().releases["api"])
                    #expect(seen.id == created.id && seen.revision == 1)
                    var winner = created
                    winner.revision = 2
                    winner.checkpoint.step = 2
                    _ = try await first.saveRelease(winner)
                    var loser = seen
                    loser.revision = 2
                    loser.checkpoint.phase = .rolledBack
                    await #expect(throws: StateStoreError.conflict(route: "api", stored: 2, attempted: 2)) { try await second.saveRelease(loser) }
                    let stored = try #require(try await first.load().releases["api"])
                    #expect(stored.checkpoint.step == 2 && stored.checkpoint.phase == .shifting && stored.revision == 2)
                }
            }
        }
    }

    @Test("change feed: every route save of another store is announced with its increasing revision; storedRoute reads it back")
    func changeFeed() async throws {
        try await PostgresCluster.with { cluster in
            let configuration = try await Self.database(cluster)
            let writer = try await PostgresStateStore.open(configuration)
            let follower = try await PostgresStateStore.open(configuration)
            let heard = AsyncStream<(String, Int64)>.makeStream()
            let listening = AsyncStream<Void>.makeStream()
            let following = Task {
                try await follower.followChanges(listening: { listening.continuation.yield() },
                                                 changed: { heard.continuation.yield(($0, $1)) })
            }
            var ready = listening.stream.makeAsyncIterator()
            _ = await ready.next()
            var record = RouteRecord(route: "shop", split: Split(blue: 1, green: 0)!, blue: StateStoreContract.blue, green: nil,
                                     fileBlue: StateStoreContract.blue, fileGreen: nil, updatedAt: Date())
            var revisions: [Int64] = []
            for blue in 1...3 {
                record.split = Split(blue: blue, green: 0)!
                revisions.append(try await writer.saveRoute(record))
            }
            #expect(revisions == revisions.sorted() && Set(revisions).count == 3 && revisions[0] > 0)
            var iterator = heard.stream.makeAsyncIterator()
            var announced: [Int64] = []
            for _ in 0..<3 {
                let (route, revision) = try #require(await iterator.next())
                #expect(route == "shop")
                announced.append(revision)
            }
            #expect(announced == revisions)
            let stored = try #require(try await follower.storedRoute("shop"))
            #expect(stored.revision == revisions.last && stored.record.split == Split(blue: 3, green: 0)!)
            #expect(try await follower.storedRoutes().map(\.revision) == [revisions.last!])
            #expect(try await follower.storedRoute("none") == nil)
            following.cancel()
            _ = await following.result
            await writer.close()
            await follower.close()
        }
    }

    @Test("replicas report themselves: listed while seen within the window, with the newest revision; forgotten ones go")
    func replicaRegistry() async throws {
        try await PostgresCluster.with { cluster in
            let store = try await PostgresStateStore.open(try await Self.database(cluster))
            let started = Date(timeIntervalSince1970: 1_800_000_000)
            try await store.report(ReplicaRecord(id: "a", admin: "127.0.0.1:9901", revision: 0, drives: [], startedAt: started))
            try await store.report(ReplicaRecord(id: "b", admin: "127.0.0.1:9902", revision: 0, drives: ["shop"], startedAt: started))
            let record = RouteRecord(route: "shop", split: Split(blue: 1, green: 0)!, blue: StateStoreContract.blue, green: nil,
                                     fileBlue: StateStoreContract.blue, fileGreen: nil, updatedAt: Date())
            let revision = try await store.saveRoute(record)
            try await store.report(ReplicaRecord(id: "a", admin: "127.0.0.1:9901", revision: revision, drives: [], startedAt: started))
            let listed = try await store.replicas(seenWithin: .seconds(5))
            #expect(listed.latestRevision == revision)
            #expect(listed.replicas.map(\.id) == ["a", "b"])
            #expect(listed.replicas.map(\.revision) == [revision, 0] && listed.replicas[1].drives == ["shop"])
            #expect(abs(listed.replicas[0].seenAt.timeIntervalSinceNow) < 5 && listed.replicas[0].startedAt == started)
            try await store.forget(replica: "b")
            #expect(try await store.replicas(seenWithin: .seconds(5)).replicas.map(\.id) == ["a"])
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await store.replicas(seenWithin: .milliseconds(100)).replicas.isEmpty)
            await store.close()
        }
    }

    @Test("leases: one holder at a time, renewals keep the fence, expiry hands over with a higher fence, the old holder's release saves are refused")
    func leases() async throws {
        try await PostgresCluster.with { cluster in
            let configuration = try await Self.database(cluster)
            let first = try await PostgresStateStore.open(configuration)
            let second = try await PostgresStateStore.open(configuration)
            let saved = try await first.saveRelease(StateStoreContract.release(route: "api"))
            #expect(try await second.unledReleases() == ["api"])
            #expect(try await first.acquireLease(route: "api", ttl: .milliseconds(600)) == 1)
            #expect(try await second.acquireLease(route: "api", ttl: .seconds(5)) == nil)
            #expect(try await first.acquireLease(route: "api", ttl: .milliseconds(600)) == 1)
            #expect(try await second.unledReleases().isEmpty)
            try await Task.sleep(for: .milliseconds(800))
            #expect(try await second.unledReleases() == ["api"])
            #expect(try await second.acquireLease(route: "api", ttl: .seconds(5)) == 2)
            // The deposed holder's save is fenced off, though its revision is right.
            var late = saved
            late.revision = 2
            await #expect(throws: StateStoreError.self) { _ = try await first.saveRelease(late) }
            #expect(try await second.saveRelease(late).revision == 2)
            // So are its route changes as the release's driver; other route changes are not.
            let route = RouteRecord(route: "api", split: Split(blue: 2, green: 4)!, blue: StateStoreContract.blue, green: StateStoreContract.green,
                                    fileBlue: StateStoreContract.blue, fileGreen: StateStoreContract.green, updatedAt: Date())
            let before = try await second.storedRoute("api")
            await #expect(throws: StateStoreError.self) { _ = try await first.saveRoute(route, asReleaseDriver: true) }
            #expect(try await second.storedRoute("api") == before)
            #expect(try await second.saveRoute(route, asReleaseDriver: true) > 0)
            #expect(try await first.saveRoute(route) > 0)
            try await second.releaseLease(route: "api")
            #expect(try await first.acquireLease(route: "api", ttl: .seconds(5)) == 3)
            await first.close()
            await second.close()
        }
    }

    @Test("eight stores opening one new database at once migrate it once, and all work")
    func concurrentMigrations() async throws {
        try await PostgresCluster.with { cluster in
            let configuration = try await Self.database(cluster)
            let stores = try await withThrowingTaskGroup(of: PostgresStateStore.self) { group in
                for _ in 0..<8 { group.addTask { try await PostgresStateStore.open(configuration) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(stores.count == 8)
            for (index, store) in stores.enumerated() {
                try await store.appendJournal(JournalEntry(time: Date(), route: "shop", text: "from store \(index)", source: "test"))
            }
            #expect(try await stores[0].journal(route: "shop", since: nil, limit: 100).count == 8)
            for store in stores { await store.close() }
            let migrations = try await cluster.psql("SELECT id FROM teal_schema_migrations ORDER BY id", database: "teal")
            #expect(migrations.split(separator: "\n") == ["v1", "v2", "v3", "v4", "v5"])
        }
    }

    @Test("a database written by a newer Teal is refused, naming the unknown migrations, and left as it was")
    func newerSchema() async throws {
        try await PostgresCluster.with { cluster in
            let configuration = try await Self.database(cluster)
            let store = try await PostgresStateStore.open(configuration)
            try await store.appendJournal(JournalEntry(time: Date(), route: "shop", text: "kept", source: "test"))
            await store.close()
            try await cluster.psql("INSERT INTO teal_schema_migrations (id) VALUES ('v9'), ('v10')", database: "teal")
            await #expect(throws: StateStoreError.newerSchema(path: "postgres://teal@127.0.0.1:\(cluster.port)/teal", unknown: ["v10", "v9"])) {
                _ = try await PostgresStateStore.open(configuration)
            }
            let message = "\(StateStoreError.newerSchema(path: configuration.description, unknown: ["v10", "v9"]))"
            #expect(message == "state database postgres://teal@127.0.0.1:\(cluster.port)/teal was written by a newer Teal (schema migrations v10, v9 are unknown to this one)")
            #expect(try await cluster.psql("SELECT text FROM teal_journal", database: "teal") == "kept\n")
        }
    }

    @Test("TLS to the database: verify-full against the server's CA works; no TLS is refused by a TLS-only server, and a foreign CA fails naming the cause")
    func tls() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        try certificates.reissue("database", commonName: "127.0.0.1", san: "IP:127.0.0.1")
        let foreign = try TestCertificates()
        defer { foreign.remove() }
        try await PostgresCluster.with(password: "pw", tls: (certificates.path("database.pem"), certificates.path("database.key"))) { cluster in
            try await cluster.createDatabase("teal")
            let base = cluster.url(database: "teal", withPassword: true)
            var checked = try PostgresStateConfiguration(url: base + "?sslmode=verify-full&sslrootcert=\(certificates.path("ca.pem"))")
            checked.connectTimeout = .seconds(5)
            let store = try await PostgresStateStore.open(checked)
            let revision = try await store.saveRoute(RouteRecord(route: "shop", split: Split(blue: 1, green: 0)!, blue: StateStoreContract.blue,
                                                                 green: nil, fileBlue: StateStoreContract.blue, fileGreen: nil, updatedAt: Date()))
            #expect(revision > 0)
            #expect(try await store.load().routes["shop"] != nil)
            await store.close()
            // The server took it over TLS: it serves nothing else.
            let required = try await PostgresStateStore.open(PostgresStateConfiguration(url: base + "?sslmode=require"))
            #expect(try await required.load().routes["shop"] != nil)
            await required.close()
            var plain = try PostgresStateConfiguration(url: base)
            plain.connectTimeout = .seconds(5)
            await #expect { _ = try await PostgresStateStore.open(plain) } throws: { "\($0)".contains("no encryption") || "\($0)".contains("pg_hba.conf") }
            var wrongCA = try PostgresStateConfiguration(url: base + "?sslmode=verify-full&sslrootcert=\(foreign.path("ca.pem"))")
            wrongCA.connectTimeout = .seconds(5)
            await #expect { _ = try await PostgresStateStore.open(wrongCA) } throws: { error in
                "\(error)".contains("postgres://teal@127.0.0.1:\(cluster.port)/teal cannot be read") && !"\(error)".contains(":pw@")
            }
        }
    }

    @Test("no server, no password, a wrong password: open fails naming host, port, database and the cause")
    func connectionFailures() async throws {
        let port = try freePort()
        var nobody = try PostgresStateConfiguration(url: "postgres://teal@127.0.0.1:\(port)/shop")
        nobody.connectTimeout = .seconds(5)
        await #expect {
            _ = try await PostgresStateStore.open(nobody)
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("state database postgres://teal@127.0.0.1:\(port)/shop cannot be read: cannot connect: ")
                && text.lowercased().contains("refused")
        }
        try await PostgresCluster.with(password: "s3cret-Pass") { cluster in
            try await cluster.createDatabase("teal")
            let wrong = try PostgresStateConfiguration(url: "postgres://teal:nope@127.0.0.1:\(cluster.port)/teal")
            await #expect {
                _ = try await PostgresStateStore.open(wrong)
            } throws: { error in
                "\(error)".contains("postgres://teal@127.0.0.1:\(cluster.port)/teal cannot be read: password authentication failed for user \"teal\"")
                    && !"\(error)".contains("nope")
            }
            let none = try PostgresStateConfiguration(url: "postgres://teal@127.0.0.1:\(cluster.port)/teal")
            await #expect {
                _ = try await PostgresStateStore.open(none)
            } throws: { error in
                "\(error)".contains("the server asks for a password")
            }
            var right = none
            right.password = "s3cret-Pass"
            let store = try await PostgresStateStore.open(right)
            #expect(try await store.load().routes.isEmpty)
            await store.close()
        }
    }
}

@Suite("PostgreSQL state URL")
struct PostgresStateConfigurationTests {
    @Test("URL forms: scheme, user, password, host, port, database, TLS mode")
    func forms() throws {
        let plain = try PostgresStateConfiguration(url: "postgres://teal@db.internal:6432/state")
        #expect(plain == PostgresStateConfiguration(host: "db.internal", port: 6432, database: "state", username: "teal"))
        #expect(plain.description == "postgres://teal@db.internal:6432/state")
        let full = try PostgresStateConfiguration(url: "postgresql://te%40al:p%3Ass@[::1]/st%20ate?sslmode=verify-full&sslrootcert=/etc/ca.pem")
        #expect(full.username == "te@al" && full.password == "p:ss" && full.host == "::1" && full.port == 5432 && full.database == "st ate")
        #expect(full.tls == .verifyFull && full.rootCertificatePath == "/etc/ca.pem")
        #expect(full.description == "postgres://te@al@[::1]:5432/st ate")
        let defaults = try PostgresStateConfiguration(url: "postgres://teal@127.0.0.1?sslmode=require")
        #expect(defaults.database == "teal" && defaults.tls == .require && defaults.password == nil)
        #expect(PostgresStateConfiguration.isDatabaseURL("PostgreSQL://x@y/z") && !PostgresStateConfiguration.isDatabaseURL(".teal/state.sqlite"))
    }

    @Test("bad URLs are refused with the reason, never echoing the password")
    func refused() {
        let cases: [(String, String)] = [
            ("postgres://db.internal/state", "names no user"),
            ("postgres://teal:secret@/state", "names no host"),
            ("postgres://teal:secret@db:70000/state", "port 70000"),
            ("postgres://teal@db/state?sslmode=prefer", "sslmode=prefer is not one of"),
            ("postgres://teal@db/state?connect_timeout=3", "connect_timeout is not known"),
            ("postgres://teal@db/state?sslmode=require&sslrootcert=/ca.pem", "sslrootcert= needs"),
            ("postgres://teal@db/a/b", "has a / in it"),
        ]
        for (url, reason) in cases {
            #expect {
                _ = try PostgresStateConfiguration(url: url)
            } throws: { error in
                "\(error)".contains(reason) && !"\(error)".contains("secret")
            }
        }
    }
}
