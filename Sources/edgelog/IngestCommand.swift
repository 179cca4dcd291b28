import ArgumentParser
import EdgelogCore
import EdgelogLinux
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
    }

    func run() throws {
        try IngestJob(device: device, source: source, ringFull: ringFull, maxAgeMs: maxAgeMs, blockMs: blockMs,
                      keyDir: keyDir, anchor: anchor, anchorInterval: anchorInterval,
                      time: IngestJob.timeConfig(stepThresholdMs: stepThresholdMs, untrustedErrorMs: untrustedErrorMs,
                                                 stateIntervalS: timeStateInterval)).run()
    }
}

/// The writer's main loop, shared by `ingest` and `run`: open (recover, compare with the anchor),
/// commit JSON lines from stdin with acknowledgements, close cleanly on EOF or a signal.
struct IngestJob {
    var device: String
    var source: String
    var ringFull: RingFullPolicy
    var maxAgeMs: Int
    var blockMs: Int
    var keyDir: String?
    var anchor: String?
    var anchorInterval: Int
    var time: TimebaseConfig

    static func timeConfig(stepThresholdMs: Int, untrustedErrorMs: Int, stateIntervalS: Int) -> TimebaseConfig {
        var config = defaultTimeConfig()
        config.stepThresholdNs = Int64(stepThresholdMs) * 1_000_000
        config.untrustedMaxErrorUs = Int64(untrustedErrorMs) * 1000
        config.stateIntervalNs = Int64(stateIntervalS) * 1_000_000_000
        return config
    }

    /// The time path's default bounds, and this executable's date as the earliest believable one.
    static func defaultTimeConfig() -> TimebaseConfig {
        var config = TimebaseConfig()
        config.notBeforeWallNs = LinuxTimeSource.executableTimeNs()
        return config
    }

    func run() throws {
        StopSignal.install()
        let target: FileBlockDevice
        do { target = try FileBlockDevice(path: device) } catch { throw Exit.fail(error) }
        let session: WriterSession
        do { session = try WriterSession.start(keyDir: keyDir, anchorPath: anchor, anchorIntervalSeconds: anchorInterval) } catch { throw Exit.fail(error) }
        let store: EvidenceStore
        let analysis: StoreAnalysis
        let bootID = LinuxTimeSource.bootID()
        do {
            (store, analysis) = try session.open(target, policy: ringFull, bootID: bootID, time: time)
            if analysis.needsRepair { Exit.say("recovered: " + RecoverySummary.text(analysis)) }
        } catch {
            throw Exit.fail(error)
        }
        // A restart in the same kernel boot compares the clocks with the last writer's capture.
        let sameBoot = bootID != nil && analysis.state.bootID == bootID && store.metadata.time.lastOffsetNs != 0
        let timebase = Timebase(source: LinuxTimeSource(), config: time, stats: store.metadata.time,
                                resumeOffsetNs: sameBoot ? store.metadata.time.lastOffsetNs : nil)
        // Said once per start, never per record: the boot record has rtc_offset_ns null.
        if timebase.stats.rtcState == .absent { Exit.say("note: no RTC on this system (/sys/class/rtc/rtc0): rtc_offset is not recorded") }
        session.writeAnchor(after: nil, device: target, force: true)

        let source = self.source
        let pipeline = CommitPipeline(
            store: store,
            options: .init(maxAgeNs: Int64(maxAgeMs) * 1_000_000, blockNs: Int64(blockMs) * 1_000_000)
        ) { receipt in
            session.writeAnchor(after: receipt, device: nil, force: false)
            let mine = receipt.range(of: source)
            let seqs = mine.map { "\"first_seq\":\($0.firstSeq),\"last_seq\":\($0.lastSeq)" } ?? "\"first_seq\":null,\"last_seq\":null"
            FDOutput.writeLine(1, "{\"commit_id\":\(receipt.commitID),\"records\":\(mine?.count ?? 0),\(seqs)}")
        }

        var lineNumber = 0
        var rejected = 0
        var accepted = 0
        var stopError: StoreError?
        /// Time records go in before the record they explain; a refusal stops the writer.
        func appendTime(_ records: [TimeRecord]) {
            for record in records {
                let result = record.payload.withUnsafeBytes {
                    pipeline.append(source: SourceName.time, type: record.type, payload: $0, time: record.time)
                }
                if case .refused(let error) = result { stopError = error }
            }
            if !records.isEmpty { pipeline.noteTime(timebase.stats) }
        }
        appendTime(timebase.start(bootID: bootID ?? [UInt8](repeating: 0, count: 16), bootSeq: store.metadata.bootSeq,
                                  unexpectedReset: analysis.uncleanShutdown, monoResume: store.metadata.monoHWM))
        var before: [TimeRecord] = []
        let input = LineInput(fd: 0)
        do {
            try input.forEach(shouldStop: { StopSignal.isRaised || stopError != nil }) { line in
                guard stopError == nil else { return }
                lineNumber += 1
                switch line {
                case .tooLong(let n):
                    rejected += 1
                    Exit.say("line \(lineNumber): rejected: \(n) bytes is longer than any record can be")
                case .line(let bytes):
                    let object: Range<Int>
                    do { object = try JSONObjectValidator.validate(bytes) } catch {
                        rejected += 1
                        Exit.say("line \(lineNumber): rejected: not a JSON object: \(error)")
                        return
                    }
                    if let at = JSONObjectValidator.controlCharacter(in: UnsafeRawBufferPointer(rebasing: bytes[object])) {
                        rejected += 1
                        Exit.say("line \(lineNumber): rejected: control character (tab, carriage return or other) at byte \(object.lowerBound + at + 1): use spaces between JSON tokens and escapes inside strings")
                        return
                    }
                    let time = timebase.capture(before: &before)
                    if !before.isEmpty {
                        appendTime(before)
                        before.removeAll(keepingCapacity: true)
                    }
                    switch pipeline.append(source: source, payload: UnsafeRawBufferPointer(rebasing: bytes[object]), time: time) {
                    case .accepted, .dropped:
                        accepted += 1
                        if accepted & 255 == 0 { pipeline.noteTime(timebase.stats) }
                    case .refused(.recordTooLarge(let size, let capacity)):
                        rejected += 1
                        Exit.say("line \(lineNumber): rejected: record of \(size) bytes exceeds the segment's \(capacity)")
                    case .refused(let error):
                        stopError = error
                    }
                }
            }
        } catch {
            Exit.say("error: \(error)")
        }
        var closeError: StoreError?
        pipeline.noteTime(timebase.stats)
        do { try pipeline.close() } catch { closeError = error }
        session.writeAnchor(after: nil, device: target, force: true)
        let counters = pipeline.counters
        let failure = stopError ?? closeError
        let stopped = StopSignal.isRaised ? " (stopped by signal)" : ""
        Exit.say("ingest\(stopped): \(lineNumber) lines, \(accepted) records accepted, \(rejected) rejected, \(counters.dropped) dropped, \(counters.commits) commits"
            + (session.anchorFailures > 0 ? ", \(session.anchorFailures) anchor file updates failed" : ""))
        if let failure { throw Exit.fail(failure) }
    }
}

enum RecoverySummary {
    static func text(_ a: StoreAnalysis) -> String {
        var parts: [String] = []
        if a.uncleanShutdown { parts.append("last shutdown was not clean") }
        if !a.adopted.isEmpty {
            parts.append("adopted \(a.adopted.count) segment(s) whose metadata write was cut (read by hash and chain; a writer that signs "
                + "adopts only segments its own key signed, and edgelog verify checks the signatures)")
        }
        if let torn = a.torn {
            parts.append("segment \(torn.segmentID) in slot \(torn.slot) was torn (\(torn.reason)): \(torn.readableCount) record(s) readable, none kept (never sealed), \(torn.quarantinedBytes) byte(s) quarantined")
        }
        for (slot, problem) in a.slotProblems { parts.append("metadata slot \(Layout.slotName(slot)) was invalid (\(problem)) and is rewritten") }
        if !a.passedOver.isEmpty { parts.append("metadata slot \(a.passedOver.map(Layout.slotName).joined(separator: ",")) passed over: its newest segment did not check") }
        if !a.tailLost.isEmpty { parts.append("tail segment(s) \(a.tailLost.map(String.init).joined(separator: ",")) lost to an interrupted reclaim") }
        if a.headMissing { parts.append("neither metadata slot's newest segment checks: no signed state vouches for the metadata, and a writer that signs refuses this store") }
        return parts.isEmpty ? "nothing to do" : parts.joined(separator: "; ")
    }
}
