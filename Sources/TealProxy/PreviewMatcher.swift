import TealCore

/// Recognises preview requests on raw head bytes: the configured header with the configured
/// value, or the configured cookie with that value. Only routes with preview access pay for it.
public struct PreviewMatcher: Sendable {
    private let header: [UInt8]   // lowercased
    private let value: [UInt8]
    private let cookie: [UInt8]?

    public init(_ access: PreviewAccess) {
        header = Array(access.header.lowercased().utf8)
        value = Array(access.value.utf8)
        cookie = access.cookie.map { Array($0.utf8) }
    }

    /// Whether the head's header section asks for green.
    func matches(_ bytes: UnsafeRawBufferPointer, _ headers: HeaderLines) -> Bool {
        var found = false
        headers.forEach(bytes) { _, name, fieldValue in
            guard !found else { return }
            if HTTPBytes.equalsIgnoringCase(bytes, name, header) {
                found = HTTPBytes.equals(bytes, fieldValue, value)
            } else if let cookie, HTTPBytes.equalsIgnoringCase(bytes, name, "cookie") {
                found = CookieField.value(named: cookie, in: fieldValue, of: bytes).map { HTTPBytes.equals(bytes, $0, value) } ?? false
            }
        }
        return found
    }
}
