import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on a state file, held by the `teal serve` that uses it (`flock` on
/// `STATE.lock`, which also holds the holder's pid). A second `teal serve` on the same state
/// either refuses to start or, with `--takeover`, signals the holder to drain and waits for the
/// lock, which the holder gives up as soon as it has stopped its releases.
public final class StateLock: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var held = false

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StateLockError.cannotOpen(path: path, errno: errno) }
    }

    deinit { close(fd) }

    /// Takes the lock if nobody holds it; writes this process's pid into the file.
    func tryLock() -> Bool {
        lock.withLock {
            guard !held else { return true }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return false }
            held = true
            let pid = "\(getpid())\n"
            _ = ftruncate(fd, 0)
            _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
            return true
        }
    }

    /// The pid the holder wrote, if any.
    func holder() -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(fd, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Waits (polling) until the lock is ours, at most `timeout`.
    func waitForLock(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !tryLock() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// Gives the lock up (a successor may take it).
    func unlock() {
        lock.withLock {
            guard held else { return }
            held = false
            _ = flock(fd, LOCK_UN)
        }
    }
}

public enum StateLockError: Error, CustomStringConvertible {
    case cannotOpen(path: String, errno: Int32)
    case inUse(statePath: String, pid: Int32?)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let code): "cannot open the lock file \(path): \(String(cString: strerror(code)))"
        case .inUse(let statePath, let pid):
            "another teal serve\(pid.map { " (pid \($0))" } ?? "") is using the state file \(statePath); "
                + "stop it first, or start this one with --takeover to replace it without dropping requests"
        }
    }
}
