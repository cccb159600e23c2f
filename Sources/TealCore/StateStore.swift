#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The run-time state of one route: the decisions made while Teal ran (split, the pools a release
/// or a promotion put in place), and the route-file pools they were made on.
public struct RouteRecord: Sendable, Hashable, Codable {
    public var route: String
    public var split: Split
    public var blue: PoolSpec
    public var green: PoolSpec?
    /// The blue and green pools of the route file when this state was written. When the file's
    /// pools differ at start-up the file was edited since, and the file wins.
    public var fileBlue: PoolSpec
    public var fileGreen: PoolSpec?
    public var updatedAt: Date

    public init(route: String, split: Split, blue: PoolSpec, green: PoolSpec?, fileBlue: PoolSpec, fileGreen: PoolSpec?, updatedAt: Date) {
        self.route = route
        self.split = split
        self.blue = blue
        self.green = green
        self.fileBlue = fileBlue
        self.fileGreen = fileGreen
        self.updatedAt = updatedAt
    }
}

/// One release as stored: what it releases, who started it, and its latest checkpoint.
public struct ReleaseRecord: Sendable, Hashable, Codable {
    /// Assigned by the store when the release is first saved.
    public var id: Int64?
    public var spec: ReleaseSpec
    public var startedBy: String
    public var startedAt: Date
    public var checkpoint: RolloutMachine.Checkpoint
    /// Increases with every save. A save whose revision is not the stored one plus one is
    /// refused (`StateStoreError.conflict`): two writers never both drive one release.
    public var revision: Int

    public init(id: Int64? = nil, spec: ReleaseSpec, startedBy: String, startedAt: Date, checkpoint: RolloutMachine.Checkpoint, revision: Int = 1) {
        self.id = id
        self.spec = spec
        self.startedBy = startedBy
        self.startedAt = startedAt
        self.checkpoint = checkpoint
        self.revision = revision
    }
}

/// Everything a store holds for start-up.
public struct StoredState: Sendable {
    public var routes: [String: RouteRecord]
    /// The latest release of each route.
    public var releases: [String: ReleaseRecord]

    public init(routes: [String: RouteRecord] = [:], releases: [String: ReleaseRecord] = [:]) {
        self.routes = routes
        self.releases = releases
    }
}

/// Why the store could not do something. Messages name the file (or database) and the problem.
public enum StateStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The state cannot be opened or read (corrupt, not a database, unreadable).
    case unreadable(path: String, detail: String)
    /// Written by a newer Teal: its schema has migrations this one does not know.
    case newerSchema(path: String, unknown: [String])
    /// A write failed; the change it carried is not durable.
    case writeFailed(String)
    /// Another writer saved this release since it was read.
    case conflict(route: String, stored: Int, attempted: Int)

    public var description: String {
        switch self {
        case .unreadable(let path, let detail): "\(Self.kind(path)) \(path) cannot be read: \(detail)"
        case .newerSchema(let path, let unknown):
            "\(Self.kind(path)) \(path) was written by a newer Teal (schema migrations \(unknown.joined(separator: ", ")) are unknown to this one)"
        case .writeFailed(let detail): "state not saved: \(detail)"
        case .conflict(let route, let stored, let attempted):
            "release of \(route) was saved elsewhere (stored revision \(stored), this save is revision \(attempted))"
        }
    }

    /// "state file" for a path, "state database" for a database URL (`postgres://…`).
    private static func kind(_ path: String) -> String {
        path.contains("://") ? "state database" : "state file"
    }
}

/// Durable state: run-time route decisions, releases and the journal. Every method returns once
/// the change is durable (committed and synced), so a caller can acknowledge it. The interface has
/// no SQL in it and every call is one transaction on one route, so a shared database (PostgreSQL)
/// can serve several Teal replicas: release saves are compare-and-set by `revision`.
public protocol StateStore: Sendable {
    /// Everything stored, for start-up.
    func load() async throws(StateStoreError) -> StoredState
    /// Saves a route's run-time state; returns the revision it was saved at (increasing over the
    /// whole store with every route save, so replicas that share the store can tell newer state
    /// from older; 0 from a store no other replica shares).
    @discardableResult
    func saveRoute(_ record: RouteRecord) async throws(StateStoreError) -> Int64
    /// `saveRoute`, as a change a release makes (`asReleaseDriver`): a store several replicas
    /// share refuses it (`StateStoreError.conflict`) while another replica holds the release's
    /// lease, so a deposed driver cannot move traffic. Stores no other replica shares save it as
    /// any change (the default).
    @discardableResult
    func saveRoute(_ record: RouteRecord, asReleaseDriver: Bool) async throws(StateStoreError) -> Int64
    /// Removes a route's run-time state (the route left the route files).
    func deleteRoute(_ name: String) async throws(StateStoreError)
    /// Saves a release: a record without `id` is inserted (and gets one), else updated when its
    /// revision is the stored one plus one. Returns the saved record.
    func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord
    func appendJournal(_ entry: JournalEntry) async throws(StateStoreError)
    /// Journal entries, oldest first: of one route or all, from `since` on, the latest `limit`.
    func journal(route: String?, since: Date?, limit: Int) async throws(StateStoreError) -> [JournalEntry]
    /// Deletes journal entries older than `cutoff`, then all but the latest `keepingLatest`
    /// (latest by append order); returns how many went. Called now and then
    /// (`JournalPruneSchedule`), so it may scan up to `keepingLatest` entries, but no more.
    func pruneJournal(before cutoff: Date, keepingLatest: Int) async throws(StateStoreError) -> Int
}

/// A route's stored run-time state and the revision it was saved at.
extension StateStore {
    @discardableResult
    public func saveRoute(_ record: RouteRecord, asReleaseDriver: Bool) async throws(StateStoreError) -> Int64 {
        try await saveRoute(record)
    }
}

public struct StoredRoute: Sendable, Hashable {
    public var record: RouteRecord
    public var revision: Int64

    public init(record: RouteRecord, revision: Int64) {
        self.record = record
        self.revision = revision
    }
}

/// A store that several replicas share, telling each of the changes the others save: every
/// route save is announced with its revision. A replica follows it to serve what any replica
/// decided (a split, a release's pools, a promotion).
public protocol StateChangeFeed: Sendable {
    /// Every route's stored state with its revision.
    func storedRoutes() async throws(StateStoreError) -> [StoredRoute]
    /// One route's stored state, `nil` when none is stored.
    func storedRoute(_ name: String) async throws(StateStoreError) -> StoredRoute?
    /// Listens for changes on a connection of its own: calls `listening` once changes are
    /// being delivered (anything saved before may have been missed: read it then), then
    /// `changed(route, revision)` for every route save of any replica, in commit order. Returns
    /// when the task is cancelled; throws when the connection is lost.
    func followChanges(listening: @escaping @Sendable () async -> Void,
                       changed: @escaping @Sendable (String, Int64) async -> Void) async throws
}

/// One `teal serve` that shares a store with others, as it last reported itself.
public struct ReplicaRecord: Sendable, Hashable, Codable {
    /// Made at start-up, unique per process.
    public var id: String
    /// Its admin API (`host:port`), or empty without one.
    public var admin: String
    /// The newest store revision it serves.
    public var revision: Int64
    /// The routes whose release it runs.
    public var drives: [String]
    public var startedAt: Date
    /// When it last reported (by the store's clock).
    public var seenAt: Date

    public init(id: String, admin: String, revision: Int64, drives: [String], startedAt: Date, seenAt: Date = Date()) {
        self.id = id
        self.admin = admin
        self.revision = revision
        self.drives = drives
        self.startedAt = startedAt
        self.seenAt = seenAt
    }
}

/// Leases on releases, in a store several replicas share: exactly one replica runs a release at
/// a time. A lease lasts `ttl` from its last renewal (by the store's clock); its fence increases
/// whenever it passes to another replica, and the store refuses release saves from a replica
/// that does not hold the lease while another does (`StateStoreError.conflict`).
public protocol ReleaseLeases: Sendable {
    /// Takes or renews the lease on `route`'s release for this replica; returns its fence, or
    /// `nil` when another replica holds it and it has not expired.
    func acquireLease(route: String, ttl: Duration) async throws(StateStoreError) -> Int64?
    /// Gives the lease up (the release ended, or this replica shuts down).
    func releaseLease(route: String) async throws(StateStoreError)
    /// Routes whose latest release has not ended and whose lease nobody holds now: a replica
    /// that ran it died, hung or lost the store.
    func unledReleases() async throws(StateStoreError) -> [String]
}

/// One replica's cumulative traffic counts of one route's pools, as it publishes them.
public struct TrafficReport: Sendable, Hashable, Codable {
    public var route: String
    public var blue: PoolStatistics
    public var green: PoolStatistics

    public init(route: String, blue: PoolStatistics, green: PoolStatistics) {
        self.route = route
        self.blue = blue
        self.green = green
    }
}

/// Traffic counts shared between replicas, so the replica that runs a release judges the
/// traffic of all of them: each publishes the counts it already keeps (nothing new on the
/// request path), the driver sums the others' with its own.
public protocol TrafficExchange: Sendable {
    /// Publishes this replica's cumulative counts of these routes.
    func publishTraffic(_ reports: [TrafficReport]) async throws(StateStoreError)
    /// The other replicas' latest counts of `routes`, published within `window`: one report a
    /// route, the sum over those replicas.
    func othersTraffic(routes: [String], within window: Duration) async throws(StateStoreError) -> [TrafficReport]
}

/// A store that knows the replicas using it: each reports itself every second or so.
public protocol ReplicaRegistry: Sendable {
    /// This process's identity in the store (its leases and reports carry it).
    var replicaID: String { get }
    /// Records `replica` as alive now (the store's clock sets `seenAt`).
    func report(_ replica: ReplicaRecord) async throws(StateStoreError)
    /// The replicas seen within `window`, and the store's newest route revision.
    func replicas(seenWithin window: Duration) async throws(StateStoreError) -> (replicas: [ReplicaRecord], latestRevision: Int64)
    /// Removes a replica (it shuts down).
    func forget(replica id: String) async throws(StateStoreError)
}

extension Route {
    /// This route (as its file defines it) with the run-time state of `record` applied: split and
    /// pools. `nil` when the record was written on other file pools (the file was edited since:
    /// the file wins) or does not fit (a split giving green traffic without green instances).
    public func applying(_ record: RouteRecord) -> Route? {
        guard record.route == name, record.fileBlue == blue, record.fileGreen == green else { return nil }
        guard !record.blue.instances.isEmpty, record.split.green == 0 || !(record.green?.instances.isEmpty ?? true) else { return nil }
        var route = self
        route.blue = record.blue
        route.green = record.green
        route.split = record.split
        return route
    }

    /// The record of this route's run-time state, made on the pools of `file` (the route as its
    /// file defines it).
    public func record(file: Route, at time: Date) -> RouteRecord {
        RouteRecord(route: name, split: split, blue: blue, green: green, fileBlue: file.blue, fileGreen: file.green, updatedAt: time)
    }
}

/// The text form of stored records (route states, releases), shared by every store so the same
/// record reads the same from SQLite and PostgreSQL: JSON with sorted keys and dates in
/// milliseconds since 1970.
public enum StoredRecordText {
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return encoder
    }()
    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return decoder
    }()

    /// A record as stored text; a failure is a write that cannot be made.
    public static func encode(_ value: some Encodable) throws(StateStoreError) -> String {
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            throw .writeFailed("cannot encode: \(error)")
        }
    }

    /// A stored record back; `what` names it (`route shop`) and `store` the file or database in
    /// the error when it cannot be read.
    public static func decode<T: Decodable>(_ type: T.Type, _ text: String, what: String, store: String) throws(StateStoreError) -> T {
        do {
            return try decoder.decode(type, from: Data(text.utf8))
        } catch {
            throw .unreadable(path: store, detail: "stored \(what) cannot be decoded: \(error)")
        }
    }
}
