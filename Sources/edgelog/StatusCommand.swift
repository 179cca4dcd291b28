import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogRuntime

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the state of the logger running on a state directory: conditions, what to do, LED codes. Never writes.",
        discussion: """
            Asks the job on --state-dir's socket (edgelog.sock) for its state: each active condition \
            with its NE 107 category (F failure, C function check, S out of specification, M \
            maintenance required), what it means, what to do and its LED code (docs/LEDS.md); the \
            power path, the store, the sources, the time and the LEDs. When no job answers, --board \
            names the store to read instead (read-only; numbers no seal vouches for are labelled).

            Exit codes: 0 running, OK; 11 to 14 running with a condition (11 failure, 12 function \
            check, 13 out of specification, 14 maintenance required: the most urgent one); 10 not \
            running; 15 a job holds the socket but gave no usable answer; 2, 5, 6 reading the store \
            failed; 64 usage error (docs/CLI.md).

            Example: edgelog status --state-dir /var/lib/edgelog --board /etc/edgelog/board.yaml
            """
    )

    @Option(help: "The job's state directory (as given to run).")
    var stateDir = "/var/lib/edgelog"

    @Option(help: "Board file: read its store when no job answers.")
    var board: String?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let report: StatusReport
        do throws(JobError) { report = try StatusReport.make(stateDir: stateDir, boardPath: board, json: json) } catch {
            throw Exit.fail(error)
        }
        for warning in report.warnings { Exit.say("warning: \(warning)") }
        print(report.output)
        let code = Exit.code(for: report.outcome)
        if code != 0 { throw ExitCode(code) }
    }
}
