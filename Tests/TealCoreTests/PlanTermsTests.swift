import Foundation
import Testing
import TealCore

/// All blue written in the plan's own terms (`6/0`, not `1/0`), and the picker unchanged by it.
@Suite("Splits in the plan's terms")
struct PlanTermsTests {
    static func policy(_ steps: String...) -> RolloutPolicy {
        RolloutPolicy(steps: steps.map { PlanStep(split: Split(parsing: $0)!) })
    }

    @Test func allBlueAtAScale() {
        #expect(Split.allBlue(scale: 6).description == "6/0")
        #expect(Split.allBlue(scale: 1) == .allBlue)
        #expect(Split.allBlue(scale: 0) == .allBlue)
        #expect(Split.allBlue(scale: -5) == .allBlue)
        #expect(Split.allBlue(scale: 5000).description == "1000/0")
        #expect(Split(parsing: "2/4")!.scale == 6 && Split(parsing: "25%")!.scale == 100)
        #expect(Split(parsing: "6/0")!.isAllBlue && Split.allBlue.isAllBlue && !Split(parsing: "6/1")!.isAllBlue)
    }

    @Test("a plan's all blue: its first all-blue step, else its largest scale")
    func planAllBlue() {
        #expect(Self.policy("6/0", "2/4", "0/6").allBlue.description == "6/0")
        #expect(Self.policy("6/0", "6/1", "2/4", "0/6").allBlue.description == "6/0")
        #expect(Self.policy("2/4", "0/6").allBlue.description == "6/0")
        #expect(Self.policy("6/1", "0/6").allBlue.description == "7/0")
        #expect(Self.policy("90%", "100%").allBlue.description == "100/0")
        #expect(Self.policy("0/1").allBlue == .allBlue)
    }

    @Test("a route's all blue: its plan's, else its split's scale")
    func routeAllBlue() {
        let blue = PoolSpec(instances: [InstanceAddress(host: "127.0.0.1", port: 9101)])
        var route = Route(name: "shop", blue: blue, split: Split(parsing: "2/4")!)
        #expect(route.allBlue.description == "6/0")
        route.split = .allBlue
        #expect(route.allBlue.description == "1/0")
        route.rollout = Self.policy("10/0", "5/5", "0/10")
        #expect(route.allBlue.description == "10/0")
    }

    @Test("the picker routes 6/0 and 1/0 the same: every request to blue")
    func pickerUnchanged() {
        for split in [Split.allBlue, Split.allBlue(scale: 6), Split.allBlue(scale: 1000)] {
            let picker = PoolPicker(split: split)
            #expect((0..<5000).allSatisfy { _ in picker.next() == .blue }, "\(split)")
        }
    }
}

@Suite("Hook output tail")
struct HookOutputTailTests {
    @Test("the last lines, on one line, blanks and control characters out")
    func lastLines() {
        var tail = HookOutputTail(lineLimit: 3)
        tail.append(Array("one\ntwo\n\n three\r\nfour\u{1B}[31m red\tx\n\n".utf8))
        #expect(tail.summary == "two | three | four [31m red x")
        #expect(HookOutputTail().summary == "")
    }

    @Test("a flood keeps only the last bytes, and the cut line is dropped")
    func bounded() {
        var tail = HookOutputTail(byteLimit: 64, lineLimit: 5)
        for index in 0..<10_000 { tail.append(Array("line \(index) of noise\n".utf8)) }
        #expect(tail.bytes.count == 64 && tail.truncated)
        #expect(tail.summary.hasSuffix("line 9999 of noise"))
        #expect(!tail.summary.hasPrefix("ine") && tail.summary.hasPrefix("line"))
        tail.append(Array(String(repeating: "z", count: 100).utf8))
        #expect(tail.summary == String(repeating: "z", count: 64))
    }

    @Test("a long summary keeps its end")
    func summaryLimit() {
        var tail = HookOutputTail(summaryLimit: 10)
        tail.append(Array("0123456789abcdefghij: not found\n".utf8))
        #expect(tail.summary == "…not found")
    }

    @Test("commands are shown by their first line, cut")
    func commandDisplay() {
        #expect(ReleaseHooks.display("./scale.sh 2") == "./scale.sh 2")
        #expect(ReleaseHooks.display("\n  set -e\n  ./scale.sh\n") == "set -e …")
        let long = String(repeating: "a", count: 300)
        #expect(ReleaseHooks.display(long) == String(repeating: "a", count: ReleaseHooks.displayLength) + "…")
    }
}

@Suite("Journal retention")
struct JournalRetentionTests {
    @Test func defaultsAndBounds() {
        let retention = JournalRetention()
        #expect(retention.maxAge == .seconds(90 * 86_400) && retention.maxEntries == 100_000)
        #expect(JournalRetention(maxAge: .zero, maxEntries: 0) == JournalRetention(maxAge: .seconds(1), maxEntries: 1))
        #expect(JournalRetention(maxAge: .seconds(1) * 1_000_000_000).maxAge == JournalRetention.longestMaxAge)
        let now = Date(timeIntervalSince1970: 2_000_000_000)
        #expect(JournalRetention(maxAge: .seconds(3600)).cutoff(now: now) == Date(timeIntervalSince1970: 2_000_000_000 - 3600))
    }

    @Test("prunes first at once, then after enough appends or time, never twice at once")
    func schedule() {
        var schedule = JournalPruneSchedule(appendsBetweenPrunes: 3, interval: .seconds(60))
        var now = ContinuousClock.now
        func due(_ appended: Int) -> Bool { schedule.shouldPrune(appended: appended, at: now) }
        #expect(due(0), "the first check prunes")
        now += .seconds(3600)
        #expect(!due(0), "one prune at a time")
        schedule.finished(at: now)
        let answers = [due(1), due(1), due(1)]
        #expect(answers == [false, false, true], "after 3 appends")
        schedule.finished(at: now)
        now += .seconds(59)
        #expect(!due(0))
        now += .seconds(1)
        #expect(due(0), "after the interval")
    }
}
