import Testing

/// Live tests: real sockets on loopback, demo backends and the router on port 0. One parent
/// suite, serialized, so timing-sensitive tests do not compete with each other for the two cores
/// and the test process's few threads (the raw client blocks its thread while it waits).
@Suite("Live", .serialized)
struct LiveTests {}
