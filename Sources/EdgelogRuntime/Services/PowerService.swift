// The power side of `run --board` (docs/DESIGN.md section 12): at start, the hold-up budget
// (measured commit cost against the board's hold_up_ms, buffers capped when it does not fit, a
// power_budget record either way) and the brownout-loop check; while running, the power-fail
// inputs and the path that freezes, commits and holds.

import EdgelogCore
import EdgelogHAL
import EdgelogLinux
import EdgelogStore
import Logging

public final class PowerService: @unchecked Sendable {
    public let path: PowerPath
    public let budget: HoldUpBudget?
    public let loop: BrownoutLoop?
    private let inputs: [PowerInput]
    private let logger: Logger
    private let faults = Monitor()
    private var faultCounts: [String: UInt64] = [:]

    /// The board's power_fail section, or SIGPWR alone with no budget when it has none. A relative
    /// power status file resolves against the state directory, like the store's paths.
    public static func spec(for board: Board, stateDir: String) -> PowerFailSpec {
        var spec = board.powerFail ?? PowerFailSpec(holdUpMs: 0)
        if !spec.powerStatusFile.hasPrefix("/") { spec.powerStatusFile = stateDir + "/" + spec.powerStatusFile }
        return spec
    }

    /// Settings the writer needs before it starts (commit cost samples, boot history).
    public static func prepare(_ settings: inout WriterSettings, spec: PowerFailSpec, budgeted: Bool) {
        settings.commitCostSamples = budgeted ? 3 : 0
        settings.bootHistory = spec.loopResets * 2
    }

    /// Any writer: the budget only when `budgeted` (the board declares hold_up_ms).
    public init(job: WriterJob, spec: PowerFailSpec, budgeted: Bool, segmentBytes: Int, logger: Logger, events: PowerPath.Events,
                sigpwr: SignalPowerInput? = nil) {
        self.logger = logger
        let pipeline = job.pipeline
        if budgeted {
            let budget = HoldUpBudget(holdUpMs: spec.holdUpMs, marginPct: spec.marginPct, capacity: pipeline.bufferCapacity,
                                      segmentBytes: segmentBytes, flushNs: job.commitCost.flushNs, segmentNs: job.commitCost.segmentNs)
            self.budget = budget
            if let plan = budget.plan { Self.apply(plan, to: pipeline, logger: logger) }
            pipeline.observeCommits { ns, bytes in
                if let plan = budget.observe(commitNs: ns, bytes: bytes) { Self.apply(plan, to: pipeline, logger: logger) }
            }
        } else {
            budget = nil
        }
        let start = job.startTime
        loop = BrownoutLoop.detect(thisStartUnexpected: job.opened.uncleanShutdown, previous: job.previousBoots,
                                   nowWallNs: start?.wallNs ?? 0, nowWallTrusted: start.map { !$0.flags.contains(.wallUntrusted) } ?? false,
                                   resets: spec.loopResets, withinS: spec.loopWithinS)
        if let loop {
            pipeline.addEvidence(.brownoutLoop, loop.json)
            logger.warning("brownout loop: \(loop.resets) unexpected resets within \(loop.withinS) s (measured by \(loop.measuredBy)): check the supply, the brownout threshold and the hold-up budget")
        }
        path = PowerPath(pipeline: pipeline, spec: spec, budget: budget, events: events)
        var inputs: [PowerInput] = []
        if let g = spec.gpio {
            inputs.append(GPIOPowerInput(label: "\(g.chip)/\(g.line)", activeHigh: g.activeHigh, debounceMs: g.debounceMs) { () throws(HardwareError) -> GPIOInput in
                try LinuxGPIOInput(chip: g.chip, line: g.line, consumer: "edgelog-power-fail")
            })
        }
        if let k = spec.inputKey {
            inputs.append(KeyPowerInput(label: "\(k.device) \(k.keyName)", code: k.code) { () throws(HardwareError) -> KeyInput in
                try LinuxInputKey(device: k.device)
            })
        }
        if spec.sigpwr { inputs.append(sigpwr ?? SignalPowerInput(statusFile: spec.powerStatusFile)) }
        self.inputs = inputs
    }

    private static func apply(_ plan: HoldUpPlan, to pipeline: any RecordPipeline, logger: Logger) {
        pipeline.setFillLimit(plan.fillLimit < plan.capacity ? plan.fillLimit : Int.max)
        pipeline.addEvidence(.powerBudget, plan.json)
        let text = "hold-up budget \(plan.holdUpNs / 1_000_000) ms, worst window \(plan.worstWindowNs / 1000) us + \(plan.marginPct)% margin"
        switch plan.verdict {
        case .fits: logger.info("\(text): fits")
        case .shrunk: logger.notice("\(text): buffers capped at \(plan.fillLimit) of \(plan.capacity) bytes so that it fits")
        case .cannotFit: logger.error("\(text): does NOT fit even with \(plan.fillLimit)-byte buffers; a power cut may leave an incomplete commit")
        }
    }

    public func start() {
        for input in inputs {
            input.start(path: path) { [weak self] label, error in self?.fault(label, error) }
        }
    }

    /// Stops the inputs, then the path: no window or resume starts after this returns (one under
    /// way finishes first).
    public func stop() {
        for input in inputs { input.stop() }
        path.stop()
    }

    /// Input faults by input label.
    public var inputFaults: [String: UInt64] {
        faults.lock()
        defer { faults.unlock() }
        return faultCounts
    }

    private func fault(_ label: String, _ error: HardwareError) {
        faults.lock()
        faultCounts[label, default: 0] &+= 1
        let n = faultCounts[label] ?? 0
        faults.unlock()
        // The first failure and then every 60th (one a minute at the retry pace) reach the log.
        if n == 1 || n % 60 == 0 { logger.error("power-fail input \(label) failed (\(n) time(s)): \(error)") }
    }
}
