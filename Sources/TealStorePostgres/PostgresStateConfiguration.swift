import Foundation
import NIOSSL
import PostgresNIO

/// Where a `PostgresStateStore` keeps its state, read from a URL of the form
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=MODE&sslrootcert=FILE]`
/// (`postgresql://` too).
///
/// - `USER`: required. `PASSWORD`: optional (else `password`, e.g. from `--state-password-file`).
///   Both percent-decoded.
/// - `HOST`: a name, an IPv4 address or a bracketed IPv6 address. `PORT`: default 5432.
/// - `DATABASE`: default the user name (as libpq does).
/// - `sslmode`: `disable` (default: no TLS), `require` (TLS, certificate not checked),
///   `verify-ca` (TLS, certificate chain checked, not the name), `verify-full` (TLS, chain and host
///   name checked). Checked chains end at `sslrootcert` (a PEM file) or else the system trust store.
///
/// Any other query parameter is refused rather than ignored.
public struct PostgresStateConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// How the connection to the database is protected.
    public enum TLSMode: String, Sendable, Hashable {
        case disable
        case require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var database: String
    public var username: String
    public var password: String?
    public var tls: TLSMode
    /// PEM file of the certificates a checked chain must end at (`sslrootcert`); `nil`: the
    /// system trust store.
    public var rootCertificatePath: String?
    /// How long connecting (TCP, TLS, authentication) may take.
    public var connectTimeout: Duration = .seconds(10)
    /// How long one store call (a read, a write's transaction) may wait for the database,
    /// including for a connection, before it fails.
    public var operationTimeout: Duration = .seconds(10)

    public init(host: String, port: Int = 5432, database: String, username: String, password: String? = nil,
                tls: TLSMode = .disable, rootCertificatePath: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
        self.tls = tls
        self.rootCertificatePath = rootCertificatePath
    }

    /// Whether `state` (a `--state` value) names a PostgreSQL database rather than a file.
    public static func isDatabaseURL(_ state: String) -> Bool {
        let lowered = state.lowercased()
        return lowered.hasPrefix("postgres://") || lowered.hasPrefix("postgresql://")
    }

    /// Reads a `postgres://` URL (see the type's documentation). Errors name the problem; they
    /// never repeat a password.
    public init(url text: String) throws(PostgresURLError) {
        guard Self.isDatabaseURL(text) else { throw PostgresURLError("it does not start with postgres:// or postgresql://") }
        guard let components = URLComponents(string: text) else {
            throw PostgresURLError("it is not a valid URL (characters such as @, : or / in a user name or password must be percent-encoded)")
        }
        guard let user = components.percentEncodedUser.flatMap({ $0.removingPercentEncoding }), !user.isEmpty else {
            throw PostgresURLError("it names no user (postgres://USER@HOST:PORT/DATABASE)")
        }
        guard var host = components.percentEncodedHost, !host.isEmpty else {
            throw PostgresURLError("it names no host (postgres://USER@HOST:PORT/DATABASE)")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if let port = components.port, !(1...65535).contains(port) { throw PostgresURLError("port \(port) is not from 1 to 65535") }
        var database = components.percentEncodedPath
        if database.hasPrefix("/") { database.removeFirst() }
        guard !database.contains("/") else { throw PostgresURLError("the database name \"\(database)\" has a / in it") }
        database = database.removingPercentEncoding ?? database
        self.init(host: host, port: components.port ?? 5432, database: database.isEmpty ? user : database, username: user,
                  password: components.percentEncodedPassword.flatMap { $0.removingPercentEncoding })
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let mode = TLSMode(rawValue: item.value ?? "") else {
                    throw PostgresURLError("sslmode=\(item.value ?? "") is not one of disable, require, verify-ca, verify-full")
                }
                tls = mode
            case "sslrootcert":
                guard let path = item.value, !path.isEmpty else { throw PostgresURLError("sslrootcert= names no file") }
                rootCertificatePath = path
            default:
                throw PostgresURLError("the parameter \(item.name) is not known (known: sslmode, sslrootcert)")
            }
        }
        if rootCertificatePath != nil && (tls == .disable || tls == .require) {
            throw PostgresURLError("sslrootcert= needs sslmode=verify-ca or sslmode=verify-full")
        }
    }

    /// The database as `postgres://USER@HOST:PORT/DATABASE`, without the password: for messages.
    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "postgres://\(username)@\(shownHost):\(port)/\(database)"
    }

    /// swift-nio-ssl's settings for `tls` (`nil`: no TLS).
    func tlsConfiguration() -> TLSConfiguration? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch tls {
        case .disable: return nil
        case .require: configuration.certificateVerification = .none
        case .verifyCA: configuration.certificateVerification = .noHostnameVerification
        case .verifyFull: configuration.certificateVerification = .fullVerification
        }
        if let rootCertificatePath { configuration.trustRoots = .file(rootCertificatePath) }
        return configuration
    }

    /// The pooled client's configuration.
    func clientConfiguration() -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password, database: database,
                                                         tls: tlsConfiguration().map { .require($0) } ?? .disable)
        configuration.options.connectTimeout = connectTimeout
        configuration.options.maximumConnections = 4
        configuration.options.additionalStartupParameters = Self.startupParameters
        return configuration
    }

    /// One connection's configuration (migrations at start-up). Throws when the TLS settings
    /// cannot be made (an unreadable `sslrootcert`).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var tlsSetting = PostgresConnection.Configuration.TLS.disable
        if let tlsConfiguration = tlsConfiguration() {
            tlsSetting = .require(try NIOSSLContext(configuration: tlsConfiguration))
        }
        var configuration = PostgresConnection.Configuration(host: host, port: port, username: username, password: password,
                                                             database: database, tls: tlsSetting)
        configuration.options.connectTimeout = .init(connectTimeout)
        configuration.options.additionalStartupParameters = Self.startupParameters
        return configuration
    }

    /// A commit returns once it is durable, whatever the server's default says; the application
    /// name shows Teal's sessions in `pg_stat_activity`.
    static let startupParameters = [("synchronous_commit", "on"), ("application_name", "teal")]
}

/// A `--state` URL that cannot be used, and why.
public struct PostgresURLError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "the state URL cannot be used: \(reason)" }
}
