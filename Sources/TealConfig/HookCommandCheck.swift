import Foundation

/// Checks, when route files load, that a hook command's program can run, so that a release does
/// not roll back at its first step with `exit status 127`.
///
/// Hooks run as `/bin/sh -c COMMAND` in Teal's working directory with Teal's `PATH`, so the check
/// resolves programs the way that shell will: the command's first word, when it is not a shell
/// keyword or builtin and holds no quoting, expansion or glob the check cannot judge (those
/// commands are left to the shell), must be
///
/// - with a `/`: an executable file, a relative path resolving against the working directory
///   (not the route file's directory: that is where the shell looks);
/// - without: an executable file in one of the `PATH` directories.
///
/// Leading variable assignments (`LEVEL=2 ./scale.sh`) are skipped.
public struct HookCommandCheck: Sendable, Hashable {
    /// The directories searched for a program without `/`, in order (an empty one is the
    /// working directory, as in `PATH`).
    public var searchPath: [String]
    /// The directory hooks run in, which relative paths resolve against.
    public var workingDirectory: String

    public init(searchPath: [String], workingDirectory: String) {
        self.searchPath = searchPath
        self.workingDirectory = workingDirectory
    }

    /// `/bin/sh`'s search path when `PATH` is not set.
    static let defaultSearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The check for hooks run by this process: its `PATH` and working directory.
    public static var current: HookCommandCheck {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? defaultSearchPath
        return HookCommandCheck(searchPath: path.split(separator: ":", omittingEmptySubsequences: false).map(String.init),
                                workingDirectory: FileManager.default.currentDirectoryPath)
    }

    /// What is wrong with `command` (`./scale.sh is not found in the working directory /srv`),
    /// or `nil` when its program resolves or cannot be judged.
    public func problem(with command: String) -> String? {
        guard let program = Self.program(of: command) else { return nil }
        if program.contains("/") {
            let path = URL(fileURLWithPath: program, relativeTo: URL(fileURLWithPath: workingDirectory, isDirectory: true))
                .standardizedFileURL.path
            let place = program.hasPrefix("/") ? "" : " (relative paths resolve against the working directory \(workingDirectory))"
            switch Self.kind(of: path) {
            case .missing: return "\(program) is not found\(place)"
            case .directory: return "\(program) is a directory, not a program\(place)"
            case .notExecutable: return "\(program) is not executable; chmod +x \(path)"
            case .executable: return nil
            }
        }
        var notExecutable: String?
        for directory in searchPath {
            let path = ((directory.isEmpty ? workingDirectory : directory) as NSString).appendingPathComponent(program)
            switch Self.kind(of: path) {
            case .executable: return nil
            case .notExecutable: notExecutable = notExecutable ?? path
            case .missing, .directory: continue
            }
        }
        if let notExecutable { return "\(program) is not executable (\(notExecutable)); chmod +x it or give its path" }
        return "\(program) is not found on PATH (\(searchPath.joined(separator: ":"))); install it or give its path"
    }

    private enum Kind { case missing, directory, notExecutable, executable }

    private static func kind(of path: String) -> Kind {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return .missing }
        if isDirectory.boolValue { return .directory }
        return FileManager.default.isExecutableFile(atPath: path) ? .executable : .notExecutable
    }

    /// Shell keywords and builtins: the shell runs these itself.
    static let shellWords: Set<String> = [
        "!", "{", "}", "[[", "]]", "case", "do", "done", "elif", "else", "esac", "fi", "for", "function", "if", "in",
        "select", "then", "time", "until", "while",
        ":", ".", "[", "alias", "bg", "break", "cd", "command", "continue", "echo", "eval", "exec", "exit", "export",
        "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf", "pwd", "read", "readonly", "return",
        "set", "shift", "source", "test", "times", "trap", "true", "type", "ulimit", "umask", "unalias", "unset", "wait",
    ]

    /// Characters that end a word (blanks and operators).
    private static let wordEnd: Set<Character> = [" ", "\t", "\n", "\r", ";", "&", "|", "<", ">", "(", ")"]
    /// Characters whose meaning depends on the shell's expansion: a word with one is not judged.
    private static let unjudgeable: Set<Character> = ["$", "`", "'", "\"", "\\", "*", "?", "[", "]", "{", "}", "~", "#"]

    /// The program `command` runs: its first word after any `NAME=value` assignments; `nil` for
    /// a keyword, a builtin, a word with quoting or expansion, or a command that starts with an
    /// operator (a subshell, a redirection).
    public static func program(of command: String) -> String? {
        var rest = Substring(command)
        while true {
            rest = rest.drop { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
            let word = rest.prefix { !wordEnd.contains($0) }
            guard !word.isEmpty, !word.contains(where: unjudgeable.contains) else { return nil }
            if let equals = word.firstIndex(of: "="), isName(word[..<equals]) {
                rest = rest.dropFirst(word.count)
                continue
            }
            return shellWords.contains(String(word)) ? nil : String(word)
        }
    }

    private static func isName(_ text: Substring) -> Bool {
        guard let first = text.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }
}
