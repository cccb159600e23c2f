import Hummingbird
import Testing
@testable import TealAdmin

@Suite("Admin listener limits")
struct AdminLimitsTests {
    @Test("the token comparison counts the whole length difference: the token followed by 256 NULs does not match")
    func tokenWithTrailingNULs() {
        let token = Array("s3cret".utf8)
        #expect(BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals(token, token))
        #expect(!BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals(token + [UInt8](repeating: 0, count: 256), token))
        #expect(!BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals(token + [UInt8](repeating: 0, count: 512), token))
        #expect(!BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals([], token))
        #expect(!BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals(Array("s3creT".utf8), token))
    }

    @Test("at the cap a new connection replaces the longest idle one; busy ones are never replaced")
    func connectionTable() {
        var table = AdminConnectionTable(limit: 3)
        #expect(table.admit(1, now: 10) == .admitted)
        #expect(table.admit(2, now: 20) == .admitted)
        #expect(table.admit(3, now: 30) == .admitted)
        // 1 is the longest idle.
        #expect(table.admit(4, now: 40) == .admittedEvicting(1))
        // 2 is in a request; 3 is now the longest idle.
        table.requestStarted(2)
        #expect(table.admit(5, now: 50) == .admittedEvicting(3))
        // 4 answered at 60, so 5 (idle since 50) goes first.
        table.requestStarted(4)
        table.requestFinished(4, now: 60)
        #expect(table.admit(6, now: 70) == .admittedEvicting(5))
        // Everything busy: a new connection is refused and nothing is replaced.
        table.requestStarted(4)
        table.requestStarted(6)
        #expect(table.admit(7, now: 80) == .refused)
        #expect(table.count == 3)
        table.remove(2)
        #expect(table.admit(8, now: 90) == .admitted)
    }
}
