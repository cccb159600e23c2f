/// What a reload changed, by route name.
public struct ReloadSummary: Sendable, Hashable, Codable {
    public var added: [String] = []
    public var changed: [String] = []
    public var removed: [String] = []
    public var unchanged: [String] = []

    public init() {}
}
