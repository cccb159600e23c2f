import Foundation
import TealAdmin

/// The screen of `teal rollout status --watch` on a terminal: the release, its plan, the split
/// as a bar, each pool's traffic over the last 10 s, and the verdict's numbers against the
/// policy's limits. Pure: views in, text out.
enum StatusScreen {
    static func render(_ view: RolloutView, route: RouteView?) -> String {
        var lines: [String] = []
        var title = "\(view.route): \(view.state)"
        if let step = view.step { title += ", step \(step)/\(view.steps.count)" }
        if let held = view.heldSeconds {
            title += ", held \(seconds(held))" + (view.policy.map { " of \(seconds($0.holdSeconds))" } ?? "")
        }
        if let version = view.greenVersion { title += " — releasing \(version)" }
        lines.append(title)
        let plan = view.steps.enumerated().map { index, step in index + 1 == view.step ? "[\(step)]" : step }
        lines.append("plan    " + plan.joined(separator: " → "))
        lines.append("split   blue \(bar(view.split)) green   \(view.split.blue)/\(view.split.green)")
        if let route {
            lines.append("")
            lines.append("        " + "req/s".leftPadded(8) + "errors".leftPadded(9) + "p99".leftPadded(10) + "   version, healthy")
            for (name, pool) in [("blue", route.blue), ("green", route.green)] {
                guard let pool else { continue }
                let healthy = "\(pool.instances.filter(\.healthy).count)/\(pool.instances.count)"
                lines.append(name.padding(8) + String(format: "%.1f", pool.requestsPerSecond).leftPadded(8)
                    + String(format: "%.2f%%", pool.errorRate * 100).leftPadded(9) + (pool.p99Milliseconds.map(milliseconds) ?? "-").leftPadded(10)
                    + "   \(pool.version ?? "-"), \(healthy)")
            }
            if let policy = view.policy, let green = route.green {
                lines.append("")
                lines.append("verdict " + evidence(green: green, blue: route.blue, policy: policy))
            }
        }
        if let reason = view.reason {
            lines.append("")
            lines.append("reason  \(reason)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Green's numbers against the limits that would roll it back, over the 10 s window.
    static func evidence(green: PoolView, blue: PoolView, policy: RolloutView.Policy) -> String {
        let window = Int((green.requestsPerSecond * 10).rounded())
        var parts = ["green errors \(String(format: "%.2f%%", green.errorRate * 100)) (limit \(String(format: "%.2f%%", policy.maxErrorRate * 100)))"]
        if let limit = policy.maxP99Milliseconds {
            parts.append("p99 \(green.p99Milliseconds.map(milliseconds) ?? "-") (limit \(milliseconds(limit)))")
        }
        parts.append("blue errors \(String(format: "%.2f%%", blue.errorRate * 100))")
        let judged = window >= policy.minRequests ? "judged on ~\(window) green requests" : "waiting: ~\(window) of \(policy.minRequests) green requests needed"
        return parts.joined(separator: ", ") + "; " + judged
    }

    static func bar(_ split: SplitBody, width: Int = 24) -> String {
        let total = max(1, split.blue + split.green)
        let green = Int((Double(split.green) / Double(total) * Double(width)).rounded())
        return String(repeating: "█", count: width - green) + String(repeating: "▒", count: green)
    }

    static func seconds(_ value: Double) -> String {
        value < 60 ? "\(Int(value.rounded(.down)))s" : "\(Int(value / 60))m\(Int(value.truncatingRemainder(dividingBy: 60)))s"
    }

    static func milliseconds(_ value: Double) -> String {
        value < 10 ? String(format: "%.1fms", value) : "\(Int(value.rounded()))ms"
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
