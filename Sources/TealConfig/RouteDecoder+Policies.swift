import TealCore

/// The policy sections of a route file: `rollout`, `preview`, `health` and `upstream`.
extension RouteDecoder {
    /// The release policy; `green` is the route's green pool, which `autoStart` needs.
    /// `hookCheck`, when given, checks that hook commands can run (see `HookCommandCheck`).
    /// `retryOnBlue` gets the section's `retryOnBlue` block, when it has one.
    static func rollout(_ node: ConfigNode, green: PoolSpec?, hookCheck: HookCommandCheck?,
                        retryOnBlue: inout BlueRetryPolicy) throws(ConfigError) -> RolloutPolicy {
        let keys = try node.mapping(keys: ["steps", "hold", "smoke", "rollback", "onNoTraffic", "hooks", "autoStart", "retryOnBlue"])
        let stepsNode = try keys.required("steps", expecting: "a list of splits, e.g. [6/0, 2/4, 0/6]")
        var steps: [PlanStep] = []
        let items = try stepsNode.list(of: "splits like 2/4")
        if items.count > InputLimits.planSteps {
            throw stepsNode.error("\(items.count) steps given; a plan has at most \(InputLimits.planSteps)")
        }
        for item in items {
            steps.append(try step(item))
        }
        guard !steps.isEmpty else { throw stepsNode.error("expected at least one step, e.g. [6/0, 2/4, 0/6]") }
        var policy = RolloutPolicy(steps: steps)
        policy.hold = try keys.optional("hold")?.duration() ?? policy.hold
        for item in try keys.optional("smoke")?.list(of: "smoke requests like {path: /healthz, expect: 200}") ?? [] {
            policy.smoke.append(try smokeRequest(item))
        }
        if let rollbackNode = keys.optional("rollback") { policy.rollback = try rollback(rollbackNode) }
        policy.onNoTraffic = try keys.optional("onNoTraffic").map(noTraffic) ?? policy.onNoTraffic
        if let hooksNode = keys.optional("hooks") { policy.hooks = try hooks(hooksNode, check: hookCheck) }
        if let retryNode = keys.optional("retryOnBlue") { retryOnBlue = try Self.retryOnBlue(retryNode) }
        if let autoStartNode = keys.optional("autoStart") {
            policy.autoStart = try autoStartNode.bool()
            if policy.autoStart {
                try requireGreen(green, at: autoStartNode, "true starts a release when the router starts",
                                 orElse: "set autoStart: false")
            }
        }
        return policy
    }

    /// `wait`, `ignore`, or `{rollback: 5m}`.
    private static func noTraffic(_ node: ConfigNode) throws(ConfigError) -> NoTrafficPolicy {
        let forms = "wait, ignore or {rollback: <duration>}, e.g. {rollback: 5m}"
        guard case .mapping = node.node else {
            switch try node.string(forms) {
            case "wait": return .wait
            case "ignore": return .ignore
            case let text: throw node.error("\"\(text)\" is not a no-traffic policy; expected \(forms)")
            }
        }
        let keys = try node.mapping(keys: ["rollback"])
        return .rollback(after: try keys.required("rollback", expecting: "a duration, e.g. rollback: 5m").duration())
    }

    private static func hooks(_ node: ConfigNode, check: HookCommandCheck?) throws(ConfigError) -> ReleaseHooks {
        let keys = try node.mapping(keys: ["step", "promoted", "rolledBack", "timeout"])
        var hooks = ReleaseHooks()
        func command(_ key: String) throws(ConfigError) -> String? {
            guard let commandNode = keys.optional(key) else { return nil }
            let command = try commandNode.text("a shell command", example: "./notify.sh")
            if let problem = check?.problem(with: command) { throw commandNode.error(problem) }
            return command
        }
        hooks.step = try command("step")
        hooks.promoted = try command("promoted")
        hooks.rolledBack = try command("rolledBack")
        hooks.timeout = try keys.optional("timeout")?.duration() ?? hooks.timeout
        return hooks
    }

    /// `true` or `{}` for the defaults, `false` (or `enabled: false`) for off, or a mapping.
    static func preview(_ node: ConfigNode) throws(ConfigError) -> PreviewAccess? {
        let names = ["header", "value", "cookie", "enabled"]
        guard case .mapping = node.node else {
            return try node.bool("true, false or a mapping with keys \(names.joined(separator: ", "))") ? PreviewAccess() : nil
        }
        let keys = try node.mapping(keys: names)
        var preview = PreviewAccess()
        preview.header = try keys.optional("header")?.token("a header name", example: "X-Teal-Pool") ?? preview.header
        preview.value = try keys.optional("value")?.text("a preview value", example: "green",
                                                         rule: "visible ASCII characters only, no spaces") {
            $0.isASCII && ("!"..."~").contains($0)
        } ?? preview.value
        preview.cookie = try keys.optional("cookie")?.token("a cookie name", example: "teal-pool")
        let enabled = try keys.optional("enabled")?.bool() ?? true
        return enabled ? preview : nil
    }

    /// `{versionCookie: NAME}`, `{keyHeader: NAME}` or `{keyCookie: NAME}`: exactly one.
    static func sticky(_ node: ConfigNode) throws(ConfigError) -> StickySessions {
        let names = ["versionCookie", "keyHeader", "keyCookie"]
        let keys = try node.mapping(keys: names)
        let given = names.filter { keys.optional($0) != nil }
        guard given.count == 1, let key = given.first, let value = keys.optional(key) else {
            throw node.error("give exactly one of versionCookie (e.g. {versionCookie: teal_version}), keyHeader (e.g. {keyHeader: X-User-ID}) "
                             + "or keyCookie (e.g. {keyCookie: session}); found \(given.isEmpty ? "none" : given.joined(separator: " and "))")
        }
        switch key {
        case "versionCookie": return .versionCookie(try value.token("a cookie name", example: "teal_version"))
        case "keyHeader": return .keyHeader(try value.token("a header name", example: "X-User-ID"))
        default: return .keyCookie(try value.token("a cookie name", example: "session"))
        }
    }

    /// `2/4`, or `{split: 2/4, hold: 10s}`, or `{split: 2/4, gate: true}`.
    private static func step(_ node: ConfigNode) throws(ConfigError) -> PlanStep {
        guard case .mapping = node.node else { return PlanStep(split: try node.split()) }
        let keys = try node.mapping(keys: ["split", "hold", "gate"])
        var step = PlanStep(split: try keys.required("split", expecting: "B/G, e.g. split: 2/4").split())
        step.hold = try keys.optional("hold")?.duration()
        step.manualGate = try keys.optional("gate")?.bool() ?? false
        if step.manualGate, step.hold != nil {
            throw node.error("a step has either hold or gate: true, not both; a gate waits for resume or promote")
        }
        return step
    }

    private static func smokeRequest(_ node: ConfigNode) throws(ConfigError) -> SmokeRequest {
        let keys = try node.mapping(keys: ["path", "expect", "method", "bodyContains", "timeout"])
        var request = SmokeRequest(path: try keys.required("path", expecting: "the path to request, e.g. path: /healthz").requestPath())
        request.expect = try keys.optional("expect")?.int(in: 100...599) ?? request.expect
        if let methodNode = keys.optional("method") {
            let method = try methodNode.string("an HTTP method like GET")
            guard !method.isEmpty, method.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
                throw methodNode.error("\"\(method)\" is not an HTTP method; expected an upper-case token like GET or HEAD")
            }
            request.method = method
        }
        request.bodyContains = try keys.optional("bodyContains")?.string("the text the body must contain")
        request.timeout = try keys.optional("timeout")?.duration() ?? request.timeout
        return request
    }

    /// `rollout.retryOnBlue: {enabled: true, on500: false, budget: 20%, maxBody: 65536}` (every key optional).
    static func retryOnBlue(_ node: ConfigNode) throws(ConfigError) -> BlueRetryPolicy {
        let keys = try node.mapping(keys: ["enabled", "on500", "budget", "maxBody"])
        var policy = BlueRetryPolicy()
        policy.enabled = try keys.optional("enabled")?.bool() ?? policy.enabled
        policy.on500 = try keys.optional("on500")?.bool() ?? policy.on500
        policy.budget = try keys.optional("budget")?.rate() ?? policy.budget
        policy.maxBody = try keys.optional("maxBody")?.int(in: 0...(16 << 20)) ?? policy.maxBody
        return policy
    }

    private static func rollback(_ node: ConfigNode) throws(ConfigError) -> RollbackPolicy {
        let keys = try node.mapping(keys: ["maxErrorRate", "minRequests", "maxP99"])
        var policy = RollbackPolicy()
        policy.maxErrorRate = try keys.optional("maxErrorRate")?.rate() ?? policy.maxErrorRate
        policy.minRequests = try keys.optional("minRequests")?.int(in: 1...Int.max) ?? policy.minRequests
        policy.maxP99 = try keys.optional("maxP99")?.duration()
        return policy
    }

    static func health(_ node: ConfigNode) throws(ConfigError) -> HealthCheckSpec {
        let keys = try node.mapping(keys: ["path", "interval", "timeout", "rise", "fall", "ejectAfter",
                                           "ejection", "maxEjection", "enabled"])
        var spec = HealthCheckSpec()
        spec.path = try keys.optional("path")?.requestPath() ?? spec.path
        spec.interval = try keys.optional("interval")?.duration() ?? spec.interval
        spec.timeout = try keys.optional("timeout")?.duration() ?? spec.timeout
        spec.rise = try keys.optional("rise")?.int(in: 1...Int.max) ?? spec.rise
        spec.fall = try keys.optional("fall")?.int(in: 1...Int.max) ?? spec.fall
        spec.ejectAfter = try keys.optional("ejectAfter")?.int(in: 1...Int.max) ?? spec.ejectAfter
        spec.ejection = try keys.optional("ejection")?.duration() ?? spec.ejection
        spec.maxEjection = try keys.optional("maxEjection")?.duration() ?? spec.maxEjection
        spec.enabled = try keys.optional("enabled")?.bool() ?? spec.enabled
        try requireOrder(keys, "timeout", spec.timeout, notAbove: "interval", spec.interval,
                         because: "a probe must finish before the next one starts")
        try requireOrder(keys, "ejection", spec.ejection, notAbove: "maxEjection", spec.maxEjection,
                         because: "ejections grow from ejection up to maxEjection")
        return spec
    }

    static func upstream(_ node: ConfigNode) throws(ConfigError) -> UpstreamSpec {
        let keys = try node.mapping(keys: ["connectTimeout", "responseTimeout", "maxTries"])
        var spec = UpstreamSpec()
        spec.connectTimeout = try keys.optional("connectTimeout")?.duration() ?? spec.connectTimeout
        spec.responseTimeout = try keys.optional("responseTimeout")?.duration() ?? spec.responseTimeout
        spec.maxTries = try keys.optional("maxTries")?.int(in: 1...10) ?? spec.maxTries
        return spec
    }

    /// Checks that the duration at `low` is at most the one at `high` (either may be a default),
    /// and blames whichever of the two keys the file gave.
    private static func requireOrder(_ keys: ConfigMapping, _ low: String, _ lowValue: Duration,
                                     notAbove high: String, _ highValue: Duration,
                                     because reason: String) throws(ConfigError) {
        if lowValue <= highValue { return }
        let owner = keys.owner
        let culprit = keys.optional(low) ?? keys.optional(high) ?? owner
        throw culprit.error(whole: "\(owner.path(of: low)) (\(formatDuration(lowValue))) must not exceed "
            + "\(owner.path(of: high)) (\(formatDuration(highValue))); \(reason)")
    }
}
