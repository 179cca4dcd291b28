import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogStore

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

            Example: sensor-reader | edgelog ingest --device var/store.img --source bme280
            """
    )

    @Option(help: "Store device or file.")
    var device: String

    @Option(help: "Source name for the records (A-Z a-z 0-9 . _ -, at most 39).")
    var source = "stdin"

    @Option(name: .customLong("ring-full"), help: "When every segment is used: pause, overwrite-acked or overwrite-oldest.")
    var ringFull: RingFullPolicy = .pause

    @Option(help: "Commit a buffer whose oldest record is this old (milliseconds).")
    var maxAgeMs: Int = 1000

    @Option(help: "How long input waits for a free buffer before records are dropped (milliseconds).")
    var blockMs: Int = 2000

    func validate() throws {
        do { try SourceName.validate(source) } catch { throw ValidationError("--source: \(error)") }
        guard maxAgeMs >= 1, blockMs >= 0 else { throw ValidationError("--max-age-ms must be at least 1 and --block-ms not negative") }
    }

    func run() throws {
        StopSignal.install()
        let target: FileBlockDevice
        do { target = try FileBlockDevice(path: device) } catch { throw Exit.fail(error) }
        let store: EvidenceStore
        do {
            let (opened, analysis) = try EvidenceStore.open(device: target, policy: ringFull, clock: SystemClock.now)
            store = opened
            if analysis.needsRepair { Exit.say("recovered: " + RecoverySummary.text(analysis)) }
        } catch {
            throw Exit.fail(error)
        }

        let source = self.source
        let pipeline = CommitPipeline(
            store: store,
            options: .init(maxAgeNs: Int64(maxAgeMs) * 1_000_000, blockNs: Int64(blockMs) * 1_000_000)
        ) { receipt in
            let mine = receipt.range(of: source)
            let seqs = mine.map { "\"first_seq\":\($0.firstSeq),\"last_seq\":\($0.lastSeq)" } ?? "\"first_seq\":null,\"last_seq\":null"
            FDOutput.writeLine(1, "{\"commit_id\":\(receipt.commitID),\"records\":\(mine?.count ?? 0),\(seqs)}")
        }

        var lineNumber = 0
        var rejected = 0
        var stopError: StoreError?
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
                    switch pipeline.append(source: source, payload: UnsafeRawBufferPointer(rebasing: bytes[object]), time: SystemClock.now()) {
                    case .accepted, .dropped:
                        break
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
        do { try pipeline.close() } catch { closeError = error }
        let counters = pipeline.counters
        let failure = stopError ?? closeError
        let stopped = StopSignal.isRaised ? " (stopped by signal)" : ""
        Exit.say("ingest\(stopped): \(lineNumber) lines, \(counters.accepted) records accepted, \(rejected) rejected, \(counters.dropped) dropped, \(counters.commits) commits")
        if let failure { throw Exit.fail(failure) }
    }
}

enum RecoverySummary {
    static func text(_ a: StoreAnalysis) -> String {
        var parts: [String] = []
        if a.uncleanShutdown { parts.append("last shutdown was not clean") }
        if !a.adopted.isEmpty { parts.append("adopted \(a.adopted.count) segment(s) whose metadata write was cut") }
        if let torn = a.torn {
            parts.append("segment \(torn.segmentID) in slot \(torn.slot) was torn (\(torn.reason)): \(torn.salvagedCount) record(s) salvaged, \(torn.quarantinedBytes) byte(s) quarantined")
        }
        if !a.passedOver.isEmpty { parts.append("metadata slot \(a.passedOver.map(Layout.slotName).joined(separator: ",")) passed over: its newest segment did not check") }
        if !a.tailLost.isEmpty { parts.append("tail segment(s) \(a.tailLost.map(String.init).joined(separator: ",")) lost to an interrupted reclaim") }
        if a.headMissing { parts.append("neither metadata slot's newest segment could be read") }
        return parts.isEmpty ? "nothing to do" : parts.joined(separator: "; ")
    }
}
