import TealConfig
import TealCore
import Testing

/// Every error message `parseRoute` can give, as the exact `file:line: message` a user sees.
/// Each argument is (file text, expected description); files are read as `routes/shop.yaml`.
@Suite struct RouteFileErrorTests {
    @Test(arguments: [
        // YAML syntax
        ("route: shop\nblue:\n  instances: [\"127.0.0.1:9101\"\n",
         "routes/shop.yaml:4: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence)"),
        ("route: shop\n  blue: x\n",
         "routes/shop.yaml:2: invalid YAML: mapping values are not allowed in this context"),
        ("route: shop\nroute: other\n",
         "routes/shop.yaml:1: invalid YAML: key `route` appears more than once in the same mapping"),
        ("route: shop\nmatch: {host: *.example.com}\n",
         "routes/shop.yaml:2: invalid YAML: did not find expected alphabetic or numeric character (while scanning an alias); a value that starts with * must be quoted, e.g. \"*.example.com\""),
        ("route: shop\nmatch:\n  host: *shop\n",
         "routes/shop.yaml:3: invalid YAML: found undefined alias; a value that starts with * must be quoted, e.g. \"*.example.com\""),
        ("# nothing here yet\n",
         "routes/shop.yaml: the file has no route; expected at least `route` and `blue`"),
        // structure
        ("- route: shop\n",
         "routes/shop.yaml: expected a mapping with keys route, match, blue, green, split, rollout, preview, sticky, health, upstream, found a list"),
        (minimalRoute("colour: teal\n"),
         "routes/shop.yaml:4: unknown key `colour`; expected one of route, match, blue, green, split, rollout, preview, sticky, health, upstream"),
        ("[a]: b\n",
         "routes/shop.yaml:1: expected a key name, found a list"),
        ("blue:\n  instances: [\"127.0.0.1:9101\"]\n",
         "routes/shop.yaml: missing key `route`; expected the route's name, e.g. route: shop"),
        ("route: shop\n",
         "routes/shop.yaml: missing key `blue`; expected the running pool, e.g. blue: {instances: [127.0.0.1:9101]}"),
        // route
        ("route: [shop]\nblue: {instances: [\"a:1\"]}\n",
         "routes/shop.yaml:1: route: expected the route's name, found a list"),
        ("route:\nblue: {instances: [\"a:1\"]}\n",
         "routes/shop.yaml:1: route: expected the route's name, found nothing"),
        ("route: my shop\nblue: {instances: [\"a:1\"]}\n",
         "routes/shop.yaml:1: route: \"my shop\" is not a valid route name; use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"),
        ("route: -shop\nblue: {instances: [\"a:1\"]}\n",
         "routes/shop.yaml:1: route: \"-shop\" is not a valid route name; use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"),
    ])
    func structure(yaml: String, expected: String) {
        #expect(parseErrorDescription(yaml) == expected)
    }

    @Test(arguments: [
        ("route: shop\nblue: 127.0.0.1:9101\n",
         "routes/shop.yaml:2: blue: expected a mapping with keys version, instances, tls, dns, resolveEvery, found \"127.0.0.1:9101\""),
        ("route: shop\nblue:\n  instances: [\"127.0.0.1:9101\"]\n  dns: app.svc:8080\n",
         "routes/shop.yaml:4: blue.dns: give either dns or instances, not both"),
        ("route: shop\nblue:\n  dns: app.svc\n",
         "routes/shop.yaml:3: blue.dns: \"app.svc\" is not name:port, e.g. app-green.prod.svc.cluster.local:8080"),
        ("route: shop\nblue:\n  instances: [\"127.0.0.1:9101\"]\n  resolveEvery: 5s\n",
         "routes/shop.yaml:4: blue.resolveEvery: resolveEvery needs dns"),
        ("route: shop\nblue:\n  dns: app.svc:80\n  resolveEvery: 10ms\n",
         "routes/shop.yaml:4: blue.resolveEvery: resolveEvery must be at least 100ms"),
        ("route: shop\nblue:\n  instances: [\"127.0.0.1:9101\"]\n  tls: {ca: /nonexistent/ca.pem}\n",
         "routes/shop.yaml:4: blue.tls.ca: cannot read the CA file /nonexistent/ca.pem"),
        ("route: shop\nblue:\n  instances: [\"127.0.0.1:9101\"]\n  tls: {verify: false}\n",
         "routes/shop.yaml:4: unknown key `verify` in blue.tls; expected one of ca, serverName"),
        ("route: shop\nblue:\n  version: \"1.0\"\n",
         "routes/shop.yaml:2: missing key `instances` in blue; expected a list of host:port, e.g. [127.0.0.1:9101], or dns: name:port"),
        ("route: shop\nblue:\n  instances: {a: 1}\n",
         "routes/shop.yaml:3: blue.instances: expected a list of host:port strings, found a mapping"),
        ("route: shop\nblue:\n  instances:\n",
         "routes/shop.yaml:3: blue.instances: expected a list of host:port strings, found nothing"),
        ("route: shop\nblue:\n  instances: []\n",
         "routes/shop.yaml:3: blue.instances: expected at least one host:port, found an empty list; e.g. [127.0.0.1:9101]"),
        ("route: shop\nblue:\n  instances:\n    - 127.0.0.1:9101\n    - \"127.0.0.1\"\n",
         "routes/shop.yaml:5: blue.instances[1]: \"127.0.0.1\" is not host:port, e.g. 127.0.0.1:9101"),
        ("route: shop\nblue:\n  instances: [[\"a:1\"]]\n",
         "routes/shop.yaml:3: blue.instances[0]: expected a host:port string, found a list"),
        ("route: shop\nblue:\n  instances: [\"127.0.0.1:9101\", \"127.0.0.1:9101\"]\n",
         "routes/shop.yaml:3: blue.instances[1]: 127.0.0.1:9101 is already listed as blue.instances[0]"),
        ("route: shop\nblue:\n  version: [1]\n  instances: [\"a:1\"]\n",
         "routes/shop.yaml:3: blue.version: expected a version string like \"1.4.2\", found a list"),
        ("route: shop\nblue:\n  instances: [\"a:1\"]\n  weight: 3\n",
         "routes/shop.yaml:4: unknown key `weight` in blue; expected one of version, instances, tls, dns, resolveEvery"),
        (minimalRoute("green:\n  instances: [\"127.0.0.1:9201\", \"127.0.0.1:9101\"]\n"),
         "routes/shop.yaml:5: green.instances[1]: 127.0.0.1:9101 is also in blue; an instance belongs to one pool"),
        (minimalRoute("green:\n  instances: [\"127.0.0.1:9201\", \"127.0.0.1:9201\"]\n"),
         "routes/shop.yaml:5: green.instances[1]: 127.0.0.1:9201 is already listed as green.instances[0]"),
        (minimalRoute("green: [\"127.0.0.1:9201\"]\n"),
         "routes/shop.yaml:4: green: expected a mapping with keys version, instances, tls, dns, resolveEvery, found a list"),
    ])
    func pools(yaml: String, expected: String) {
        #expect(parseErrorDescription(yaml) == expected)
    }

    @Test(arguments: [
        (minimalRoute("split: 2-4\n"),
         "routes/shop.yaml:4: split \"2-4\" is not B/G, e.g. 2/4, or a green percentage, e.g. 25%"),
        (minimalRoute("split: 0/0\n"),
         "routes/shop.yaml:4: split \"0/0\" gives neither side weight: at least one side must have weight, e.g. 1/0 or 2/4"),
        (minimalRoute("split: [2, 4]\n"),
         "routes/shop.yaml:4: split: expected a split B/G, e.g. 2/4, found a list"),
        (minimalRoute("split: 2/4\n"),
         "routes/shop.yaml:4: split: 2/4 gives green traffic, but there are no green instances; add green.instances or use 1/0"),
        (minimalRoute("green: {version: \"2\", instances: []}\nsplit: 25%\n"),
         "routes/shop.yaml:5: split: 75/25 gives green traffic, but there are no green instances; add green.instances or use 1/0"),
        (minimalRoute("match:\n  host: shop.*.com\n"),
         "routes/shop.yaml:5: match.host: \"shop.*.com\" is not a host name or wildcard; expected e.g. shop.example.com or *.example.com"),
        (minimalRoute("match:\n  host: [a]\n"),
         "routes/shop.yaml:5: match.host: expected a host name like shop.example.com, found a list"),
        (minimalRoute("match:\n  pathPrefix: api\n"),
         "routes/shop.yaml:5: match.pathPrefix: \"api\" is not a path prefix; expected one that starts with / and has no spaces, ? or #, e.g. /api"),
        (minimalRoute("match:\n  pathPrefix: /api?x=1\n"),
         "routes/shop.yaml:5: match.pathPrefix: \"/api?x=1\" is not a path prefix; expected one that starts with / and has no spaces, ? or #, e.g. /api"),
        (minimalRoute("match:\n  pathPrefix: [\"/\"]\n"),
         "routes/shop.yaml:5: match.pathPrefix: expected a path prefix like /api, found a list"),
        (minimalRoute("match: shop.example.com\n"),
         "routes/shop.yaml:4: match: expected a mapping with keys host, pathPrefix, found \"shop.example.com\""),
        (minimalRoute("match:\n  path: /api\n"),
         "routes/shop.yaml:5: unknown key `path` in match; expected one of host, pathPrefix"),
    ])
    func splitAndMatch(yaml: String, expected: String) {
        #expect(parseErrorDescription(yaml) == expected)
    }

    @Test(arguments: [
        (minimalRoute("rollout: 6/0\n"),
         "routes/shop.yaml:4: rollout: expected a mapping with keys steps, hold, smoke, rollback, onNoTraffic, hooks, autoStart, retryOnBlue, found \"6/0\""),
        (minimalRoute("rollout:\n  hold: 10s\n"),
         "routes/shop.yaml:4: missing key `steps` in rollout; expected a list of splits, e.g. [6/0, 2/4, 0/6]"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  pause: 10s\n"),
         "routes/shop.yaml:6: unknown key `pause` in rollout; expected one of steps, hold, smoke, rollback, onNoTraffic, hooks, autoStart, retryOnBlue"),
        (minimalRoute("rollout:\n  steps: []\n"),
         "routes/shop.yaml:5: rollout.steps: expected at least one step, e.g. [6/0, 2/4, 0/6]"),
        (minimalRoute("rollout:\n  steps: 6/0\n"),
         "routes/shop.yaml:5: rollout.steps: expected a list of splits like 2/4, found \"6/0\""),
        (minimalRoute("rollout:\n  steps:\n    - 6/0\n    - 2-4\n"),
         "routes/shop.yaml:7: rollout.steps[1] \"2-4\" is not B/G, e.g. 2/4, or a green percentage, e.g. 25%"),
        (minimalRoute("rollout:\n  steps:\n    - {split: 150%}\n"),
         "routes/shop.yaml:6: rollout.steps[0].split \"150%\" is above 100%: a green percentage is 0% to 100%, e.g. 25%"),
        (minimalRoute("rollout:\n  steps:\n    - {hold: 10s}\n"),
         "routes/shop.yaml:6: missing key `split` in rollout.steps[0]; expected B/G, e.g. split: 2/4"),
        (minimalRoute("rollout:\n  steps:\n    - {split: 2/4, wait: 10s}\n"),
         "routes/shop.yaml:6: unknown key `wait` in rollout.steps[0]; expected one of split, hold, gate"),
        (minimalRoute("rollout:\n  steps:\n    - {split: 2/4, hold: 10s, gate: true}\n"),
         "routes/shop.yaml:6: rollout.steps[0]: a step has either hold or gate: true, not both; a gate waits for resume or promote"),
        (minimalRoute("rollout:\n  steps:\n    - {split: 2/4, gate: maybe}\n"),
         "routes/shop.yaml:6: rollout.steps[0].gate: expected true or false, found \"maybe\""),
        (minimalRoute("rollout:\n  steps: [1/0]\n  smoke: {path: /healthz}\n"),
         "routes/shop.yaml:6: rollout.smoke: expected a list of smoke requests like {path: /healthz, expect: 200}, found a mapping"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  smoke:\n    - expect: 200\n"),
         "routes/shop.yaml:7: missing key `path` in rollout.smoke[0]; expected the path to request, e.g. path: /healthz"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  smoke:\n    - path: healthz\n"),
         "routes/shop.yaml:7: rollout.smoke[0].path: \"healthz\" is not a request path; expected one that starts with / and has no spaces, e.g. /healthz"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  smoke:\n    - {path: /, expect: 700}\n"),
         "routes/shop.yaml:7: rollout.smoke[0].expect: expected an integer from 100 to 599, found 700"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  smoke:\n    - {path: /, expect: OK}\n"),
         "routes/shop.yaml:7: rollout.smoke[0].expect: expected an integer from 100 to 599, found \"OK\""),
        (minimalRoute("rollout:\n  steps: [1/0]\n  smoke:\n    - {path: /, method: get}\n"),
         "routes/shop.yaml:7: rollout.smoke[0].method: \"get\" is not an HTTP method; expected an upper-case token like GET or HEAD"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  smoke:\n    - {path: /, bodyContains: [ok]}\n"),
         "routes/shop.yaml:7: rollout.smoke[0].bodyContains: expected the text the body must contain, found a list"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  smoke:\n    - {path: /, status: 200}\n"),
         "routes/shop.yaml:7: unknown key `status` in rollout.smoke[0]; expected one of path, expect, method, bodyContains, timeout"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  rollback: {maxErrorRate: 150%}\n"),
         "routes/shop.yaml:6: rollout.rollback.maxErrorRate: \"150%\" is not a rate; expected a percentage from 0% to 100% (e.g. 5%) or a fraction from 0 to 1 (e.g. 0.05)"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  rollback: {maxErrorRate: -1%}\n"),
         "routes/shop.yaml:6: rollout.rollback.maxErrorRate: \"-1%\" is not a rate; expected a percentage from 0% to 100% (e.g. 5%) or a fraction from 0 to 1 (e.g. 0.05)"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  rollback: {maxErrorRate: 5}\n"),
         "routes/shop.yaml:6: rollout.rollback.maxErrorRate: \"5\" is not a rate; expected a percentage from 0% to 100% (e.g. 5%) or a fraction from 0 to 1 (e.g. 0.05)"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  rollback: {maxErrorRate: five}\n"),
         "routes/shop.yaml:6: rollout.rollback.maxErrorRate: \"five\" is not a rate; expected a percentage from 0% to 100% (e.g. 5%) or a fraction from 0 to 1 (e.g. 0.05)"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  rollback: {maxErrorRate: [5%]}\n"),
         "routes/shop.yaml:6: rollout.rollback.maxErrorRate: expected a rate like 5% or 0.05, found a list"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  rollback: {minRequests: 0}\n"),
         "routes/shop.yaml:6: rollout.rollback.minRequests: expected an integer >= 1, found 0"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  rollback: {maxP99: 800}\n"),
         "routes/shop.yaml:6: rollout.rollback.maxP99: 800 has no unit; add one, e.g. 800s or 800ms"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  rollback:\n    maxErrors: 5\n"),
         "routes/shop.yaml:7: unknown key `maxErrors` in rollout.rollback; expected one of maxErrorRate, minRequests, maxP99"),
    ])
    func rollout(yaml: String, expected: String) {
        #expect(parseErrorDescription(yaml) == expected)
    }

    @Test(arguments: [
        (minimalRoute("rollout:\n  steps: [1/0]\n  hold: 30\n"),
         "routes/shop.yaml:6: rollout.hold: 30 has no unit; add one, e.g. 30s or 30ms"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hold: 1.5\n"),
         "routes/shop.yaml:6: rollout.hold: 1.5 has no unit; add one, e.g. 1.5s or 1.5ms"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hold: soon\n"),
         "routes/shop.yaml:6: rollout.hold: \"soon\" is not a duration; expected a number and a unit (ms, s, m or h), e.g. 250ms or 30s"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hold: 10 s\n"),
         "routes/shop.yaml:6: rollout.hold: \"10 s\" is not a duration; expected a number and a unit (ms, s, m or h), e.g. 250ms or 30s"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hold: -5s\n"),
         "routes/shop.yaml:6: rollout.hold: \"-5s\" is not a duration; expected a number and a unit (ms, s, m or h), e.g. 250ms or 30s"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hold: 0s\n"),
         "routes/shop.yaml:6: rollout.hold: expected a duration greater than 0, found 0s"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hold: {s: 1}\n"),
         "routes/shop.yaml:6: rollout.hold: expected a duration like 30s, found a mapping"),
        (minimalRoute("health: /healthz\n"),
         "routes/shop.yaml:4: health: expected a mapping with keys path, interval, timeout, rise, fall, ejectAfter, ejection, maxEjection, enabled, found \"/healthz\""),
        (minimalRoute("health:\n  path: healthz\n"),
         "routes/shop.yaml:5: health.path: \"healthz\" is not a request path; expected one that starts with / and has no spaces, e.g. /healthz"),
        (minimalRoute("health:\n  interval: 500ms\n"),
         "routes/shop.yaml:5: health.timeout (1s) must not exceed health.interval (500ms); a probe must finish before the next one starts"),
        (minimalRoute("health:\n  interval: 5s\n  timeout: 1m\n"),
         "routes/shop.yaml:6: health.timeout (1m) must not exceed health.interval (5s); a probe must finish before the next one starts"),
        (minimalRoute("health:\n  maxEjection: 5s\n"),
         "routes/shop.yaml:5: health.ejection (10s) must not exceed health.maxEjection (5s); ejections grow from ejection up to maxEjection"),
        (minimalRoute("health:\n  rise: 0\n"),
         "routes/shop.yaml:5: health.rise: expected an integer >= 1, found 0"),
        (minimalRoute("health:\n  fall: 2.5\n"),
         "routes/shop.yaml:5: health.fall: expected an integer >= 1, found 2.5"),
        (minimalRoute("health:\n  ejectAfter: many\n"),
         "routes/shop.yaml:5: health.ejectAfter: expected an integer >= 1, found \"many\""),
        (minimalRoute("health:\n  enabled: sometimes\n"),
         "routes/shop.yaml:5: health.enabled: expected true or false, found \"sometimes\""),
        (minimalRoute("health:\n  ejection: 1d\n"),
         "routes/shop.yaml:5: health.ejection: \"1d\" is not a duration; expected a number and a unit (ms, s, m or h), e.g. 250ms or 30s"),
        (minimalRoute("health:\n  retries: 3\n"),
         "routes/shop.yaml:5: unknown key `retries` in health; expected one of path, interval, timeout, rise, fall, ejectAfter, ejection, maxEjection, enabled"),
        (minimalRoute("upstream:\n  maxTries: 11\n"),
         "routes/shop.yaml:5: upstream.maxTries: expected an integer from 1 to 10, found 11"),
        (minimalRoute("upstream:\n  connectTimeout: 2\n"),
         "routes/shop.yaml:5: upstream.connectTimeout: 2 has no unit; add one, e.g. 2s or 2ms"),
        (minimalRoute("upstream:\n  responseTimeout: 0ms\n"),
         "routes/shop.yaml:5: upstream.responseTimeout: expected a duration greater than 0, found 0ms"),
        (minimalRoute("upstream:\n  retries: 2\n"),
         "routes/shop.yaml:5: unknown key `retries` in upstream; expected one of connectTimeout, responseTimeout, maxTries"),
        (minimalRoute("upstream: 30s\n"),
         "routes/shop.yaml:4: upstream: expected a mapping with keys connectTimeout, responseTimeout, maxTries, found \"30s\""),
    ])
    func durationsHealthAndUpstream(yaml: String, expected: String) {
        #expect(parseErrorDescription(yaml) == expected)
    }

    @Test(arguments: [
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic: stop\n"),
         "routes/shop.yaml:6: rollout.onNoTraffic: \"stop\" is not a no-traffic policy; expected wait, ignore or {rollback: <duration>}, e.g. {rollback: 5m}"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic: Wait\n"),
         "routes/shop.yaml:6: rollout.onNoTraffic: \"Wait\" is not a no-traffic policy; expected wait, ignore or {rollback: <duration>}, e.g. {rollback: 5m}"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic: true\n"),
         "routes/shop.yaml:6: rollout.onNoTraffic: \"true\" is not a no-traffic policy; expected wait, ignore or {rollback: <duration>}, e.g. {rollback: 5m}"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic: [wait]\n"),
         "routes/shop.yaml:6: rollout.onNoTraffic: expected wait, ignore or {rollback: <duration>}, e.g. {rollback: 5m}, found a list"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic: {}\n"),
         "routes/shop.yaml:6: missing key `rollback` in rollout.onNoTraffic; expected a duration, e.g. rollback: 5m"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic:\n    rollback:\n"),
         "routes/shop.yaml:7: rollout.onNoTraffic.rollback: expected a duration like 30s, found nothing"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic: {rollback: 0s}\n"),
         "routes/shop.yaml:6: rollout.onNoTraffic.rollback: expected a duration greater than 0, found 0s"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic: {rollback: 30}\n"),
         "routes/shop.yaml:6: rollout.onNoTraffic.rollback: 30 has no unit; add one, e.g. 30s or 30ms"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  onNoTraffic:\n    wait: 5m\n"),
         "routes/shop.yaml:7: unknown key `wait` in rollout.onNoTraffic; expected one of rollback"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hooks: ./notify.sh\n"),
         "routes/shop.yaml:6: rollout.hooks: expected a mapping with keys step, promoted, rolledBack, timeout, found \"./notify.sh\""),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hooks:\n    step: \"\"\n"),
         "routes/shop.yaml:7: rollout.hooks.step: expected a shell command like ./notify.sh, found \"\""),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hooks:\n    promoted: \"  \"\n"),
         "routes/shop.yaml:7: rollout.hooks.promoted: expected a shell command like ./notify.sh, found \"  \""),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hooks:\n    rolledBack: [./page.sh, --now]\n"),
         "routes/shop.yaml:7: rollout.hooks.rolledBack: expected a shell command like ./notify.sh, found a list"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hooks:\n    timeout: 0s\n"),
         "routes/shop.yaml:7: rollout.hooks.timeout: expected a duration greater than 0, found 0s"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hooks:\n    timeout: 60\n"),
         "routes/shop.yaml:7: rollout.hooks.timeout: 60 has no unit; add one, e.g. 60s or 60ms"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  hooks:\n    started: ./notify.sh\n"),
         "routes/shop.yaml:7: unknown key `started` in rollout.hooks; expected one of step, promoted, rolledBack, timeout"),
        (minimalRoute("rollout:\n  steps: [1/0]\n  autoStart: maybe\n"),
         "routes/shop.yaml:6: rollout.autoStart: expected true or false, found \"maybe\""),
        (minimalRoute("rollout:\n  steps: [1/0]\n  autoStart: true\n"),
         "routes/shop.yaml:6: rollout.autoStart: true starts a release when the router starts, but there are no green instances; add green.instances or set autoStart: false"),
        (minimalRoute("green: {version: \"2\"}\nrollout:\n  steps: [1/0]\n  autoStart: yes\n"),
         "routes/shop.yaml:7: rollout.autoStart: true starts a release when the router starts, but there are no green instances; add green.instances or set autoStart: false"),
    ])
    func releaseOptions(yaml: String, expected: String) {
        #expect(parseErrorDescription(yaml) == expected)
    }

    @Test(arguments: [
        (minimalRoute("preview: green\n"),
         "routes/shop.yaml:4: preview: expected true, false or a mapping with keys header, value, cookie, enabled, found \"green\""),
        (minimalRoute("preview: [X-Teal-Pool]\n"),
         "routes/shop.yaml:4: preview: expected true, false or a mapping with keys header, value, cookie, enabled, found a list"),
        (minimalRoute("preview:\n  secret: s3cret\n"),
         "routes/shop.yaml:5: unknown key `secret` in preview; expected one of header, value, cookie, enabled"),
        (minimalRoute("preview: true\n"),
         "routes/shop.yaml:4: preview: sends preview requests to green, but there is no green pool; add green or remove preview"),
        (minimalRoute("preview:\n  cookie: teal-pool\n"),
         "routes/shop.yaml:4: preview: sends preview requests to green, but there is no green pool; add green or remove preview"),
        (minimalRoute("preview:\n  header: X Pool\n"),
         "routes/shop.yaml:5: preview.header: \"X Pool\" is not a header name; expected letters, digits and !#$%&'*+-.^_`|~ only, e.g. X-Teal-Pool"),
        (minimalRoute("preview:\n  header: \"X-Teal:Pool\"\n"),
         "routes/shop.yaml:5: preview.header: \"X-Teal:Pool\" is not a header name; expected letters, digits and !#$%&'*+-.^_`|~ only, e.g. X-Teal-Pool"),
        (minimalRoute("preview:\n  header: X-Tëal\n"),
         "routes/shop.yaml:5: preview.header: \"X-Tëal\" is not a header name; expected letters, digits and !#$%&'*+-.^_`|~ only, e.g. X-Teal-Pool"),
        (minimalRoute("preview:\n  header: \"\"\n"),
         "routes/shop.yaml:5: preview.header: expected a header name like X-Teal-Pool, found \"\""),
        (minimalRoute("preview:\n  header: {name: X-Teal-Pool}\n"),
         "routes/shop.yaml:5: preview.header: expected a header name like X-Teal-Pool, found a mapping"),
        (minimalRoute("preview:\n  value: \"\"\n"),
         "routes/shop.yaml:5: preview.value: expected a preview value like green, found \"\""),
        (minimalRoute("preview:\n  value: let me in\n"),
         "routes/shop.yaml:5: preview.value: \"let me in\" is not a preview value; expected visible ASCII characters only, no spaces, e.g. green"),
        (minimalRoute("preview:\n  value: \"tab\\there\"\n"),
         "routes/shop.yaml:5: preview.value: \"tab\there\" is not a preview value; expected visible ASCII characters only, no spaces, e.g. green"),
        (minimalRoute("preview:\n  value: grün\n"),
         "routes/shop.yaml:5: preview.value: \"grün\" is not a preview value; expected visible ASCII characters only, no spaces, e.g. green"),
        (minimalRoute("preview:\n  cookie: teal=pool\n"),
         "routes/shop.yaml:5: preview.cookie: \"teal=pool\" is not a cookie name; expected letters, digits and !#$%&'*+-.^_`|~ only, e.g. teal-pool"),
        (minimalRoute("preview:\n  cookie: \"teal; pool\"\n"),
         "routes/shop.yaml:5: preview.cookie: \"teal; pool\" is not a cookie name; expected letters, digits and !#$%&'*+-.^_`|~ only, e.g. teal-pool"),
        (minimalRoute("preview:\n  enabled: sometimes\n"),
         "routes/shop.yaml:5: preview.enabled: expected true or false, found \"sometimes\""),
    ])
    func preview(yaml: String, expected: String) {
        #expect(parseErrorDescription(yaml) == expected)
    }

    @Test func errorsCarryFileLineAndKey() throws {
        let yaml = minimalRoute("rollout:\n  steps: [1/0]\n  rollback:\n    maxErrorRate: 120%\n")
        let error = try #require(throws: ConfigError.self) {
            try RouteFileLoader.parseRoute(yaml: yaml, file: "routes/shop.yaml")
        }
        #expect(error.file == "routes/shop.yaml")
        #expect(error.line == 7)
        #expect(error.key == "rollout.rollback.maxErrorRate")
        #expect(error.message.hasPrefix("rollout.rollback.maxErrorRate: \"120%\" is not a rate"))
    }

    @Test func descriptionOmitsAMissingLine() {
        #expect(ConfigError(file: "routes/a.yaml", message: "m").description == "routes/a.yaml: m")
        #expect(ConfigError(file: "routes/a.yaml", line: 7, key: "split", message: "m").description == "routes/a.yaml:7: m")
    }
}
