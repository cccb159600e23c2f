import Foundation
import Synchronization
import Testing
import TealCore
import TealProxy
import TealServer

/// A store whose release saves are slow (as on a loaded disk) and that counts inserts.
final class SlowReleaseStore: StateStore {
    private let inserts = Mutex(0)
    private let nextID = Atomic<Int64>(0)

    var insertCount: Int { inserts.withLock { $0 } }

    func load() async throws(StateStoreError) -> StoredState { StoredState() }
    func saveRoute(_ record: RouteRecord) async throws(StateStoreError) -> Int64 { 0 }
    func deleteRoute(_ name: String) async throws(StateStoreError) {}
    func appendJournal(_ entry: JournalEntry) async throws(StateStoreError) {}
    func journal(route: String?, since: Date?, limit: Int) async throws(StateStoreError) -> [JournalEntry] { [] }
    func pruneJournal(before cutoff: Date, keepingLatest: Int) async throws(StateStoreError) -> Int { 0 }

    func saveRelease(_ record: ReleaseRecord) async throws(StateStoreError) -> ReleaseRecord {
        try? await Task.sleep(for: .milliseconds(40))
        var saved = record
        if record.id == nil {
            inserts.withLock { $0 += 1 }
            saved.id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        }
        return saved
    }
}

@Suite("Release persistence")
struct ReleasePersistenceTests {
    @Test("a release's saves never overlap: starting it inserts one row, however slow the store (it wrote two, one left shifting forever)")
    func oneInsertPerRelease() async throws {
        let store = SlowReleaseStore()
        try await withStoreRouter(store) { router in
            var policy = RolloutPolicy(steps: [PlanStep(split: Split(blue: 1, green: 1)!), PlanStep(split: Split(blue: 0, green: 1)!)])
            policy.hold = .seconds(3600)
            let green = PoolSpec(version: "2", instances: [InstanceAddress(host: "127.0.0.1", port: 2)])
            try await router.releases.start(ReleaseSpec(route: "shop", green: green, policy: policy))
            try await Task.sleep(for: .milliseconds(500))
            #expect(store.insertCount == 1)
        }
    }
}
