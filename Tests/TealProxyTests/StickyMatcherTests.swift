import Testing
import TealCore
@testable import TealProxy

@Suite("Sticky matcher")
struct StickyMatcherTests {
    @Test("the version cookie's Set-Cookie line names the cookie; versions a cookie cannot hold are written with _")
    func cookieLine() {
        let matcher = StickyMatcher(.versionCookie("teal_version"), split: Split(blue: 1, green: 1)!, blueVersion: "1.0 beta", greenVersion: nil)
        #expect(String(decoding: matcher.setCookiePrefix, as: UTF8.self) == "Set-Cookie: teal_version=")
        #expect(String(decoding: matcher.value(of: .blue), as: UTF8.self) == "1.0_beta")
        #expect(String(decoding: matcher.value(of: .green), as: UTF8.self) == "green")
    }
}
