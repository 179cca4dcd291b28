import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogRuntime
import EdgelogSeal
import EdgelogStore
import EdgelogTimebase

extension RingFullPolicy: ExpressibleByArgument {}

struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Commit JSON lines from standard input as records; acknowledge each durable commit.",
        discussion: """
            Each input line must be one JSON object; it becomes a record with the source name, a \
            per-source seq, the store-wide mono_ctr and the capture times. After each durable commit \
            one line is printed on stdout:
              {"commit_id":N,"records":M,"first_seq":A,"last_seq":B}
            Only what an acknowledgement names is guaranteed to survive a power cut. Lines that are \
            not JSON objects are reported on stderr with their line number and skipped. On end of \
            input, SIGINT or SIGTERM, what is buffered is committed and the store closed cleanly.

            SIGPWR (sent by UPS daemons) runs the safe-commit window: input is frozen (later lines are \
            refused and counted), what is buffered is committed with a brownout record and the store \
            marked clean, then nothing more is written until the power status file says "O" and stays \
            so for --resume-after-ms (docs/DESIGN.md section 12).

            Every commit is hash-chained and signed with the key in --key-dir (make one with \
            `edgelog keys generate --out DIR`); without a key, ingest refuses to start unless \
            --unsigned is given, and the store then says "unsigned" in inspect and verify. With \
            --anchor, the signed head is mirrored to that file (at start, every --anchor-interval \
            seconds and at the end), and a store older than the anchor, or forked from it, is refused \
            (exit 8).

            Example: sensor-reader | edgelog ingest --device var/store.img --source bme280 --key-dir /etc/edgelog/keys
            """
    )

    @Option(help: "Store device or file.")
    var device: String

    @Option(help: "Source name for the records (A-Z a-z 0-9 . _ -, starting with a letter or digit, at most 39).")
    var source = "stdin"

    @Option(name: .customLong("ring-full"), help: "When every segment is used: pause, overwrite-acked or overwrite-oldest.")
    var ringFull: RingFullPolicy = .pause

    @Option(help: "Commit a buffer whose oldest record is this old (milliseconds).")
    var maxAgeMs: Int = 1000

    @Option(help: "How long input waits for a free buffer before records are dropped (milliseconds).")
    var blockMs: Int = 2000

    @Option(help: "Key directory to sign with (from `edgelog keys generate`).")
    var keyDir: String?

    @Flag(help: "Write without signatures (hash chain only). The store says so in inspect and verify.")
    var unsigned = false

    @Option(help: "Anchor file: the signed head, kept outside the store (docs/FORMAT.md section 8).")
    var anchor: String?

    @Option(help: "Seconds between anchor file updates while committing.")
    var anchorInterval: Int = 10

    @Option(help: "A change of wall minus boot time larger than this is a clock step, recorded as such (milliseconds).")
    var stepThresholdMs: Int = 100

    @Option(help: "Unsynchronized with the kernel's maximum error above this, wall time is flagged untrusted (milliseconds).")
    var untrustedErrorMs: Int = 1000

    @Option(help: "Seconds between periodic time_state records (sync state, drift, RTC offset).")
    var timeStateInterval: Int = 600

    @Option(help: "Where SIGPWR's meaning is read: \"F\" (failing) or \"L\" (low battery) freeze and commit, \"O\" ends a hold.")
    var powerStatusFile = "/run/powerstatus"

    @Option(help: "After a power-fail hold, power must stay good this long before input is taken again (milliseconds).")
    var resumeAfterMs = 2000

    func validate() throws {
        guard stepThresholdMs >= 1, untrustedErrorMs >= 0, timeStateInterval >= 1 else {
            throw ValidationError("--step-threshold-ms and --time-state-interval must be at least 1, --untrusted-error-ms not negative")
        }
        guard (keyDir != nil) != unsigned else {
            throw ValidationError(unsigned ? "--unsigned and --key-dir exclude each other"
                : "ingest signs every commit: give --key-dir DIR (make one with `edgelog keys generate --out DIR`) or --unsigned")
        }
        guard anchorInterval >= 1 else { throw ValidationError("--anchor-interval must be at least 1 second") }
        do { try SourceName.validate(source) } catch { throw ValidationError("--source: \(error)") }
        guard maxAgeMs >= 1, blockMs >= 0 else { throw ValidationError("--max-age-ms must be at least 1 and --block-ms not negative") }
        guard (0...3_600_000).contains(resumeAfterMs) else { throw ValidationError("--resume-after-ms must be 0 to 3600000") }
    }

    func run() throws {
        var settings = WriterSettings(device: device)
        settings.ringFull = ringFull
        settings.maxAgeMs = maxAgeMs
        settings.blockMs = blockMs
        settings.keyDir = keyDir
        settings.anchor = anchor
        settings.anchorInterval = anchorInterval
        settings.time = WriterJob.timeConfig(stepThresholdMs: stepThresholdMs, untrustedErrorMs: untrustedErrorMs, stateIntervalS: timeStateInterval)
        var power = PowerFailSpec(holdUpMs: 0)
        power.powerStatusFile = powerStatusFile
        power.resumeAfterMs = resumeAfterMs
        try IngestJob(settings: settings, source: source, power: power).run()
    }
}

/// `ingest` and `run` without a board: the writer job fed from standard input, one source,
/// an acknowledgement line on stdout per durable commit.
struct IngestJob {
    var settings: WriterSettings
    var source: String
    var power: PowerFailSpec

    func run() throws {
        StopSignal.install()
        // Before anything else: SIGPWR's default action would end the process.
        let sigpwr = SignalPowerInput(statusFile: power.powerStatusFile)
        var settings = self.settings
        PowerService.prepare(&settings, spec: power, budgeted: false)
        let source = self.source
        let job: WriterJob
        do {
            job = try WriterJob(settings: settings, say: { Exit.say($0) }) { receipt in
                let mine = receipt.range(of: source)
                let seqs = mine.map { "\"first_seq\":\($0.firstSeq),\"last_seq\":\($0.lastSeq)" } ?? "\"first_seq\":null,\"last_seq\":null"
                FDOutput.writeLine(1, "{\"commit_id\":\(receipt.commitID),\"records\":\(mine?.count ?? 0),\(seqs)}")
            }
        } catch {
            throw Exit.fail(error)
        }
        var events = PowerPath.Events()
        events.window = { r in
            Exit.say("power fail (\(r.trigger.rawValue)): input frozen, \(r.window.committedRecords) record(s) committed and the store marked clean \(r.edgeToCleanNs / 1000) us after the signal; holding")
        }
        events.resumed = { ns in Exit.say("power good again: input taken again after holding \(ns / 1_000_000) ms") }
        events.failed = { error in Exit.say("error: the safe commit failed: \(error)") }
        let powerService = PowerService(job: job, spec: power, budgeted: false, segmentBytes: 0, logger: Logs.logger(), events: events,
                                        sigpwr: sigpwr)
        powerService.start()
        let (summary, inputError) = job.feedLines(fd: 0, source: source)
        powerService.stop()
        if let inputError { Exit.say("error: \(inputError)") }
        var failure: JobError?
        var counters = job.pipeline.counters
        do { counters = try job.close() } catch { failure = error }
        let stopped = StopSignal.isRaised ? " (stopped by signal)" : ""
        Exit.say("ingest\(stopped): \(summary.lines) lines, \(summary.accepted) records accepted, \(summary.rejected) rejected, \(counters.dropped) dropped, \(counters.commits) commits"
            + (counters.refused > 0 ? ", \(counters.refused) refused while frozen for a power failure" : "")
            + (job.session.anchorFailures > 0 ? ", \(job.session.anchorFailures) anchor file updates failed" : ""))
        if let failure { throw Exit.fail(failure) }
    }
}
