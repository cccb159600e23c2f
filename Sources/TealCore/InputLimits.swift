/// Caps on the size of what operators, route files and API requests may give, so that no input
/// can make a plan, a pool or the journal grow without bound. Each limit is far above what a
/// real release needs; inputs over one are refused with an error that names the limit.
public enum InputLimits {
    /// Steps of one release plan.
    public static let planSteps = 100
    /// Instances of one pool.
    public static let poolInstances = 1000
    /// Characters of a version string.
    public static let versionLength = 128
    /// Characters of an alert's name or route label.
    public static let alertNameLength = 256
}
