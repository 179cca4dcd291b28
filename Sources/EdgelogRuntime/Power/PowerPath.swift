// The power-fail path (docs/DESIGN.md section 12): every input (a GPIO line, an input-event key,
// SIGPWR) calls `failing` on its own thread, which runs the safe-commit window right there: it
// never waits for a sensor, the uplink or a log line (those are told after the window). A hold
// ends when power has been good for resume_after_ms, with a power_restored record.

import Dispatch
import EdgelogCore
import EdgelogStore

public enum PowerTrigger: String, Sendable {
    case gpio
    case inputKey = "input_key"
    case sigpwr
}

/// One safe-commit window, for the log, the status and the bench.
public struct PowerWindowReport: Sendable, Equatable {
    public var trigger: PowerTrigger
    public var input: String
    /// When the input saw the failure (CLOCK_MONOTONIC ns): the kernel's event time when it has one.
    public var detectedNs: Int64
    /// "kernel": the event's own timestamp; "read": when this process read it (SIGPWR, or a
    /// timestamp too far from the clock to be on it).
    public var detectedBy: String
    public var window: Pipeline.PowerWindow
    public var edgeToFreezeNs: Int64 { window.frozenNs - detectedNs }
    public var edgeToCleanNs: Int64 { window.cleanNs - detectedNs }
}

public final class PowerPath: @unchecked Sendable {
    public struct Events: Sendable {
        /// After each window (on the input's thread, once the store is clean).
        public var window: @Sendable (PowerWindowReport) -> Void = { _ in }
        /// After a resume: how long the hold lasted (ns).
        public var resumed: @Sendable (Int64) -> Void = { _ in }
        /// The store refused the window or the resume: the job stops.
        public var failed: @Sendable (StoreError) -> Void = { _ in }
        /// A second failure signal while a window or hold was under way (counted, nothing written).
        public var ignored: @Sendable (PowerTrigger, String) -> Void = { _, _ in }
        public init() {}
    }

    public let spec: PowerFailSpec
    private let pipeline: any RecordPipeline
    private let budget: HoldUpBudget?
    private let events: Events
    /// Serializes windows and resumes: a failure signal during a resume runs its window after it.
    private let pathLock = Monitor()
    private let stateLock = Monitor()
    private var goodSince: Int64?
    private var generation: UInt64 = 0
    private var refusedAtFreeze: UInt64 = 0
    private var last: PowerWindowReport?
    private var allReports: [PowerWindowReport] = []
    /// Set by `stop`: no resume starts after it (the job is closing).
    private var stopped = false
    /// Asked again just before a resume: is power still good (the line's level, the status file)?
    private var stillGood: (@Sendable () -> Bool)?
    private let resumeQueue = DispatchQueue(label: "edgelog.power.resume")

    public init(pipeline: any RecordPipeline, spec: PowerFailSpec, budget: HoldUpBudget?, events: Events) {
        self.pipeline = pipeline
        self.spec = spec
        self.budget = budget
        self.events = events
    }

    public var state: Pipeline.PowerState { pipeline.powerState }

    /// The windows so far (the newest 256), oldest first.
    public var reports: [PowerWindowReport] {
        stateLock.lock()
        defer { stateLock.unlock() }
        return allReports
    }

    /// Power is failing: run the window now, on this thread. `detectedNs` is the input's own
    /// timestamp (CLOCK_MONOTONIC), nil when it has none. Nil when nothing was done (already
    /// frozen or holding, closing, or the store failed).
    @discardableResult
    public func failing(trigger: PowerTrigger, input: String, detectedNs: Int64?) -> PowerWindowReport? {
        let readNs = Monitor.monotonicNs()
        stateLock.lock()
        goodSince = nil
        stillGood = nil
        generation &+= 1
        stateLock.unlock()
        // A kernel time more than 5 s away from the clock is not on CLOCK_MONOTONIC (an old kernel
        // stamping GPIO events with the wall clock): the read time is the honest one.
        var detected = readNs
        var detectedBy = "read"
        if let stamp = detectedNs, stamp >= 0, stamp <= readNs, readNs - stamp < 5_000_000_000 {
            detected = stamp
            detectedBy = "kernel"
        }
        pathLock.lock()
        defer { pathLock.unlock() }
        let refusedBefore = pipeline.refusedCount
        let holdUpMs = spec.holdUpMs
        let plan = budget?.plan
        let window: Pipeline.PowerWindow?
        do {
            window = try pipeline.powerFail { w in
                var j = EvidenceJSON()
                j.add("trigger", .word(trigger.rawValue))
                j.add("input", text: input)
                j.add("detected_mono_ns", int: detected)
                j.add("detected_by", .word(detectedBy))
                j.add("frozen_mono_ns", int: w.frozenNs)
                j.add("edge_to_freeze_us", int: max(w.frozenNs - detected, 0) / 1000)
                j.add("in_flight_committed_mono_ns", w.inFlightDoneNs.map { UInt64(max($0, 0)) })
                j.add("buffered_records", UInt64(max(w.committedRecords, 0)))
                j.add("refused", w.refusedTotal &- refusedBefore)
                j.add("bo_event", UInt64(w.boEvent))
                j.add("hold_up_ms", UInt64(clamping: holdUpMs))
                j.add("budget_verdict", .word(plan?.verdict.rawValue ?? "unmeasured"))
                return j
            }
        } catch {
            events.failed(error)
            return nil
        }
        guard let window else {
            events.ignored(trigger, input)
            return nil
        }
        let report = PowerWindowReport(trigger: trigger, input: input, detectedNs: detected, detectedBy: detectedBy, window: window)
        stateLock.lock()
        refusedAtFreeze = refusedBefore
        last = report
        allReports.append(report)
        if allReports.count > 256 { allReports.removeFirst(allReports.count - 256) }
        stateLock.unlock()
        events.window(report)
        return report
    }

    /// No resume after this returns (one under way finishes first): the job is closing.
    public func stop() {
        pathLock.lock()
        stopped = true
        pathLock.unlock()
    }

    /// Power is good again: resume once it has stayed good for resume_after_ms with no new failure
    /// and `check` (the input's own reading: the line's level, the status file) still says so.
    public func good(check: (@Sendable () -> Bool)? = nil) {
        stateLock.lock()
        if goodSince == nil { goodSince = Monitor.monotonicNs() }
        generation &+= 1
        stillGood = check
        let mine = generation
        stateLock.unlock()
        let delay = spec.resumeAfterMs
        resumeQueue.asyncAfter(deadline: .now() + .milliseconds(delay)) { [weak self] in
            self?.resumeIfStillGood(generation: mine)
        }
    }

    private func resumeIfStillGood(generation mine: UInt64) {
        pathLock.lock()
        defer { pathLock.unlock() }
        stateLock.lock()
        let still = generation == mine && goodSince != nil
        let check = stillGood
        let window = last
        let refusedBefore = refusedAtFreeze
        stateLock.unlock()
        guard still, !stopped, pipeline.powerState == .holding, check?() ?? true else { return }
        let now = Monitor.monotonicNs()
        var j = EvidenceJSON()
        if let window {
            j.add("trigger", .word(window.trigger.rawValue))
            j.add("detected_mono_ns", int: window.detectedNs)
            j.add("clean_mono_ns", int: window.window.cleanNs)
            j.add("window_us", int: max(window.edgeToCleanNs, 0) / 1000)
            j.add("held_ms", int: max(now - window.window.cleanNs, 0) / 1_000_000)
        }
        j.add("stable_ms", UInt64(clamping: spec.resumeAfterMs))
        j.add("refused", pipeline.refusedCount &- refusedBefore)
        do {
            if try pipeline.resume(record: j) { events.resumed(window.map { now - $0.window.cleanNs } ?? 0) }
        } catch {
            events.failed(error)
        }
    }
}
