import Foundation

/// Test certificates made with the openssl command at test time, in a fresh directory: a CA
/// (`ca.pem`), leaves signed by it for `default.test`, `shop.test` and `*.api.test` (P-256, two
/// days), and `expired.test`, valid only in January 2020. Each leaf is `NAME.pem` + `NAME.key`.
public struct TestCertificates: Sendable {
    public let directory: URL

    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("teal-certs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Self.run(Self.script, in: directory)
    }

    public func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    /// `--cert NAME.pem --key NAME.key` for each name, in order (the first is the default).
    public func arguments(_ names: [String]) -> [String] {
        names.flatMap { ["--cert", path("\($0).pem"), "--key", path("\($0).key")] }
    }

    /// Issues a new certificate for `leaf` (same names, new key and serial) into `NAME.pem`/`.key`.
    public func reissue(_ leaf: String, commonName: String, san: String) throws {
        try Self.run(Self.functions + "leaf \(leaf) '\(commonName)' '\(san)'\n", in: directory)
    }

    public func remove() { try? FileManager.default.removeItem(at: directory) }

    static let functions = """
        set -e
        key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
        leaf() {
          key "$1.key"
          openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
          printf 'subjectAltName=%s\\n' "$3" > "$1.ext"
          openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
        }

        """

    static let script = functions + """
        key ca.key
        openssl req -x509 -new -key ca.key -out ca.pem -subj "/CN=Teal Test CA" -days 2 2>/dev/null
        leaf default default.test DNS:default.test
        leaf shop shop.test DNS:shop.test
        leaf api '*.api.test' 'DNS:*.api.test'
        mkdir -p ca-db && : > ca-db/index.txt && echo 1000 > ca-db/serial
        cat > ca.cnf <<'CNF'
        [ca]
        default_ca = test
        [test]
        database = ca-db/index.txt
        new_certs_dir = ca-db
        serial = ca-db/serial
        default_md = sha256
        policy = any
        copy_extensions = copy
        [any]
        commonName = supplied
        CNF
        key expired.key
        openssl req -new -key expired.key -out expired.csr -subj "/CN=expired.test" 2>/dev/null
        openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \\
          -startdate 20200101000000Z -enddate 20200201000000Z -notext 2>/dev/null

        """

    static func run(_ script: String, in directory: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.currentDirectoryURL = directory
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TealProcess.Failure("making test certificates failed (\(process.terminationStatus)): \(String(decoding: text, as: UTF8.self))")
        }
    }
}

/// Reads a pipe to its end on a Dispatch thread: a blocking read on a task would hold one of the
/// few cooperative threads (two on a two-core machine) for as long as the process runs, and two
/// such reads starve every other task of the test.
public func readToEnd(_ pipe: Pipe) async -> Data {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: pipe.fileHandleForReading.readDataToEndOfFile()) }
    }
}

/// Runs curl (the system's) with `arguments`; its exit status, standard output and standard error.
public func curl(_ arguments: [String], timeout: Duration = .seconds(20)) async throws -> (status: Int32, output: String, error: String) {
    try await TealProcess.runProcess(["/usr/bin/env", "curl", "--max-time", "10"] + arguments, mergeErrors: false, timeout: timeout)
}
