import Foundation
import TealConfig
import TealCore
import Testing

/// Hook commands are checked when route files load: their program must be found and executable.
@Suite("Hook commands checked at load")
struct HookCommandCheckTests {
    /// A temporary working directory with `bin/` (the only PATH entry), removed by `remove()`.
    struct Sandbox {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("teal-hooks-\(UUID().uuidString)").path
        var bin: String { root + "/bin" }
        var check: HookCommandCheck { HookCommandCheck(searchPath: [bin], workingDirectory: root) }

        init() throws {
            try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/routes", withIntermediateDirectories: true)
        }

        func write(_ relative: String, _ text: String = "#!/bin/sh\nexit 0\n", executable: Bool) throws {
            let path = root + "/" + relative
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.posixPermissions: executable ? 0o755 : 0o644], ofItemAtPath: path)
        }

        func remove() { try? FileManager.default.removeItem(atPath: root) }
    }

    static func hookRoute(_ key: String, _ command: String) -> String {
        minimalRoute("rollout:\n  steps: [6/0, 0/6]\n  hooks:\n    \(key): \(command)\n")
    }

    @Test("the program of a shell command, or none when the shell decides", arguments: [
        ("./scale.sh \"$TEAL_SPLIT\"", "./scale.sh"),
        ("  kubectl scale deploy/shop --replicas=$TEAL_GREEN_WEIGHT", "kubectl"),
        ("LEVEL=2 DRY_RUN= ./scale.sh", "./scale.sh"),
        ("./notify.sh;echo done", "./notify.sh"),
        ("/usr/bin/env curl -fsS https://chat.example.com", "/usr/bin/env"),
        ("scripts/page.sh>/dev/null 2>&1", "scripts/page.sh"),
    ])
    func program(command: String, expected: String) {
        #expect(HookCommandCheck.program(of: command) == expected)
    }

    @Test("commands left to the shell: builtins, keywords, quoting, expansion, subshells", arguments: [
        "echo released", "exit 0", "if true; then ./x.sh; fi", "$HOME/bin/scale.sh", "\"./my scale.sh\"", "~/scale.sh",
        "(cd deploy && ./scale.sh)", "./scale-*.sh", "A=1", "# nothing", ". ./env.sh", "exec ./missing.sh", "{ ./a.sh; }",
    ])
    func unjudged(command: String) {
        #expect(HookCommandCheck.program(of: command) == nil)
        #expect(HookCommandCheck(searchPath: [], workingDirectory: "/nonexistent").problem(with: command) == nil)
    }

    @Test("a missing hook script is refused, naming file, line, key and command")
    func missing() throws {
        let sandbox = try Sandbox()
        defer { sandbox.remove() }
        let description = errorDescription { () throws(ConfigError) in
            _ = try RouteFileLoader.parseRoute(yaml: Self.hookRoute("step", "./scale.sh"), file: "routes/shop.yaml", hookCheck: sandbox.check)
        }
        #expect(description == "routes/shop.yaml:7: rollout.hooks.step: ./scale.sh is not found "
            + "(relative paths resolve against the working directory \(sandbox.root))")
        let onPath = errorDescription { () throws(ConfigError) in
            _ = try RouteFileLoader.parseRoute(yaml: Self.hookRoute("promoted", "notify-chat --all"), file: "routes/shop.yaml", hookCheck: sandbox.check)
        }
        #expect(onPath == "routes/shop.yaml:7: rollout.hooks.promoted: notify-chat is not found on PATH (\(sandbox.bin)); install it or give its path")
        let directory = errorDescription { () throws(ConfigError) in
            _ = try RouteFileLoader.parseRoute(yaml: Self.hookRoute("rolledBack", "./bin"), file: "routes/shop.yaml", hookCheck: sandbox.check)
        }
        #expect(directory?.hasPrefix("routes/shop.yaml:7: rollout.hooks.rolledBack: ./bin is a directory, not a program") == true)
    }

    @Test("a hook script that is not executable is refused")
    func notExecutable() throws {
        let sandbox = try Sandbox()
        defer { sandbox.remove() }
        try sandbox.write("scale.sh", executable: false)
        try sandbox.write("bin/notify-chat", executable: false)
        let description = errorDescription { () throws(ConfigError) in
            _ = try RouteFileLoader.parseRoute(yaml: Self.hookRoute("step", "./scale.sh 2"), file: "routes/shop.yaml", hookCheck: sandbox.check)
        }
        #expect(description == "routes/shop.yaml:7: rollout.hooks.step: ./scale.sh is not executable; chmod +x \(sandbox.root)/scale.sh")
        let onPath = errorDescription { () throws(ConfigError) in
            _ = try RouteFileLoader.parseRoute(yaml: Self.hookRoute("rolledBack", "notify-chat"), file: "routes/shop.yaml", hookCheck: sandbox.check)
        }
        #expect(onPath == "routes/shop.yaml:7: rollout.hooks.rolledBack: notify-chat is not executable (\(sandbox.bin)/notify-chat); chmod +x it or give its path")
    }

    @Test("executable hooks load: relative to the working directory, on PATH, absolute")
    func resolvable() throws {
        let sandbox = try Sandbox()
        defer { sandbox.remove() }
        try sandbox.write("deploy/scale.sh", executable: true)
        try sandbox.write("bin/notify-chat", executable: true)
        let yaml = minimalRoute("""
            rollout:
              steps: [6/0, 0/6]
              hooks:
                step: deploy/scale.sh "$TEAL_SPLIT"
                promoted: notify-chat promoted
                rolledBack: \(sandbox.root)/deploy/scale.sh 6/0

            """)
        let route = try RouteFileLoader.parseRoute(yaml: yaml, file: "routes/shop.yaml", hookCheck: sandbox.check)
        #expect(route.rollout?.hooks.step == "deploy/scale.sh \"$TEAL_SPLIT\"")
        // Relative to the working directory, not to the route file's directory.
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: sandbox.root + "/routes/shop.yaml"))
        #expect(try RouteFileLoader.loadRoutes(at: sandbox.root + "/routes", hookCheck: sandbox.check).count == 1)
        let elsewhere = HookCommandCheck(searchPath: [sandbox.bin], workingDirectory: sandbox.root + "/routes")
        #expect(errorDescription { () throws(ConfigError) in _ = try RouteFileLoader.loadRoutes(at: sandbox.root + "/routes", hookCheck: elsewhere) }
            == "\(sandbox.root)/routes/shop.yaml:7: rollout.hooks.step: deploy/scale.sh is not found "
            + "(relative paths resolve against the working directory \(sandbox.root)/routes)")
    }

    @Test("loading from disk checks hooks against this process's PATH and working directory")
    func loadUsesTheProcessEnvironment() throws {
        let sandbox = try Sandbox()
        defer { sandbox.remove() }
        let file = sandbox.root + "/routes/shop.yaml"
        try Data(Self.hookRoute("step", "./teal-no-such-hook-\(UUID().uuidString).sh").utf8).write(to: URL(fileURLWithPath: file))
        #expect(errorDescription { () throws(ConfigError) in _ = try RouteFileLoader.loadRoutes(at: file) }?
            .hasPrefix("\(file):7: rollout.hooks.step: ./teal-no-such-hook-") == true)
        try Data(Self.hookRoute("step", "sh -c 'exit 0'").utf8).write(to: URL(fileURLWithPath: file))
        #expect(try RouteFileLoader.loadRoutes(at: file).first?.rollout?.hooks.step == "sh -c 'exit 0'")
    }

    @Test("a route without a split starts all blue in its plan's terms")
    func splitInPlanTerms() throws {
        let route = try RouteFileLoader.parseRoute(yaml: minimalRoute("rollout: {steps: [6/0, 2/4, 0/6]}\n"), file: "f.yaml")
        #expect(route.split.description == "6/0")
        let given = try RouteFileLoader.parseRoute(yaml: minimalRoute("split: 3/0\nrollout: {steps: [6/0, 2/4, 0/6]}\n"), file: "f.yaml")
        #expect(given.split.description == "3/0")
        #expect(try RouteFileLoader.parseRoute(yaml: minimalRoute(), file: "f.yaml").split == .allBlue)
    }
}
