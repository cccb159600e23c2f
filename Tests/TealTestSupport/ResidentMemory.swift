import Foundation

/// Resident memory (VmRSS) of process `pid`, or of this process when `nil`, in bytes; 0 when it
/// cannot be read.
public func residentBytes(pid: Int32? = nil) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid.map(String.init) ?? "self")/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
}
