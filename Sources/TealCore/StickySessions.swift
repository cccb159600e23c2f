/// Version-sticky sessions (route file `sticky`, opt-in): a user stays on one version while it
/// has weight in the split, so a page and the scripts and API calls it makes come from the same
/// version. The split then applies to sessions (or keys), not to requests. A rollback or a
/// promotion moves everyone, whatever their cookie or key says.
public enum StickySessions: Hashable, Sendable {
    /// A cookie of this name names the version that served the client; Teal sets it on the
    /// first answer (and whenever it no longer names a version with weight), and later requests
    /// carrying it go to that version.
    case versionCookie(String)
    /// The value of this request header (a user id, say), hashed over the split's weights: the
    /// same value lands on the same version on every replica, with no shared state.
    case keyHeader(String)
    /// The same, with the value of this cookie.
    case keyCookie(String)
}

/// The version a sticky key lands on. The key's hash places it at a point in [0, 1); it goes to
/// green when that point is below green's share of the split. So as green's share grows, the
/// keys already on green stay there and more join, and as it shrinks the reverse.
public enum StickyKey {
    /// FNV-1a, 64 bits: stable across processes and machines (Swift's `Hasher` is seeded per process).
    @inline(__always)
    public static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        // FNV's low bits mix poorly for short keys: finish with a 64-bit mixer (splitmix64's).
        hash ^= hash >> 30
        hash = hash &* 0xbf58_476d_1ce4_e5b9
        hash ^= hash >> 27
        hash = hash &* 0x94d0_49bb_1331_11eb
        return hash ^ (hash >> 31)
    }

    /// The colour a key with `hash` gets under `split`.
    @inline(__always)
    public static func color(hash: UInt64, split: Split) -> PoolColor {
        let total = UInt64(split.blue + split.green)
        guard total > 0, split.green > 0 else { return .blue }
        // hash / 2^64 < green / total, without floating point: compare the high 32 bits scaled.
        return (hash >> 32) &* total < UInt64(split.green) << 32 ? .green : .blue
    }
}
