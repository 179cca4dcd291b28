// The writer's life, shared by `ingest`, `run` and `run --board` (and the tests): open the store
// (recover, compare with the anchor and the key directory), start the time path and write its boot
// record, feed the commit pipeline (from standard input, or from the board's sources through the
// ingress engine), then commit what is buffered and close the store cleanly.

import EdgelogCore
import EdgelogLinux
import EdgelogSeal
import EdgelogStore
import EdgelogTimebase

/// Why a job could not run or stopped; the CLI maps each to its exit code.
public enum JobError: Error, CustomStringConvertible {
    case store(StoreError)
    case device(DeviceError)
    case trust(TrustError)
    case file(FileError)
    case board(BoardError)
    /// A device the job needs at start is held by someone else or refused (a serial line in use).
    case hardware(String)
    /// A mistake in what the person asked for (settings, arguments).
    case input(String)
    /// Something that should not happen (the service group failed for another reason).
    case `internal`(String)

    public var description: String {
        switch self {
        case .store(let e): e.description
        case .device(let e): e.description
        case .trust(let e): e.description
        case .file(let e): e.description
        case .board(let e): e.description
        case .hardware(let why): why
        case .input(let why): why
        case .internal(let why): why
        }
    }
}

public struct WriterSettings: Sendable {
    public var device: String
    public var ringFull: RingFullPolicy = .pause
    public var maxAgeMs = 1000
    public var blockMs = 2000
    public var keyDir: String?
    public var anchor: String?
    public var anchorInterval = 10
    public var time: TimebaseConfig = WriterJob.defaultTimeConfig()
    /// Samples of the commit cost to take before logging starts (the hold-up budget); 0: none.
    public var commitCostSamples = 0
    /// Starts to read back from the newest segments after an unclean stop (the brownout-loop
    /// check); 0: none.
    public var bootHistory = 0

    public init(device: String) { self.device = device }
}

/// What opening found: read before the committer thread exists.
public struct OpenedFacts: Sendable {
    public var uncleanShutdown: Bool
    public var needsRecovery: Bool
    public var recoverySummary: String
    public var headSegmentID: UInt64
    public var recordsTotal: UInt64
    public var boEvent: UInt32
    public var unexpRst: UInt32
    public var bootSeq: UInt32
    public var bootID: [UInt8]
    public var monoHWM: UInt64
    public var time: TimeStats
}

public final class WriterJob: @unchecked Sendable {
    public let settings: WriterSettings
    public let store: PackedEvidenceStore
    public let session: WriterSession
    public let timebase: Timebase
    public let pipeline: any RecordPipeline
    /// Measured before the pipeline started (settings.commitCostSamples).
    public private(set) var commitCost: (flushNs: [Int64], segmentNs: [Int64]) = ([], [])
    /// The previous starts, newest first (settings.bootHistory), read before this start's records.
    public private(set) var previousBoots: [BootEntry] = []
    /// The capture time of this start's boot record.
    public private(set) var startTime: CaptureTime?
    /// The store as opened (after recovery), read before the committer thread exists: the store
    /// itself belongs to the committing thread from then on.
    public let opened: OpenedFacts
    let target: FileBlockDevice
    let say: @Sendable (String) -> Void
    /// Set by the first refusal of the store: nothing is appended after it.
    var stopError: StoreError?

    public static func timeConfig(stepThresholdMs: Int, untrustedErrorMs: Int, stateIntervalS: Int) -> TimebaseConfig {
        var config = defaultTimeConfig()
        config.stepThresholdNs = Int64(stepThresholdMs) * 1_000_000
        config.untrustedMaxErrorUs = Int64(untrustedErrorMs) * 1000
        config.stateIntervalNs = Int64(stateIntervalS) * 1_000_000_000
        return config
    }

    /// The time path's default bounds, and this executable's date as the earliest believable one.
    public static func defaultTimeConfig() -> TimebaseConfig {
        var config = TimebaseConfig()
        config.notBeforeWallNs = LinuxTimeSource.executableTimeNs()
        return config
    }

    /// Opens the store for writing and writes the boot record. `onCommit` runs on the committer
    /// thread after each durable commit (acknowledgements); `say` takes news for a person.
    public init(settings: WriterSettings, say: @escaping @Sendable (String) -> Void,
                onCommit: @escaping @Sendable (CommitReceipt) -> Void = { _ in }) throws(JobError) {
        self.settings = settings
        self.say = say
        do { target = try FileBlockDevice(path: settings.device) } catch { throw .device(error) }
        do { session = try WriterSession.start(keyDir: settings.keyDir, anchorPath: settings.anchor, anchorIntervalSeconds: settings.anchorInterval, warn: say) } catch {
            throw .trust(error)
        }
        let bootID = LinuxTimeSource.bootID()
        // A format 5 store is refused by name (StoreError.olderFormat): it stays readable by
        // export, inspect and verify, but this writer appends only format 6 (DESIGN.md 13).
        do {
            let six = try session.openPacked(target, policy: settings.ringFull, bootID: bootID, time: settings.time)
            store = six
            session.noteHead(six.headSeal)
            let r = six.recovery, m = six.metadata
            opened = OpenedFacts(uncleanShutdown: !r.cleanBefore, needsRecovery: six.history.needsRecovery, recoverySummary: six.history.recoverySummary,
                                 headSegmentID: m.headSegmentID, recordsTotal: m.state.recordsTotal, boEvent: m.state.boEvent,
                                 unexpRst: m.unexpRst, bootSeq: m.bootSeq, bootID: six.history.metadata.bootID, monoHWM: m.state.monoHWM, time: m.time)
        } catch { throw .store(error) }
        if opened.needsRecovery { say("recovered: " + opened.recoverySummary) }
        // A restart in the same kernel boot compares the clocks with the last writer's capture.
        let sameBoot = bootID != nil && opened.bootID == bootID && opened.time.lastOffsetNs != 0
        timebase = Timebase(source: LinuxTimeSource(), config: settings.time, stats: opened.time,
                            resumeOffsetNs: sameBoot ? opened.time.lastOffsetNs : nil)
        // Said once per start, never per record: the boot record has rtc_offset_ns null.
        if timebase.stats.rtcState == .absent { say("note: no RTC on this system (/sys/class/rtc/rtc0): rtc_offset is not recorded") }
        session.writeAnchor(after: nil, force: true)
        // Before the committer thread exists: the store is single-threaded.
        // Only an unclean start can be part of a brownout loop: a clean one reads nothing.
        if settings.bootHistory > 0 && opened.uncleanShutdown {
            previousBoots = store.recentBoots(maxSegments: 64, maxBoots: settings.bootHistory)
        }
        if settings.commitCostSamples > 0 {
            do {
                commitCost = try store.measureCommitCost(samples: settings.commitCostSamples, clock: Monitor.monotonicNs)
            } catch {
                throw .store(error)
            }
        }
        let session = self.session
        let options = Pipeline.Options(maxAgeNs: Int64(settings.maxAgeMs) * 1_000_000, blockNs: Int64(settings.blockMs) * 1_000_000)
        let acknowledge: @Sendable (CommitReceipt) -> Void = { receipt in
            session.writeAnchor(after: receipt, force: false)
            onCommit(receipt)
        }
        pipeline = CommitPipeline(store: store, options: options, onCommit: acknowledge)
        let startRecords = timebase.start(bootID: bootID ?? [UInt8](repeating: 0, count: 16), bootSeq: opened.bootSeq,
                                          unexpectedReset: opened.uncleanShutdown, monoResume: opened.monoHWM)
        startTime = startRecords.first?.time
        appendTime(startRecords)
    }

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

    /// Commits what is buffered, closes the store cleanly and mirrors the last head to the anchor.
    /// Returns the pipeline's counters; throws the first refusal or close failure.
    @discardableResult
    public func close(after failure: StoreError? = nil) throws(JobError) -> Pipeline.Counters {
        var closeError: StoreError?
        do { try pipeline.close() } catch { closeError = error }
        // After a safe-commit window nothing more is written (power may be going): the anchor
        // keeps the head it had, which a later start compares and moves on from.
        if pipeline.powerState != .holding { session.writeAnchor(after: nil, force: true) }
        if let error = failure ?? stopError ?? closeError { throw .store(error) }
        return pipeline.counters
    }
}
