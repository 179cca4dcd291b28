// The safe-commit window (DESIGN.md section 12) with the power-fail signal arriving at every phase
// of a commit in progress: nothing buffered, records buffered with no commit in flight, and a
// commit held before its segment write, between segment and metadata write, before and after its
// flush. Every record accepted before the freeze is committed, the brownout record comes after
// all of them, the store is clean with bo_event counted, and nothing is written afterwards.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

/// What the store holds after a window, read back from the device.
struct WindowOutcome {
    var dataSeqs: [UInt64] = []
    var dataMonos: [UInt64] = []
    var types: [RecordType?] = []
    var brownoutPayload = ""
    var brownoutMono: UInt64 = 0
    var restoredMono: UInt64?
    var clean = false
    var boEvent: UInt32 = 0

    init(_ device: BlockDevice) throws {
        let analysis = try EvidenceStore.analyze(device: device)
        clean = analysis.state.clean
        boEvent = analysis.state.boEvent
        StoreReader.forEachRecord(device: device, analysis: analysis) { _, r in
            types.append(r.type)
            switch r.type {
            case .data:
                dataSeqs.append(r.seq)
                dataMonos.append(r.mono)
            case .brownout:
                brownoutPayload = String(decoding: r.payload, as: UTF8.self)
                brownoutMono = r.mono
            case .powerRestored:
                restoredMono = r.mono
            default: break
            }
        }
    }
}

final class Outcome<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    var get: T? { lock.lock(); defer { lock.unlock() }; return value }
}

@Suite("Safe-commit window", .serialized)
struct PowerWindowTests {
    static let recordSize = 100

    func brownout(_ w: Pipeline.PowerWindow) -> EvidenceJSON {
        var j = EvidenceJSON()
        j.add("trigger", .word("test"))
        j.add("buffered_records", UInt64(w.committedRecords))
        j.add("refused", w.refusedTotal)
        j.add("bo_event", UInt64(w.boEvent))
        return j
    }

    func append(_ pipeline: any RecordPipeline, _ n: Int) -> Pipeline.AppendResult {
        payload(n, size: Self.recordSize).withUnsafeBytes { pipeline.append(source: "a", payload: $0, time: CrashOracle.fixedClock()) }
    }

    /// nil: no commit in flight at the signal.
    static let phases: [GatedBlockDevice.Gate?] = [nil, .beforeWrite(1), .afterWrite(1), .afterWrite(2), .beforeFlush(1), .afterFlush(1)]

    @Test("a power-fail signal at each phase of a commit: everything accepted is committed, then clean and hold",
          arguments: phases)
    func windowAtPhase(gate: GatedBlockDevice.Gate?) throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 16, segment: 8192))
        let device = GatedBlockDevice(wrapping: memory)
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        var accepted = 0
        if let gate {
            device.arm(gate)
            // Past one buffer: the hand-off starts a commit, which the gate holds at its phase.
            // One record at a time, each followed by a short look at the gate, so that the second
            // buffer never fills up while the first commit is held.
            while !device.waitHeld(timeoutMs: 2) && accepted < 500 {
                if case .accepted = append(pipeline, accepted) { accepted += 1 }
            }
            #expect(device.waitHeld(timeoutMs: 2000), "no commit reached \(gate)")
            // More records go to the other buffer while the first is held.
            for _ in 0..<10 { if case .accepted = append(pipeline, accepted) { accepted += 1 } }
        } else {
            for _ in 0..<20 { if case .accepted = append(pipeline, accepted) { accepted += 1 } }
        }
        let window = Outcome<Pipeline.PowerWindow?>()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            window.set(try? pipeline.powerFail(record: self.brownout))
            done.signal()
        }
        if gate != nil {
            // Frozen at once, while the commit in flight is still held: later readings are refused.
            var waited = 0
            while pipeline.powerState != .frozen && waited < 2000 { usleep(1000); waited += 1 }
            #expect(pipeline.powerState == .frozen)
            #expect(append(pipeline, 9999) == .frozen)
            device.release()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        let w = try #require(window.get ?? nil)
        #expect(pipeline.powerState == .holding)
        #expect(w.committedRecords == accepted)
        #expect((w.inFlightDoneNs != nil) == (gate != nil))
        #expect(w.commits == (gate == nil ? 1 : 2))
        #expect(w.cleanNs >= w.frozenNs)
        #expect(append(pipeline, 10_000) == .frozen)
        #expect(pipeline.counters.refused == (gate == nil ? 1 : 2))

        // Holding: closing writes nothing more.
        let writes = memory.writes
        try pipeline.close()
        #expect(memory.writes == writes)

        let out = try WindowOutcome(memory)
        #expect(out.clean)
        #expect(out.boEvent == 1)
        #expect(out.dataSeqs == Array(1...UInt64(accepted)))
        #expect(out.types.last == .brownout, "the brownout record is the last one committed")
        #expect(out.dataMonos.allSatisfy { $0 < out.brownoutMono })
        #expect(out.brownoutPayload.contains("\"bo_event\":1"))
        #expect(out.brownoutPayload.contains("\"buffered_records\":\(accepted)"))
        // The next start finds a clean store: no unexpected reset.
        let (_, again) = try EvidenceStore.open(device: memory, clock: CrashOracle.fixedClock)
        #expect(!again.uncleanShutdown)
    }

    @Test("a producer waiting for a free buffer is turned away at the freeze, not after its wait bound")
    func waitingProducerIsReleased() throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 16, segment: 8192))
        let device = GatedBlockDevice(wrapping: memory)
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 30_000_000_000)) { _ in }
        device.arm(.beforeFlush(1))
        var accepted = 0
        while !device.waitHeld(timeoutMs: 2) && accepted < 500 {
            if case .accepted = append(pipeline, accepted) { accepted += 1 }
        }
        #expect(device.waitHeld(timeoutMs: 2000))
        let blocked = Outcome<(Pipeline.AppendResult, Int64)>()
        let producerDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            // Fills the second buffer, then waits for the first to be committed.
            var last = Pipeline.AppendResult.frozen
            var n = 0
            while n < 500 {
                last = self.append(pipeline, 100_000 + n)
                if case .accepted = last { n += 1 } else { break }
            }
            blocked.set((last, Monitor.monotonicNs()))
            producerDone.signal()
        }
        usleep(200_000)
        #expect(blocked.get == nil, "the producer should be waiting for a free buffer")
        let windowDone = DispatchSemaphore(value: 0)
        let frozenAt = Monitor.monotonicNs()
        DispatchQueue.global().async {
            _ = try? pipeline.powerFail(record: self.brownout)
            windowDone.signal()
        }
        #expect(producerDone.wait(timeout: .now() + 5) == .success)
        let (result, at) = try #require(blocked.get)
        #expect(result == .frozen)
        #expect(at - frozenAt < 2_000_000_000, "released by the freeze, not by its 30 s wait bound")
        device.release()
        #expect(windowDone.wait(timeout: .now() + 10) == .success)
        try pipeline.close()
        let out = try WindowOutcome(memory)
        #expect(out.clean)
        #expect(out.types.last == .brownout)
    }

    @Test("power comes back: resume writes power_restored before any later record, and the store is open again")
    func resume() throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 16, segment: 8192))
        let (store, _) = try EvidenceStore.open(device: memory, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        for n in 0..<5 { _ = append(pipeline, n) }
        #expect(try pipeline.powerFail(record: brownout) != nil)
        #expect(try pipeline.powerFail(record: brownout) == nil, "a second signal while holding does nothing")
        #expect(try WindowOutcome(memory).clean)
        var restored = EvidenceJSON()
        restored.add("held_ms", UInt64(1))
        #expect(try pipeline.resume(record: restored))
        #expect(pipeline.powerState == .running)
        #expect(try !WindowOutcome(memory).clean, "a writer has it open again")
        for n in 5..<8 { #expect(append(pipeline, n) == .accepted(seq: UInt64(n + 1))) }
        try pipeline.close()
        let out = try WindowOutcome(memory)
        #expect(out.clean)
        #expect(out.dataSeqs == Array(1...8))
        let restoredMono = try #require(out.restoredMono)
        #expect(out.dataMonos.prefix(5).allSatisfy { $0 < out.brownoutMono })
        #expect(out.brownoutMono < restoredMono)
        #expect(out.dataMonos.suffix(3).allSatisfy { $0 > restoredMono })
    }

    @Test("a buffer capped by the hold-up budget is committed at the cap, not at the segment's capacity")
    func fillLimit() throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 64, segment: 8192))
        let (store, _) = try EvidenceStore.open(device: memory, clock: CrashOracle.fixedClock)
        let receipts = Receipts()
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { receipts.add($0) }
        pipeline.setFillLimit(2048)
        for n in 0..<60 { _ = append(pipeline, n) }
        try pipeline.flush()
        let counts = receipts.all.map(\.recordCount)
        // A record is 100 payload bytes + 61 + source: 12 per 2 KiB buffer; evidence aside.
        #expect(counts.count >= 4)
        #expect(counts.dropLast().allSatisfy { $0 <= 13 }, "\(counts)")
        try pipeline.close()
    }

    /// A brownout record the size of a real one (about 400 bytes).
    func bigBrownout(_ w: Pipeline.PowerWindow) -> EvidenceJSON {
        var j = brownout(w)
        j.add("input", text: String(repeating: "i", count: 300))
        return j
    }

    @Test("a brownout record that does not fit beside the buffer goes in one more commit, and only that one marks the store clean")
    func brownoutCarried() throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 16, segment: 8192))
        let device = GatedBlockDevice(wrapping: memory)
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        // Fill the active buffer to its data limit: its evidence room (512 bytes) cannot also hold
        // a pending budget record and a 400-byte brownout record.
        var budget = EvidenceJSON()
        budget.add("note", text: String(repeating: "b", count: 200))
        pipeline.addEvidence(.powerBudget, budget)
        var accepted = 0
        // 42 records of 169 bytes fill the 7120-byte data limit without a hand-off (a 43rd would start one).
        while accepted < 42, case .accepted = append(pipeline, accepted) { accepted += 1 }
        // The first of the window's two commits must not say clean: hold it after its metadata write.
        device.arm(.afterWrite(2))
        let window = Outcome<Pipeline.PowerWindow?>()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            window.set(try? pipeline.powerFail(record: self.bigBrownout))
            done.signal()
        }
        #expect(device.waitHeld(timeoutMs: 5000))
        let during = try EvidenceStore.analyze(device: memory)
        #expect(!during.state.clean, "the first commit of the window said clean while the brownout record was still to come")
        device.release()
        #expect(done.wait(timeout: .now() + 10) == .success)
        let w = try #require(window.get ?? nil)
        #expect(w.inFlightDoneNs == nil, "no commit was in flight: both commits are the window's own")
        #expect(w.commits == 2)
        try pipeline.close()
        let out = try WindowOutcome(memory)
        #expect(out.clean)
        #expect(out.types.last == .brownout)
        #expect(out.dataSeqs == Array(1...UInt64(accepted)))
    }

    @Test("a full ring under overwrite-oldest: the gap record of the reclaimed tail comes before the brownout record")
    func brownoutAfterGap() throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 5, segment: 4096))
        let (store, _) = try EvidenceStore.open(device: memory, policy: .overwriteOldest, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        for n in 0..<120 { _ = append(pipeline, n) }
        try pipeline.flush()
        for n in 120..<125 { _ = append(pipeline, n) }
        #expect(try pipeline.powerFail(record: bigBrownout) != nil)
        try pipeline.close()
        let out = try WindowOutcome(memory)
        #expect(out.clean)
        #expect(out.types.last == .brownout, "\(out.types.suffix(4))")
        #expect(out.types.contains(.gap))
    }

    @Test("evidence captured during the hold (a time record) is kept and committed at the resume, before power_restored")
    func evidenceDuringHold() throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 16, segment: 8192))
        let (store, _) = try EvidenceStore.open(device: memory, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        _ = append(pipeline, 0)
        #expect(try pipeline.powerFail(record: brownout) != nil)
        let step = Array("{\"direction\":\"forward\"}".utf8)
        let kept = step.withUnsafeBytes { pipeline.append(source: "edgelog.time", type: .clockStep, payload: $0, time: CrashOracle.fixedClock()) }
        #expect(kept == .deferred)
        #expect(append(pipeline, 1) == .frozen)
        #expect(try pipeline.resume(record: EvidenceJSON()))
        try pipeline.close()
        let out = try WindowOutcome(memory)
        let steps = out.types.indices.filter { out.types[$0] == .clockStep }
        let restored = try #require(out.types.firstIndex(of: .powerRestored))
        let brownout = try #require(out.types.firstIndex(of: .brownout))
        #expect(steps.count == 1)
        #expect(steps.allSatisfy { $0 > brownout && $0 < restored })
    }

    @Test("close during a resume waits for it: the store ends clean")
    func closeDuringResume() throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 16, segment: 8192))
        let device = GatedBlockDevice(wrapping: memory)
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        _ = append(pipeline, 0)
        #expect(try pipeline.powerFail(record: brownout) != nil)
        // The resume's markOpen is write 1, its commit writes 2 and 3: hold it before its flush.
        device.arm(.beforeFlush(2))
        let resumed = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? pipeline.resume(record: EvidenceJSON())
            resumed.signal()
        }
        #expect(device.waitHeld(timeoutMs: 5000))
        let closed = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            try? pipeline.close()
            closed.signal()
        }
        #expect(closed.wait(timeout: .now() + 0.3) == .timedOut, "close returned while the resume was writing")
        device.release()
        #expect(resumed.wait(timeout: .now() + 10) == .success)
        #expect(closed.wait(timeout: .now() + 10) == .success)
        let out = try WindowOutcome(memory)
        #expect(out.clean)
        #expect(out.types.last == .powerRestored)
    }
}
