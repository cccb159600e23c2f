#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An entry of the release journal: what happened to which route, when, and who asked.
public struct JournalEntry: Sendable, Hashable, Codable {
    public var time: Date
    public var route: String
    public var text: String
    /// Who asked: `api`, `cli`, `alert`, `verdict` (Teal's verdict on traffic, smoke tests or
    /// hooks), `plan` (a step taken as the plan's time passed) or `route-file` (autoStart).
    public var source: String

    public init(time: Date, route: String, text: String, source: String) {
        self.time = time
        self.route = route
        self.text = text
        self.source = source
    }

    /// The source of a requester's name: its first word ("api (curl/8.5)" → "api").
    public static func source(of requester: String) -> String {
        String(requester.prefix { $0 != " " })
    }
}
