// One exit code per kind of outcome a script or a technician must tell apart (docs/CLI.md).

import EdgelogCore
import ArgumentParser
import EdgelogLinux
import EdgelogRuntime
import EdgelogStore

enum Exit {
    static let internalError: Int32 = 1
    static let notAStore: Int32 = 2
    static let damaged: Int32 = 3
    static let ringFull: Int32 = 4
    static let newerFormat: Int32 = 5
    static let deviceError: Int32 = 6
    static let alreadyFormatted: Int32 = 7
    static let anchorRefused: Int32 = 8
    static let keyProblem: Int32 = 9
    static let usage: Int32 = 64
    /// edgelog status: no job runs on the state directory (the store was read, if asked).
    static let notRunning: Int32 = 10
    /// edgelog status: a job holds the socket but gave no usable answer.
    static let noAnswer: Int32 = 15

    /// edgelog status: 0 running and OK, 10 + the NE 107 category's number (11 F, 12 C, 13 S,
    /// 14 M) for the most urgent active condition, 10 not running, 15 no usable answer.
    static func code(for outcome: StatusReport.Outcome) -> Int32 {
        switch outcome {
        case .ok: 0
        case .condition(let category): 10 + Int32(category.rawValue)
        case .notRunning: notRunning
        case .noAnswer: noAnswer
        }
    }

    static func code(for error: StoreError) -> Int32 {
        switch error {
        case .invalidArgument, .recordTooLarge, .sourceTableFull: usage
        case .device, .deviceFailing, .sectorMismatch: deviceError
        case .notAStore, .truncated, .olderFormat: notAStore
        case .newerFormat: newerFormat
        case .alreadyFormatted: alreadyFormatted
        case .ringFull: ringFull
        case .closed: internalError
        case .signing: keyProblem
        case .anchorRefused, .metadataContradictsSeal, .implausibleMetadata, .headUnverified, .headFrameUnverified: anchorRefused
        }
    }

    /// Says what went wrong on stderr and ends the command with the matching code.
    static func fail(_ error: StoreError) -> ExitCode {
        say("error: \(error)")
        return ExitCode(code(for: error))
    }

    static func fail(_ error: DeviceError) -> ExitCode { fail(StoreError.device(error)) }

    static func fail(_ error: TrustError) -> ExitCode {
        say("error: \(error)")
        return ExitCode(code(for: error))
    }

    static func code(for error: TrustError) -> Int32 {
        if case .anchor = error { return anchorRefused }
        return keyProblem
    }

    static func code(for error: JobError) -> Int32 {
        switch error {
        case .store(let e): code(for: e)
        case .device(let e): code(for: StoreError.device(e))
        case .trust(let e): code(for: e)
        case .file, .hardware: deviceError
        case .board, .input: usage
        case .internal: internalError
        }
    }

    /// A job's failure: its message on stderr, its kind as the exit code.
    static func fail(_ error: JobError) -> ExitCode {
        say("error: \(error)")
        return ExitCode(code(for: error))
    }

    /// Messages quote board files, settings and device text: escaped so none can drive the terminal.
    static func say(_ text: String) {
        FDOutput.writeLine(2, "edgelog: " + terminalSafe(text))
    }
}
