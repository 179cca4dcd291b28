// The power path end to end on test doubles (DESIGN.md section 12): the hold-up budget's plan, the
// brownout-loop rule, a GPIO power-fail input with debounce and resume, and the window against a
// budget that is met (buffers capped to fit) and one that is not.

import Dispatch
import EdgelogCore
import EdgelogHAL
import EdgelogIngress
import EdgelogLinux
import EdgelogRuntime
import EdgelogStore
import EdgelogTestKit
import FoundationEssentials
import Glibc
import Synchronization
import Testing

private let testUUID = [UInt8](repeating: 9, count: 16)

private func openStore(_ device: BlockDevice) throws -> EvidenceStore {
    try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock).0
}

private func formatted(segment: Int, slots: Int) throws -> MemoryBlockDevice {
    let memory = MemoryBlockDevice(size: 8192 + slots * segment)
    _ = try EvidenceStore.format(device: memory, segmentSize: segment, storeUUID: testUUID, wallNs: 0, force: false)
    return memory
}

private func records(_ device: BlockDevice) throws -> [(type: UInt16, payload: String, mono: UInt64)] {
    let analysis = try EvidenceStore.analyze(device: device)
    var out: [(UInt16, String, UInt64)] = []
    StoreReader.forEachRecord(device: device, analysis: analysis) { _, r in
        out.append((r.rawType, String(decoding: r.payload, as: UTF8.self), r.mono))
    }
    return out
}

private func waitFor(_ ms: Int, _ condition: () -> Bool) -> Bool {
    var waited = 0
    while !condition() {
        if waited >= ms { return false }
        usleep(5000)
        waited += 5
    }
    return true
}

@Suite("Power path", .serialized)
struct PowerPathTests {
    @Test("the plan: whole buffers when the worst window fits, capped buffers when only they fit, cannot_fit below two flushes")
    func planVerdicts() {
        // 10 ms per commit plus 1 µs per byte; 64 KiB buffers: a worst window of about 2 × 76 ms.
        let capacity = 64 << 10
        let fixed: Int64 = 10_000_000, perBytePs: Int64 = 1_000_000
        let roomy = HoldUpBudget.makePlan(fixedNs: fixed, perBytePs: perBytePs, holdUpNs: 400_000_000, marginPct: 50, capacity: capacity, reason: "start")
        #expect(roomy.verdict == .fits)
        #expect(roomy.fillLimit == capacity)
        let tight = HoldUpBudget.makePlan(fixedNs: fixed, perBytePs: perBytePs, holdUpNs: 100_000_000, marginPct: 25, capacity: capacity, reason: "start")
        #expect(tight.verdict == .shrunk)
        #expect(tight.fillLimit < capacity && tight.fillLimit >= HoldUpBudget.minimumFill)
        #expect(tight.worstWindowNs * 125 / 100 <= 100_000_000, "the capped window with its margin fits: \(tight.worstWindowNs)")
        let hopeless = HoldUpBudget.makePlan(fixedNs: fixed, perBytePs: perBytePs, holdUpNs: 15_000_000, marginPct: 50, capacity: capacity, reason: "start")
        #expect(hopeless.verdict == .cannotFit)
        #expect(hopeless.fillLimit == HoldUpBudget.minimumFill)
        #expect(String(decoding: tight.json.bytes, as: UTF8.self).hasPrefix("{\"reason\":\"start\",\"verdict\":\"shrunk\""))
    }

    @Test("a commit slower than the model lowers the cap and says so once; a faster one changes nothing")
    func observedCommits() {
        let budget = HoldUpBudget(holdUpMs: 200, marginPct: 0, capacity: 64 << 10, segmentBytes: 64 << 10,
                                  flushNs: [5_000_000], segmentNs: [20_000_000])
        #expect(budget.plan?.verdict == .fits)
        #expect(budget.observe(commitNs: 1_000_000, bytes: 60 << 10) == nil)
        let slower = budget.observe(commitNs: 150_000_000, bytes: 60 << 10)
        #expect(slower?.verdict == .shrunk)
        #expect(slower?.reason == "commit")
        #expect(budget.observe(commitNs: 150_000_000, bytes: 60 << 10) == nil, "the same cost again is not news")
    }

    @Test("brownout loop: counted by wall time when trusted, by session spans otherwise, never on a clean start")
    func loopRule() {
        let s: Int64 = 1_000_000_000
        let now: Int64 = 1_800_000_000 * s
        func entry(_ agoS: Int64, unexpected: Bool = true, trusted: Bool = true, spanS: Int64 = 5) -> BootEntry {
            BootEntry(unexpectedReset: unexpected, wallNs: now - agoS * s, wallTrusted: trusted, bootNs: 100 * s,
                      lastBootNs: (100 + spanS) * s, segmentID: 1)
        }
        let three = [entry(30), entry(90)]
        #expect(BrownoutLoop.detect(thisStartUnexpected: true, previous: three, nowWallNs: now, nowWallTrusted: true, resets: 3, withinS: 600)?.measuredBy == "wall")
        #expect(BrownoutLoop.detect(thisStartUnexpected: false, previous: three, nowWallNs: now, nowWallTrusted: true, resets: 3, withinS: 600) == nil)
        #expect(BrownoutLoop.detect(thisStartUnexpected: true, previous: [entry(30), entry(900)], nowWallNs: now, nowWallTrusted: true, resets: 3, withinS: 600) == nil)
        #expect(BrownoutLoop.detect(thisStartUnexpected: true, previous: [entry(30), entry(60, unexpected: false)], nowWallNs: now, nowWallTrusted: true, resets: 3, withinS: 600) == nil)
        // An RTC that lost its time: the sessions' own spans (5 s each) are all that is known.
        let lost = [entry(-99_999, trusted: false), entry(-99_999, trusted: false)]
        let byspan = BrownoutLoop.detect(thisStartUnexpected: true, previous: lost, nowWallNs: now, nowWallTrusted: false, resets: 3, withinS: 600)
        #expect(byspan?.measuredBy == "session_spans")
        #expect(byspan?.spanNs == 10 * s)
        #expect(BrownoutLoop.detect(thisStartUnexpected: true, previous: [entry(0, trusted: false, spanS: 400), entry(0, trusted: false, spanS: 400)],
                                    nowWallNs: now, nowWallTrusted: false, resets: 3, withinS: 600) == nil)
    }

    @Test("the starts come back from the signed segments, newest first, with their sessions' spans")
    func bootHistory() throws {
        let memory = try formatted(segment: 8192, slots: 32)
        for start in 0..<3 {
            let store = try openStore(memory)
            let pipeline = CommitPipeline(store: store) { _ in }
            var boot = EvidenceJSON()
            boot.add("unexpected_reset", .bool(start > 0))
            let bootTime = CaptureTime(wallNs: 1_800_000_000_000_000_000 + Int64(start) * 60_000_000_000, bootNs: 1_000_000_000)
            _ = boot.bytes.withUnsafeBytes { pipeline.append(source: SourceName.time, type: .boot, payload: $0, time: bootTime) }
            _ = Array("{\"v\":1}".utf8).withUnsafeBytes {
                pipeline.append(source: "a", payload: $0, time: CaptureTime(wallNs: bootTime.wallNs, bootNs: 4_000_000_000))
            }
            try pipeline.flush()
            // Not closed: the next open finds it unclean (a cut), except after the last.
            if start == 2 { try pipeline.close() }
        }
        let store = try openStore(memory)
        let boots = store.recentBoots(maxSegments: 64, maxBoots: 10)
        #expect(boots.count == 3)
        #expect(boots.map(\.unexpectedReset) == [true, true, false])
        #expect(boots.allSatisfy { $0.lastBootNs - $0.bootNs == 3_000_000_000 })
    }

    @Test("a GPIO power-fail input: a glitch shorter than the debounce is ripple; a real edge freezes, commits, holds; power good resumes")
    func gpioInput() throws {
        let memory = try formatted(segment: 8192, slots: 32)
        let store = try openStore(memory)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000)) { _ in }
        var spec = PowerFailSpec(holdUpMs: 100)
        spec.resumeAfterMs = 100
        let windows = Mutex<[PowerWindowReport]>([])
        let resumed = Atomic<Int>(0)
        var events = PowerPath.Events()
        events.window = { r in windows.withLock { $0.append(r) } }
        events.resumed = { _ in resumed.add(1, ordering: .relaxed) }
        let path = PowerPath(pipeline: pipeline, spec: spec, budget: nil, events: events)
        let line = SimulatedGPIOInput(name: "PWR_FAIL", level: false, sleep: { usleep(UInt32($0) * 1000) })
        let input = GPIOPowerInput(label: "sim/PWR_FAIL", activeHigh: true, debounceMs: 20) { () throws(HardwareError) -> GPIOInput in line }
        input.start(path: path) { _, error in Issue.record("input fault: \(error)") }
        defer { input.stop() }
        // The input reads the line's level when it starts: let it, before the first edge.
        usleep(150_000)
        for n in 0..<5 { _ = Array("{\"n\":\(n)}".utf8).withUnsafeBytes { pipeline.append(source: "a", payload: $0, time: CrashOracle.fixedClock()) } }

        let t0 = UInt64(Monitor.monotonicNs())
        line.inject(rising: true, timestampNs: t0)
        line.inject(rising: false, timestampNs: t0 + 1_000_000)
        #expect(waitFor(300) { input.ripples == 1 })
        #expect(path.state == .running)

        let edge = UInt64(Monitor.monotonicNs())
        line.inject(rising: true, timestampNs: edge)
        // The pipeline holds before the path reports the window (PowerPath.fail): wait for both.
        #expect(waitFor(2000) { path.state == .holding && windows.withLock { !$0.isEmpty } })
        let report = try #require(windows.withLock { $0.first })
        #expect(report.trigger == .gpio)
        #expect(report.detectedBy == "kernel")
        #expect(report.detectedNs == Int64(edge))
        #expect(report.edgeToFreezeNs >= 20_000_000, "the debounce is part of the detection: \(report.edgeToFreezeNs)")
        #expect(report.window.committedRecords == 5)

        line.inject(rising: false, timestampNs: UInt64(Monitor.monotonicNs()))
        #expect(waitFor(3000) { resumed.load(ordering: .relaxed) == 1 })
        #expect(path.state == .running)
        try pipeline.close()
        let all = try records(memory)
        let types = all.map(\.type)
        #expect(types.filter { $0 == RecordType.brownout.rawValue }.count == 1)
        #expect(types.last == RecordType.powerRestored.rawValue)
        let brownout = try #require(all.first { $0.type == RecordType.brownout.rawValue })
        #expect(brownout.payload.contains("\"trigger\":\"gpio\",\"input\":\"sim/PWR_FAIL\""))
        #expect(brownout.payload.contains("\"detected_by\":\"kernel\""))
    }

    /// A device with a known cost: 10 ms per flush, 1 ms per KiB written; 64 KiB segments.
    private func slowStore() throws -> (MemoryBlockDevice, GatedBlockDevice, EvidenceStore) {
        let memory = try formatted(segment: 64 << 10, slots: 32)
        let device = GatedBlockDevice(wrapping: memory)
        device.flushDelayUs = 10_000
        device.writeDelayUsPerKiB = 1000
        return (memory, device, try openStore(device))
    }

    /// Keeps both buffers full (a producer appending as fast as it can), holds the next commit
    /// before its segment write, signals a power failure and lets the commit go: the window then
    /// has a whole commit in flight and a full buffer behind it, the worst case.
    private func windowUnderLoad(_ pipeline: any RecordPipeline, device: GatedBlockDevice, path: PowerPath) -> PowerWindowReport? {
        let stop = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        let payload = Array(("{\"v\":\"" + String(repeating: "x", count: 180) + "\"}").utf8)
        DispatchQueue.global().async {
            while !stop.load(ordering: .relaxed) {
                let r = payload.withUnsafeBytes { pipeline.append(source: "a", payload: $0, time: CrashOracle.fixedClock()) }
                if case .frozen = r { break }
            }
            done.signal()
        }
        usleep(300_000)
        device.arm(.beforeWrite(1))
        guard device.waitHeld(timeoutMs: 5000) else { return nil }
        usleep(50_000)
        let report = Mutex<PowerWindowReport?>(nil)
        let windowDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let r = path.failing(trigger: .gpio, input: "test", detectedNs: Monitor.monotonicNs())
            report.withLock { $0 = r }
            windowDone.signal()
        }
        _ = waitFor(5000) { pipeline.powerState != .running }
        device.release()
        _ = windowDone.wait(timeout: .now() + 10)
        stop.store(true, ordering: .relaxed)
        _ = done.wait(timeout: .now() + 10)
        return report.withLock { $0 }
    }

    @Test("a budget that is met: the measured cost caps the buffers and the worst window finishes inside the hold-up")
    func budgetMet() throws {
        let (memory, device, store) = try slowStore()
        let cost = try store.measureCommitCost(samples: 2, clock: Monitor.monotonicNs)
        #expect(cost.segmentNs.count == 2)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 10_000_000_000, blockNs: 30_000_000_000)) { _ in }
        var spec = PowerFailSpec(holdUpMs: 120)
        spec.marginPct = 25
        let budget = HoldUpBudget(holdUpMs: spec.holdUpMs, marginPct: spec.marginPct, capacity: pipeline.bufferCapacity,
                                  segmentBytes: 64 << 10, flushNs: cost.flushNs, segmentNs: cost.segmentNs)
        let plan = try #require(budget.plan)
        // Uncapped, two 64 KiB commits take about 2 × 75 ms: more than the 120 ms budget.
        #expect(plan.verdict == .shrunk, "\(plan)")
        pipeline.setFillLimit(plan.fillLimit)
        let path = PowerPath(pipeline: pipeline, spec: spec, budget: budget, events: .init())
        let report = try #require(windowUnderLoad(pipeline, device: device, path: path))
        #expect(report.window.commits == 2, "both buffers were committed in the window: \(report) plan \(plan)")
        // The plan keeps 25% in reserve; a loaded test machine may spend some of it.
        #expect(report.edgeToCleanNs <= 120_000_000, "window \(report.edgeToCleanNs / 1000) µs for a 120 ms hold-up")
        try pipeline.close()
        let brownout = try #require(try records(memory).last)
        #expect(brownout.type == RecordType.brownout.rawValue)
        #expect(brownout.payload.contains("\"budget_verdict\":\"shrunk\""))
    }

    @Test("a budget that is not met: cannot_fit is said at start and in the brownout record; the window still completes")
    func budgetNotMet() throws {
        let (memory, device, store) = try slowStore()
        let cost = try store.measureCommitCost(samples: 2, clock: Monitor.monotonicNs)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 10_000_000_000, blockNs: 30_000_000_000)) { _ in }
        var spec = PowerFailSpec(holdUpMs: 15)
        spec.marginPct = 50
        let budget = HoldUpBudget(holdUpMs: spec.holdUpMs, marginPct: spec.marginPct, capacity: pipeline.bufferCapacity,
                                  segmentBytes: 64 << 10, flushNs: cost.flushNs, segmentNs: cost.segmentNs)
        let plan = try #require(budget.plan)
        #expect(plan.verdict == .cannotFit)
        pipeline.setFillLimit(plan.fillLimit)
        let path = PowerPath(pipeline: pipeline, spec: spec, budget: budget, events: .init())
        let report = try #require(windowUnderLoad(pipeline, device: device, path: path))
        #expect(report.edgeToCleanNs > 15_000_000, "two flushes of 10 ms cannot fit 15 ms")
        try pipeline.close()
        let all = try records(memory)
        #expect(all.last?.payload.contains("\"budget_verdict\":\"cannot_fit\"") == true)
        #expect(try EvidenceStore.analyze(device: memory).state.clean)
    }
}
