import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TealAdmin
import TealTestSupport

/// A loopback socket that listens on a free port until closed: "another program".
final class Occupant {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 8) == 0 else {
            close(fd)
            throw TealProcess.Failure("cannot listen: errno \(errno)")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

/// What a new user meets in the first hour: each error says what is wrong and what to do, and
/// the long-running commands behave as the tools people know.
@Suite("teal's first hour: error messages and following a release", .serialized)
struct FirstHourTests {
    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-first-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test("an address in use names the flag and the address, and suggests no --takeover for another program")
    func addressInUse() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let occupant = try Occupant()
        for flag in ["--admin", "--listen"] {
            let other = flag == "--admin" ? "--listen" : "--admin"
            let result = try await TealProcess.run(["serve", "--routes", directory.path, flag, "127.0.0.1:\(occupant.port)",
                                                    other, "127.0.0.1:\(try freePort())", "--state", directory.appendingPathComponent("s.sqlite").path])
            #expect(result.status == 2, "\(result.output)")
            #expect(result.output.contains("teal: \(flag) 127.0.0.1:\(occupant.port) is in use by another program"), "\(result.output)")
            #expect(!result.output.contains("--takeover") && !result.output.contains("CancellationError") && !result.output.contains("errno"),
                    "\(result.output)")
        }
    }

    @Test("a missing routes/ says it is --routes' default; an empty one starts with a warning")
    func routesDirectory() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let teal = try TealProcess.binary.path
        let missing = try await TealProcess.runCommand(["/bin/sh", "-c", "cd '\(directory.path)' && exec '\(teal)' serve"])
        #expect(missing.status == 2, "\(missing.output)")
        #expect(missing.output.contains("--routes routes: no such file or directory (routes/ is the default of --routes)"), "\(missing.output)")
        let empty = directory.appendingPathComponent("routes")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let admin = try freePort()
        let server = try TealProcess(["serve", "--routes", empty.path, "--listen", "127.0.0.1:\(try freePort())", "--admin", "127.0.0.1:\(admin)",
                                      "--state", directory.appendingPathComponent("s.sqlite").path])
        try await server.waitUntilServing(port: admin)
        #expect(server.log.contains("no route files (*.yaml) in --routes"), "\(server.log)")
        server.send(SIGTERM)
        _ = await server.waitForExit(timeout: .seconds(10))
    }

    @Test("bad splits on the command line say what is wrong, with the split command's usage")
    func badSplits() async throws {
        let dash = try await TealProcess.run(["split", "shop", "2-4"])
        #expect(dash.status != 0 && dash.output.contains("split \"2-4\" is not B/G, e.g. 2/4"), "\(dash.output)")
        #expect(dash.output.contains("Usage: teal split"), "\(dash.output)")
        let zero = try await TealProcess.run(["split", "shop", "0/0"])
        #expect(zero.output.contains("at least one side must have weight"), "\(zero.output)")
        let help = try await TealProcess.run(["serve", "--help"])
        #expect(help.output.contains("127.0.0.1:8080") && !help.output.contains("HostPort("), "\(help.output)")
    }

    @Test("demo-backend says where it listens, at once, even into a pipe or file")
    func demoBackendSaysItListens() async throws {
        let port = try freePort()
        let backend = try TealProcess(["demo-backend", "--listen", "127.0.0.1:\(port)", "--name", "x"])
        var said = false
        for _ in 0..<100 where !said {
            said = backend.log.contains("demo-backend x listening on")
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(said, "\(backend.log)")
        backend.send(SIGTERM)
        _ = await backend.waitForExit(timeout: .seconds(5))
    }

    @Test("rollout start without a green pool names the command's flags; teal reload prints what changed; events --follow prints new entries")
    func clientCommands() async throws {
        try await ServedRouter.with { router in
            // A route file without green: the release needs --green-instance.
            let file = router.directory.appendingPathComponent("shop.yaml")
            let text = try String(contentsOf: file, encoding: .utf8)
            let noGreen = text.split(separator: "\n").filter { !$0.hasPrefix("green:") }.joined(separator: "\n") + "\n"
            try noGreen.write(to: file, atomically: true, encoding: .utf8)
            let reload = try await router.teal(["reload"])
            #expect(reload.status == 0 && reload.output.contains("reloaded: added none; changed shop; removed none; unchanged none"), "\(reload.output)")
            let start = try await router.teal(["rollout", "start", "shop"])
            #expect(start.status == 2 && start.output.contains("--green-instance HOST:PORT"), "\(start.output)")

            let follow = try TealProcess(["events", "shop", "--follow"], environment: ["TEAL_ADMIN": "127.0.0.1:\(router.adminPort)"])
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try await router.teal(["split", "shop", "3/0"]).status == 0)
            var seen = false
            for _ in 0..<60 where !seen {
                seen = follow.log.contains("split set to 3/0")
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(seen, "\(follow.log)")
            // Nothing twice: the reload's entry, from before --follow started, was printed once.
            #expect(follow.log.components(separatedBy: "by a reload of the route files").count == 2, "\(follow.log)")
            follow.send(SIGTERM)
            _ = await follow.waitForExit(timeout: .seconds(5))
        }
    }

    @Test("rollout status --watch: piped, a line per change; on a terminal, one screen redrawn with traffic and the verdict's numbers")
    func watch() async throws {
        try await ServedRouter.with(plan: "[1/1, 0/1]", hold: "2s") { router in
            let load = router.load()
            defer { _ = load }
            #expect(try await router.teal(["rollout", "start", "shop"]).status == 0)
            let piped = try await router.teal(["rollout", "status", "shop", "--watch"])
            let lines = piped.output.split(separator: "\n").map(String.init)
            #expect(piped.status == 0 && lines.last?.contains("promoted") == true, "\(piped.output)")
            #expect(lines.count >= 2 && zip(lines, lines.dropFirst()).allSatisfy { $0 != $1 }, "\(piped.output)")
            #expect(!piped.output.contains("\u{1B}["), "no terminal codes into a pipe")

            // Green was promoted: the next release brings its own green.
            #expect(try await router.teal(["rollout", "start", "shop", "--green-instance", "127.0.0.1:\(router.ports["blue2"]!)"]).status == 0)
            let teal = try TealProcess.binary.path
            let script = """
                import os, pty, select, sys, time
                pid, fd = pty.fork()
                if pid == 0:
                    os.execv(sys.argv[1], [sys.argv[1], "rollout", "status", "shop", "--watch", "--admin", sys.argv[2]])
                out, end = b"", time.time() + 30
                while time.time() < end:
                    ready, _, _ = select.select([fd], [], [], 0.5)
                    if ready:
                        try:
                            data = os.read(fd, 65536)
                        except OSError:
                            break
                        if not data:
                            break
                        out += data
                os.waitpid(pid, 0)
                sys.stdout.write(out.decode("utf-8", "replace"))
                """
            let terminal = try await TealProcess.runCommand(["/usr/bin/python3", "-c", script, teal, "127.0.0.1:\(router.adminPort)"],
                                                            timeout: .seconds(40))
            let screens = terminal.output.components(separatedBy: "\u{1B}[H\u{1B}[2J").dropFirst()
            #expect(screens.count >= 3, "\(terminal.output.suffix(2000))")
            #expect(screens.contains { $0.contains("req/s") && $0.contains("green") && $0.contains("verdict ") && $0.contains("split   blue") },
                    "\(terminal.output.suffix(2000))")
            #expect(screens.last?.contains("promoted") == true, "\(screens.last ?? "")")
            _ = await load.stop()
        }
    }
}
