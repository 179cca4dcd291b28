// The edgelog command line. Each subcommand lives in its own file; exit codes are in ExitCodes.swift
// and documented in docs/CLI.md.

import ArgumentParser
import EdgelogLinux

@main
struct Edgelog: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgelog",
        abstract: "An integrity-grade data logger: commits every record to a ring on a raw partition or file.",
        discussion: """
            A store is a block device or a file formatted with `edgelog format`. `edgelog ingest` turns \
            JSON lines into committed records and acknowledges each durable commit; `export` prints \
            them back; `inspect` shows the evidence state a technician or an auditor needs.

            Every commit is hash-chained and signed (`keys generate`, `ingest --key-dir`); `verify` \
            gives an auditor a verdict per segment and `head` prints the signed head to keep.

            Exit codes: 0 ok, 1 internal error, 2 not a store, 3 store damaged, 4 ring full, \
            5 newer format, 6 device error, 7 already a store, 8 refused by the anchor, \
            9 key problem, 64 usage error (docs/CLI.md). verify: 0 pass, 1 fail, 2 usage. \
            status: 0 running and OK, 10 not running, 11-14 a condition (F, C, S, M), 15 no answer.
            """,
        version: "0.6.0 (store format 6; reads format 5)",
        subcommands: [RunCommand.self, FormatCommand.self, IngestCommand.self, ExportCommand.self, InspectCommand.self,
                      KeysCommand.self, HeadCommand.self, VerifyCommand.self, BoardCommand.self, StatusCommand.self]
    )

    static func main() {
        main(ProcessArguments.current())
    }
}

/// The command's arguments. The Swift runtime finds argv through `environ` at start-up; a preloaded
/// library that calls setenv first (libfaketime does) leaves CommandLine.arguments empty
/// (swiftlang/swift#76080). The kernel's copy in /proc/self/cmdline is then the fallback.
enum ProcessArguments {
    static func current() -> [String] {
        if !CommandLine.arguments.isEmpty { return Array(CommandLine.arguments.dropFirst()) }
        guard let bytes = try? LocalFile.read("/proc/self/cmdline", limit: 1 << 20).bytes else { return [] }
        var parts = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if parts.last == "" { parts.removeLast() }
        return Array(parts.dropFirst())
    }
}
