// `edgelog run --board FILE`: the main job. Opens (or on first run creates) the store the board
// names, builds its sources, and runs two services under swift-service-lifecycle until SIGINT or
// SIGTERM: the ingress service (sources -> queue -> pipeline, then a clean close) and the status
// service (a live line on a terminal, structured log lines otherwise).

import Dispatch
import EdgelogCore
import EdgelogHAL
import EdgelogIngress
import EdgelogLinux
import EdgelogStore
import Logging
import ServiceLifecycle
import Synchronization

public struct BoardRunOptions: Sendable {
    /// Relative store, key and anchor paths of the board resolve against this directory.
    public var stateDir: String
    /// Show the live status line (when stderr is a terminal).
    public var statusLine: Bool
    /// Stop on its own after this many seconds (tests, benchmarks); nil: until a signal.
    public var durationS: Double?
    /// Hears every durable commit (on the committing thread): acknowledgements.
    public var onCommit: (@Sendable (CommitReceipt) -> Void)?
    public init(stateDir: String, statusLine: Bool, durationS: Double? = nil) {
        self.stateDir = stateDir
        self.statusLine = statusLine
        self.durationS = durationS
    }
}

/// What a finished run reports.
public struct BoardRunSummary: Sendable {
    /// Every record appended: readings, ingress evidence and time records.
    public var records: UInt64
    public var commits: UInt64
    public var dropped: UInt64
    public var sources: [Scheduler.SourceStatus]
    public var latenessP50Ns: Int64
    public var latenessP99Ns: Int64
    /// Safe-commit windows run, oldest first; records refused while frozen or holding.
    public var powerWindows: [PowerWindowReport] = []
    public var refused: UInt64 = 0
}

public enum BoardJob {
    public static func settings(for board: Board, stateDir: String) -> WriterSettings {
        func resolved(_ path: String) -> String { path.hasPrefix("/") ? path : stateDir + "/" + path }
        var settings = WriterSettings(device: resolved(board.store.path))
        settings.ringFull = board.store.ringFull
        settings.maxAgeMs = board.store.maxAgeMs
        settings.blockMs = board.store.blockMs
        settings.keyDir = board.store.keyDir.map(resolved)
        settings.anchor = board.store.anchor.map(resolved)
        settings.anchorInterval = board.store.anchorInterval
        return settings
    }

    public static func run(board: Board, options: BoardRunOptions, logger: Logger) async throws(JobError) -> BoardRunSummary {
        // First of all, the status socket: it is also the guard against a second job on this
        // state directory, and it answers ("starting") while the store opens and recovers.
        let statusBoard = StatusBoard(board: board.name)
        statusBoard.update { $0.phase = .starting }
        let socket: StatusSocketService
        do { socket = try StatusSocketService.open(stateDir: options.stateDir, board: statusBoard, logger: logger) } catch { throw error.jobError }
        var colours: [LEDRole: LEDColour] = [:]
        for spec in board.leds {
            if let role = LEDRole(rawValue: spec.role), let colour = spec.colour.flatMap(LEDColour.init(rawValue:)) { colours[role] = colour }
        }
        let (ledEntries, ledProblems) = StatusLEDs.open(board.leds, colours: colours)
        for problem in ledProblems { logger.warning("\(problem)") }
        let leds = LEDDriver(leds: ledEntries, board: statusBoard, log: { logger.warning("\($0)") })
        leds.start()
        do {
            let summary = try await runJob(board: board, options: options, logger: logger, statusBoard: statusBoard, socket: socket)
            leds.stop(leaving: .off)
            socket.close()
            return summary
        } catch {
            leds.stop(leaving: .failed)
            socket.close()
            throw error
        }
    }

    static func runJob(board: Board, options: BoardRunOptions, logger: Logger, statusBoard: StatusBoard,
                       socket: StatusSocketService) async throws(JobError) -> BoardRunSummary {
        var settings = settings(for: board, stateDir: options.stateDir)
        let powerSpec = PowerService.spec(for: board, stateDir: options.stateDir)
        PowerService.prepare(&settings, spec: powerSpec, budgeted: board.powerFail != nil)
        // First: SIGPWR's default action would end the process; one that comes while the store
        // opens is kept and acted on once the power path exists.
        let sigpwr = powerSpec.sigpwr ? SignalPowerInput(statusFile: powerSpec.powerStatusFile) : nil
        guard settings.keyDir != nil || board.store.unsigned else {
            throw .input("the board names no key directory: set store.key_dir (make one with `edgelog keys generate --out DIR`) or store.unsigned: true")
        }
        // The key is checked before anything is created: a board without its key writes nothing.
        if let keyDir = settings.keyDir {
            do { _ = try KeyDirectory(path: keyDir).readInfo() } catch { throw .trust(error) }
        }
        try StoreFile.createIfMissing(path: settings.device, size: board.store.size, segmentSize: board.store.segmentSize) {
            logger.notice("\($0)")
        }
        let built: BuiltSources
        do { built = try BoardSources.build(board) } catch { throw .board(error) }
        do { try built.claimSerialPorts() } catch { throw .hardware("\(error)") }

        let status = JobStatus()
        let ack = options.onCommit
        let job = try WriterJob(settings: settings, say: { logger.notice("\($0)") }) { receipt in
            status.committed(receipt.commitID)
            ack?(receipt)
            // From the receipt only: a window's commit and the one before it may be acknowledged
            // on two threads at once, and the store belongs to the thread that commits.
            statusBoard.update {
                $0.store?.headSegmentID = receipt.segmentID
                $0.store?.recordsTotal = receipt.recordsTotal
            }
        }
        let queue = IngressQueue(timebase: job.timebase)
        let engine = IngressEngine(pipeline: job.pipeline, queue: queue, onFailure: { error in
            logger.error("the store stopped accepting records: \(error)")
            statusBoard.set(.storageFault, active: true, detail: "\(error)")
        }, onOversized: { source, error in
            logger.error("a reading was not committed: \(error)", metadata: ["source": "\(source)"])
        })
        engine.scheduler.onEvent = { source, event, detail in
            logger.log(level: event == .sourceRecovered ? .notice : .warning, "\(event.name): \(detail)", metadata: ["source": "\(source)"])
        }
        let meta = job.opened
        statusBoard.update {
            $0.boEvent = meta.boEvent
            $0.unexpRst = meta.unexpRst
            $0.store = StoreFacts(path: settings.device, headSegmentID: meta.headSegmentID, recordsTotal: meta.recordsTotal, clean: false)
            $0.power = .running
        }
        let holdUpMs = board.powerFail?.holdUpMs
        var powerEvents = PowerPath.Events()
        powerEvents.window = { report in
            let w = report.window
            statusBoard.set(.powerFailHold, active: true, detail: "\(report.trigger.rawValue) \(report.input): committed and marked clean; holding")
            statusBoard.update {
                $0.power = .holding
                $0.boEvent = w.boEvent
                $0.store?.clean = true
                $0.lastSafeCommit = SafeCommitWindow(trigger: report.trigger.rawValue, input: report.input,
                                                     edgeToFreezeUs: report.edgeToFreezeNs / 1000, edgeToCleanUs: report.edgeToCleanNs / 1000,
                                                     committedRecords: w.committedRecords, commits: w.commits,
                                                     withinBudget: holdUpMs.map { report.edgeToCleanNs <= Int64($0) * 1_000_000 })
                $0.lastSafeCommitMonoNs = report.detectedNs
            }
            logger.notice("power fail (\(report.trigger.rawValue) \(report.input)): ingress frozen \(report.edgeToFreezeNs / 1000) us after the signal, \(w.committedRecords) record(s) committed and the store marked clean \(report.edgeToCleanNs / 1000) us after it; holding")
        }
        powerEvents.resumed = { heldNs in
            logger.notice("power good again: resumed after holding \(heldNs / 1_000_000) ms")
            statusBoard.set(.powerFailHold, active: false)
            statusBoard.update {
                $0.power = .running
                $0.store?.clean = false
            }
        }
        powerEvents.failed = { error in
            logger.error("the safe commit failed: \(error)")
            statusBoard.set(.storageFault, active: true, detail: "the safe commit failed: \(error)")
        }
        powerEvents.ignored = { trigger, input in logger.info("power fail signal (\(trigger.rawValue) \(input)) while already holding: nothing more to commit") }
        let power = PowerService(job: job, spec: powerSpec, budgeted: board.powerFail != nil, segmentBytes: Int(clamping: board.store.segmentSize),
                                 logger: logger, events: powerEvents, sigpwr: sigpwr)
        if let loop = power.loop {
            statusBoard.set(.brownoutLoop, active: true, detail: "\(loop.resets) unexpected resets within \(loop.withinS) s (\(loop.measuredBy))")
            // Shown until this run has lasted the loop's window without a reset.
            DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(loop.withinS)) {
                statusBoard.set(.brownoutLoop, active: false)
            }
        }
        if let plan = power.budget?.plan {
            statusBoard.update {
                $0.holdUp = HoldUpStatus(verdict: plan.verdict.rawValue, holdUpMs: plan.holdUpNs / 1_000_000, worstWindowUs: plan.worstWindowNs / 1000,
                                         marginPct: plan.marginPct, fillLimitBytes: plan.fillLimit)
            }
        }
        logger.info("started", metadata: ["board": "\(board.name)", "sources": "\(built.specs.count)", "store": "\(settings.device)"])
        let ingress = IngressService(job: job, engine: engine, power: power, specs: built.specs, durationS: options.durationS, logger: logger)
        let statusService = StatusService(engine: engine, status: status, live: options.statusLine, logger: logger, board: statusBoard)
        statusBoard.update { $0.phase = .running }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: socket, successTerminationBehavior: .gracefullyShutdownGroup),.init(service: ingress, successTerminationBehavior: .gracefullyShutdownGroup),
                       .init(service: statusService, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        do { try await group.run() } catch {
            if let failure = ingress.outcome.failure { throw failure }
            throw .internal("the job stopped: \(error)")
        }
        if let failure = ingress.outcome.failure { throw failure }
        let counters = job.pipeline.counters
        let p = engine.scheduler.latenessPercentiles([0.5, 0.99])
        return BoardRunSummary(records: counters.accepted, commits: counters.commits, dropped: counters.dropped,
                               sources: engine.scheduler.status(), latenessP50Ns: p[0], latenessP99Ns: p[1],
                               powerWindows: power.path.reports, refused: counters.refused)
    }
}

/// What the status line shows; updated by the committer thread.
final class JobStatus: Sendable {
    private let state = Mutex<(commitID: UInt64, atNs: Int64)>((0, 0))
    func committed(_ id: UInt64) { state.withLock { $0 = (id, Monitor.monotonicNs()) } }
    var lastCommit: (commitID: UInt64, atNs: Int64) { state.withLock { $0 } }
}

/// Set once by the ingress service when the job fails.
final class JobOutcome: Sendable {
    private let state = Mutex<JobError?>(nil)
    var failure: JobError? { state.withLock { $0 } }
    func fail(_ error: JobError) { state.withLock { if $0 == nil { $0 = error } } }
}

struct IngressService: Service, @unchecked Sendable {
    let job: WriterJob
    let engine: IngressEngine
    let power: PowerService
    let specs: [SourceSpec]
    let durationS: Double?
    let logger: Logger
    let outcome = JobOutcome()

    func run() async throws {
        engine.start(specs)
        power.start()
        let start = Monitor.monotonicNs()
        let limitNs = durationS.map { Int64($0 * 1e9) }
        // Until a signal, the requested duration, or a refusal of the store.
        while !Task.isShuttingDownGracefully && !Task.isCancelled && engine.storeFailure == nil {
            if let limitNs, Monitor.monotonicNs() - start >= limitNs { break }
            try? await Task.sleep(nanoseconds: 100_000_000)
        }
        var failure: StoreError?
        // No new window once stopping: one under way finishes inside close.
        power.stop()
        do { try engine.stop() } catch { failure = error }
        do {
            let counters = try job.close(after: failure)
            logger.info("stopped", metadata: ["records": "\(counters.accepted)", "commits": "\(counters.commits)", "dropped": "\(counters.dropped)"])
        } catch {
            outcome.fail(error)
            throw error
        }
    }
}
