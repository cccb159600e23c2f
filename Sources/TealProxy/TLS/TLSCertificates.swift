import Foundation
import NIOCore
import NIOSSL
import Synchronization
import TealCore

/// A certificate chain file and its private key file (PEM).
public struct TLSCertificatePair: Sendable, Hashable {
    public var certificatePath: String
    public var keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}

/// A certificate file that cannot be used, and why. Names the file.
public struct TLSCertificateError: Error, Sendable, Hashable, CustomStringConvertible {
    public let path: String
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { "TLS certificate \(path): \(problem)" }
}

/// A loaded, checked certificate: its chain, key and the host names it serves (its subject
/// alternative DNS names, lowercased; `*.example.com` serves one label below example.com).
public struct LoadedCertificate: Sendable {
    public let pair: TLSCertificatePair
    public let names: [String]
    public let chain: [NIOSSLCertificate]
    public let key: NIOSSLPrivateKey
    public let notValidAfter: Date

    /// Reads and checks a pair: both files present and readable, a PEM chain and a PEM key that
    /// belong together, the leaf certificate valid at `now`.
    public static func load(_ pair: TLSCertificatePair, now: Date = Date()) throws(TLSCertificateError) -> LoadedCertificate {
        for path in [pair.certificatePath, pair.keyPath] {
            guard FileManager.default.fileExists(atPath: path) else { throw TLSCertificateError(path: path, problem: "no such file") }
            guard FileManager.default.isReadableFile(atPath: path) else { throw TLSCertificateError(path: path, problem: "not readable (permissions)") }
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(pair.certificatePath)
        } catch {
            throw TLSCertificateError(path: pair.certificatePath, problem: "not a PEM certificate chain (\(error))")
        }
        guard let leaf = chain.first else {
            throw TLSCertificateError(path: pair.certificatePath, problem: "holds no PEM certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: pair.keyPath, format: .pem)
        } catch {
            throw TLSCertificateError(path: pair.keyPath, problem: "not a PEM private key (\(error))")
        }
        let notAfter = Date(timeIntervalSince1970: TimeInterval(leaf.notValidAfter))
        let notBefore = Date(timeIntervalSince1970: TimeInterval(leaf.notValidBefore))
        if notAfter < now {
            throw TLSCertificateError(path: pair.certificatePath, problem: "expired on \(ISO8601DateFormatter().string(from: notAfter))")
        }
        if notBefore > now {
            throw TLSCertificateError(path: pair.certificatePath, problem: "not valid before \(ISO8601DateFormatter().string(from: notBefore))")
        }
        // The TLS library refuses a key that does not belong to the certificate.
        do {
            _ = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                          privateKey: .privateKey(key)))
        } catch {
            throw TLSCertificateError(path: pair.keyPath, problem: "is not the private key of \(pair.certificatePath) (\(error))")
        }
        var names: [String] = []
        for name in leaf._subjectAlternativeNames() where name.nameType == .dnsName {
            names.append(String(decoding: name.contents, as: UTF8.self).lowercased())
        }
        return LoadedCertificate(pair: pair, names: names, chain: chain, key: key, notValidAfter: notAfter)
    }
}

/// The certificates of a TLS listener; the first is the default, served when the client sends no
/// server name or one no certificate names.
public struct TLSCertificateSet: Sendable {
    public let certificates: [LoadedCertificate]

    /// Loads every pair (at least one); the first error stops it.
    public init(_ pairs: [TLSCertificatePair], now: Date = Date()) throws(TLSCertificateError) {
        guard !pairs.isEmpty else { throw TLSCertificateError(path: "-", problem: "a TLS listener needs at least one certificate and key") }
        var loaded: [LoadedCertificate] = []
        for pair in pairs { loaded.append(try LoadedCertificate.load(pair, now: now)) }
        certificates = loaded
    }

    /// The certificate for an SNI server name: one naming it exactly, else one whose wildcard
    /// covers it, else the default.
    public func certificate(for serverName: String?) -> LoadedCertificate {
        guard let serverName = serverName?.lowercased(), !serverName.isEmpty else { return certificates[0] }
        if let exact = certificates.first(where: { $0.names.contains(serverName) }) { return exact }
        if let dot = serverName.firstIndex(of: ".") {
            let wildcard = "*" + serverName[dot...]
            if let match = certificates.first(where: { $0.names.contains(wildcard) }) { return match }
        }
        return certificates[0]
    }
}

/// TLS for one listener: TLS 1.2 and 1.3 with forward-secret AEAD suites only, the certificate
/// chosen per handshake by SNI from a set that `reload` swaps without touching open connections.
public final class TLSTerminator: Sendable {
    /// TLS 1.2 suites (1.3's are fixed by the library and all modern): ECDHE with AES-GCM or
    /// ChaCha20-Poly1305.
    public static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    private final class Current: Sendable {
        let set: Mutex<TLSCertificateSet>
        init(_ set: TLSCertificateSet) { self.set = Mutex(set) }
    }

    private let current: Current
    public let context: NIOSSLContext

    public init(certificates: TLSCertificateSet, applicationProtocols: [String] = ["http/1.1"]) throws {
        let current = Current(certificates)
        let first = certificates.certificates[0]
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: first.chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(first.key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        configuration.cipherSuites = Self.tls12CipherSuites
        configuration.applicationProtocols = applicationProtocols
        configuration.sslContextCallback = { values, promise in
            let chosen = current.set.withLock { $0.certificate(for: values.serverHostname) }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = chosen.chain.map { .certificate($0) }
            override.privateKey = .privateKey(chosen.key)
            promise.succeed(override)
        }
        context = try NIOSSLContext(configuration: configuration)
        self.current = current
    }

    /// The certificates in use.
    public var certificates: TLSCertificateSet { current.set.withLock { $0 } }

    /// Re-reads the certificate files; new handshakes use them, open connections keep theirs.
    /// On an error the running certificates stay.
    public func reload() throws(TLSCertificateError) {
        let pairs = current.set.withLock { $0.certificates.map(\.pair) }
        let fresh = try TLSCertificateSet(pairs)
        current.set.withLock { $0 = fresh }
    }
}

/// The client side of HTTPS to a pool's instances: one verified TLS context per pool setting.
public final class UpstreamTLSClient: Sendable {
    public let settings: UpstreamTLS
    private let context: Result<NIOSSLContext, TLSCertificateError>

    /// Builds the context; a CA file that cannot be used makes every connection fail with that
    /// error (the instances then get no request) rather than connect without verification.
    public init(_ settings: UpstreamTLS) {
        self.settings = settings
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        configuration.applicationProtocols = ["http/1.1"]
        if let ca = settings.caFile { configuration.trustRoots = .file(ca) }
        do {
            context = .success(try NIOSSLContext(configuration: configuration))
        } catch {
            context = .failure(TLSCertificateError(path: settings.caFile ?? "system trust store", problem: "cannot be used to verify instances (\(error))"))
        }
    }

    /// The TLS handler for a connection to `address`: SNI and verification for
    /// `settings.serverName`, else the address's host when it is a name.
    func handler(for address: InstanceAddress) throws -> NIOSSLClientHandler {
        let context = try self.context.get()
        let isIPLiteral = (try? SocketAddress(ipAddress: address.host, port: 0)) != nil
        return try NIOSSLClientHandler(context: context, serverHostname: settings.serverName ?? (isIPLiteral ? nil : address.host))
    }
}
