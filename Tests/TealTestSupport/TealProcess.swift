import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A loopback port that was free a moment ago (bound to port 0, then closed): nothing listens on
/// it, so connecting is refused, and a server started right after can usually bind it.
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let status = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard status == 0 else { throw TealProcess.Failure("no free loopback port: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The `teal` binary built with the tests, run as a child process with its output in a file.
public final class TealProcess: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// `teal` next to the test bundle (`swift build --build-tests` builds both).
    public static var binary: URL {
        get throws {
            let directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            let url = directory.appendingPathComponent("teal")
            guard FileManager.default.isExecutableFile(atPath: url.path) else {
                throw Failure("no teal binary at \(url.path): build it with swift build --build-tests")
            }
            return url
        }
    }

    public let process = Process()
    /// Standard output and error, interleaved.
    public let logFile: URL

    /// Starts `teal arguments…` with `environment` added to this process's.
    public init(_ arguments: [String], environment: [String: String] = [:]) throws {
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("teal-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logFile)
        process.executableURL = try Self.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: logFile)
    }

    /// What the process printed so far.
    public var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    public var pid: Int32 { process.processIdentifier }

    /// Sends a signal (SIGTERM, SIGKILL, SIGHUP…).
    public func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit, at most `timeout`; its exit status, or `nil` if it is still
    /// running (it is then killed).
    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard !process.isRunning else {
            send(SIGKILL)
            return nil
        }
        return process.terminationStatus
    }

    /// Waits until `GET http://127.0.0.1:port/path` answers 200, at most `timeout`.
    public func waitUntilServing(port: Int, path: String = "/healthz", timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        let session = URLSession(configuration: .ephemeral)
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw Failure("teal exited with status \(process.terminationStatus):\n\(log)") }
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
            request.timeoutInterval = 1
            if let (_, response) = try? await session.data(for: request), (response as? HTTPURLResponse)?.statusCode == 200 {
                // Another process may own the port: this one then fails to bind and exits soon.
                try await Task.sleep(for: .milliseconds(200))
                guard process.isRunning else { throw Failure("teal exited with status \(process.terminationStatus):\n\(log)") }
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw Failure("teal did not serve on port \(port) within \(timeout):\n\(log)")
    }

    /// Waits until a TCP connection to `127.0.0.1:port` succeeds (it is closed at once, before
    /// any request), at most `timeout`.
    public func waitUntilListening(port: Int, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw Failure("teal exited with status \(process.terminationStatus):\n\(log)") }
            if Self.canConnect(port: port) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw Failure("nothing listens on port \(port) after \(timeout):\n\(log)")
    }

    public static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// Runs any command (`arguments[0]` is the executable path) to the end, at most `timeout`;
    /// its exit status and output (standard output and error together).
    public static func runCommand(_ arguments: [String], environment: [String: String] = [:],
                                  timeout: Duration = .seconds(60)) async throws -> (status: Int32, output: String) {
        let result = try await runProcess(arguments, environment: environment, mergeErrors: true, timeout: timeout)
        return (result.status, result.output)
    }

    /// Runs a process to the end; a watchdog stops it after `timeout`, so a command that
    /// hangs (its pipes never reach their end) fails the test instead of hanging it. Standard
    /// error goes with standard output when `mergeErrors`, else apart.
    public static func runProcess(_ arguments: [String], environment: [String: String] = [:], mergeErrors: Bool,
                                  timeout: Duration) async throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = mergeErrors ? output : error
        try process.run()
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            guard process.isRunning else { return }
            process.terminate()
            // Some programs (h2load) do not stop on SIGTERM.
            try await Task.sleep(for: .seconds(2))
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        async let out = readToEnd(output)
        async let err = mergeErrors ? Data() : readToEnd(error)
        let (outData, errData) = await (out, err)
        while process.isRunning { try await Task.sleep(for: .milliseconds(10)) }
        watchdog.cancel()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    /// Runs `teal arguments…` to the end (at most `timeout`); its exit status and output.
    public static func run(_ arguments: [String], environment: [String: String] = [:],
                           timeout: Duration = .seconds(60)) async throws -> (status: Int32, output: String) {
        let child = try TealProcess(arguments, environment: environment)
        guard let status = await child.waitForExit(timeout: timeout) else {
            throw Failure("teal \(arguments.joined(separator: " ")) did not end within \(timeout):\n\(child.log)")
        }
        return (status, child.log)
    }
}
