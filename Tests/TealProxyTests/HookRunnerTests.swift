import Foundation
import Testing
import TealCore
import TealServer

/// Hooks run through `/bin/sh -c`; a failure says what the command printed last.
@Suite("Hook runner")
struct HookRunnerTests {
    @Test("a missing script fails with the shell's own words")
    func missingScript() async {
        let name = "./teal-missing-hook-\(UUID().uuidString.prefix(8)).sh"
        let failure = await HookRunner.run(name, environment: [:], timeout: .seconds(20))
        #expect(failure == "exit status 127: /bin/sh: 1: \(name): not found")
    }

    @Test("a hook that floods its output neither stalls nor keeps it all: the last lines are shown")
    func flood() async {
        let command = "head -c 3000000 /dev/zero | tr '\\0' x; echo; i=0; while [ $i -lt 20000 ]; do echo \"noise $i\"; i=$((i+1)); done; "
            + "echo 'error: deployment shop not found' >&2; exit 4"
        let started = ContinuousClock.now
        let failure = await HookRunner.run(command, environment: [:], timeout: .seconds(30))
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(failure == "exit status 4: noise 19996 | noise 19997 | noise 19998 | noise 19999 | error: deployment shop not found")
    }

    @Test("success is nil whatever it printed; the environment reaches the hook")
    func success() async {
        #expect(await HookRunner.run("echo lots of output; test \"$TEAL_SPLIT\" = 2/4", environment: ["TEAL_SPLIT": "2/4"], timeout: .seconds(20)) == nil)
        #expect(await HookRunner.run("echo \"split $TEAL_SPLIT\"; exit 1", environment: ["TEAL_SPLIT": "2/4"], timeout: .seconds(20))
            == "exit status 1: split 2/4")
    }
}

extension LiveTests {
    @Suite("Live hook failures")
    struct HookFailures {
        @Test("a step hook that cannot run rolls back; the journal and the rollback reason name the command and its output; all blue is 6/0")
        func stepHookNotFound() async throws {
            let fixture = try await LiveFixture.start(blue: ["blue-1"], green: ["green-1"], split: Split(blue: 6, green: 0)!)
            let script = "./teal-missing-scale-\(UUID().uuidString.prefix(8)).sh"
            var policy = RolloutPolicy(steps: ["2/4", "0/6"].map { PlanStep(split: Split(parsing: $0)!) })
            policy.hold = .seconds(30)
            policy.hooks.step = "\(script) \"$TEAL_SPLIT\""
            let green = PoolSpec(version: "2", instances: fixture.green.map { InstanceAddress(host: "127.0.0.1", port: $0.port!) })
            try await fixture.router.releases.start(ReleaseSpec(route: "live", green: green, policy: policy))
            let outcome = await fixture.router.releases.outcome(route: "live", timeout: .seconds(20))
            let detail = "exit status 127: /bin/sh: 1: \(script): not found"
            guard case .rolledBack(let reason, _)? = outcome else {
                Issue.record("expected a rollback, got \(String(describing: outcome))"); await fixture.stop(); return
            }
            #expect(reason == .hookFailed(event: "step", command: "\(script) \"$TEAL_SPLIT\"", detail: detail))
            // The rollback's journal entry follows the state change: wait for it (at most 5 s).
            var texts: [String] = []
            for _ in 0..<100 {
                texts = await fixture.router.releases.events(route: "live").map(\.text)
                if texts.contains(where: { $0.hasPrefix("rolled back") }) { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(texts.contains("rolled back: step hook \(script) \"$TEAL_SPLIT\" failed: \(detail)"), "\(texts)")
            #expect(texts.contains("step hook \(script) \"$TEAL_SPLIT\" failed: \(detail)"), "\(texts)")
            #expect(fixture.router.controller.routes[0].split.description == "6/0")
            await fixture.stop()
        }
    }
}
