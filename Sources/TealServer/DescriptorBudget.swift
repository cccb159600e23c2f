#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// The process's file descriptors, shared out before serving: the soft limit is raised to the
/// hard one (as nginx's `worker_rlimit_nofile` does), and a budget in which the proxy's
/// connections and the admin listener's each have a part of their own is checked against it.
/// The admin listener can use at most its connection cap, so nothing sent to the admin port can
/// take descriptors the proxy needs.
enum DescriptorBudget {
    /// Descriptors kept for everything but connections: the state file, listeners, probes, logs,
    /// hook processes.
    static let reserve = 256

    /// What serving needs at the most: each proxy connection can hold a client socket and an
    /// upstream one.
    static func needed(proxyConnections: Int, adminConnections: Int) -> Int {
        // Clamped: the counts are flags an operator sets, and must not overflow.
        let cap = Int.max / 8
        return min(max(proxyConnections, 0), cap) * 2 + min(max(adminConnections, 0), cap) + reserve
    }

    /// Raises the soft descriptor limit to the hard limit; logs a warning naming the numbers when
    /// the budget does not fit in the limit.
    static func prepare(proxyConnections: Int, adminConnections: Int, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let available = limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
        let needed = needed(proxyConnections: proxyConnections, adminConnections: adminConnections)
        if needed > available {
            let fits = max(1, (available - adminConnections - reserve) / 2)
            logger.warning("the descriptor limit is below what --max-connections can use: past it new connections fail",
                           metadata: ["limit": "\(available)", "needed": "\(needed)", "max-connections that fit": "\(fits)"])
        }
    }
}
