// The commit pipeline over the format 6 evidence store: the same double buffering, drops and
// safe-commit window as over format 5 (PipelineTests, PowerWindowTests), read back through the
// format 6 history.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

private func packedImage(slots: Int = 16, segment: Int = 65536) throws -> [UInt8] {
    let memory = MemoryBlockDevice(size: PackedGeometry.ringOffset + slots * segment, sectorSize: 512)
    try PackedEvidenceStore.format(device: memory, segmentSize: segment, storeUUID: Array(51...66), wallNs: 0, force: false)
    return memory.bytes
}

private func openPacked(_ device: BlockDevice, policy: RingFullPolicy = .pause) throws -> PackedEvidenceStore {
    try PackedEvidenceStore.open(device: device, policy: policy, clock: CrashOracle.fixedClock)
}

/// What a format 6 store holds, read back from the device.
private struct PackedOutcome {
    var records: [PackedRecord] = []
    var clean = false
    var boEvent: UInt32 = 0
    var droppedTotal: UInt64 = 0

    init(_ device: BlockDevice) throws {
        let h = try PackedHistory.analyze(device: device)
        clean = h.metadata.clean
        boEvent = h.state.boEvent
        droppedTotal = h.state.droppedTotal
        records = h.frames(device: device).flatMap(\.records)
    }

    var types: [RecordType?] { records.map(\.type) }
    var data: [PackedRecord] { records.filter { $0.type == .data } }
    func first(_ type: RecordType) -> PackedRecord? { records.first { $0.type == type } }
}

@Suite("Commit pipeline on format 6", .serialized)
struct PackedPipelineTests {
    func append(_ pipeline: any RecordPipeline, _ n: Int, source: String = "a") -> Pipeline.AppendResult {
        payload(n, size: 100).withUnsafeBytes { pipeline.append(source: source, payload: $0, time: CrashOracle.fixedClock()) }
    }

    func brownout(_ w: Pipeline.PowerWindow) -> EvidenceJSON {
        var j = EvidenceJSON()
        j.add("trigger", .word("test"))
        j.add("buffered_records", UInt64(w.committedRecords))
        j.add("bo_event", UInt64(w.boEvent))
        return j
    }

    @Test("a buffer is committed once its oldest record reaches the age bound")
    func ageTrigger() throws {
        let device = MemoryBlockDevice(image: try packedImage())
        let store = try openPacked(device)
        let receipts = Receipts()
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 50_000_000, blockNs: 1_000_000_000)) { receipts.add($0) }
        for n in 0..<3 { _ = append(pipeline, n) }
        // A name no reader accepts is refused at once, not carried into a commit it would fail.
        guard case .refused(.invalidArgument) = append(pipeline, 99, source: "=cmd") else {
            Issue.record("an invalid source name was accepted")
            return
        }
        var waited = 0
        while receipts.all.isEmpty && waited < 200 {
            usleep(10_000)
            waited += 1
        }
        #expect(receipts.all.first?.range(of: "a")?.count == 3, "no commit after \(waited * 10) ms")
        #expect(receipts.all.first?.frameSeal?.statement.count == FrameStatement.size)
        #expect(waited >= 3, "committed before the age bound")
        try pipeline.close()
    }

    @Test("a slow device: producers block, then drop; drop records explain every gap; order holds")
    func backpressure() throws {
        let memory = MemoryBlockDevice(image: try packedImage(slots: 32))
        let device = SlowBlockDevice(wrapping: memory, flushDelayMicroseconds: 30_000)
        let store = try openPacked(device)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 1_000_000_000, blockNs: 2_000_000)) { _ in }
        var accepted: [String: [UInt64]] = [:]
        var dropped = 0
        let sources = (0..<20).map { "src\($0)" }
        for n in 0..<6000 {
            let source = sources[n % sources.count]
            switch append(pipeline, n, source: source) {
            case .accepted(let seq): accepted[source, default: []].append(seq)
            case .dropped: dropped += 1
            case .refused(let error): Issue.record("refused: \(error)")
            case .frozen, .deferred: Issue.record("frozen without a power failure")
            }
        }
        try pipeline.close()
        #expect(dropped > 0, "the device was not slow enough to force drops")
        let out = try PackedOutcome(memory)
        #expect(zip(out.records, out.records.dropFirst()).allSatisfy { $0.mono < $1.mono }, "mono_ctr went backward")
        var seen: [String: [UInt64]] = [:]
        var droppedInRecords: UInt64 = 0
        for r in out.records {
            if r.type == .data { seen[r.source, default: []].append(r.seq) }
            if r.type == .drop, let o = try? JSONSerialization.jsonObject(with: Data(r.payload)) as? [String: Any], let c = o["dropped"] as? Int {
                droppedInRecords += UInt64(c)
            }
        }
        #expect(seen == accepted, "committed records differ from the accepted ones")
        #expect(droppedInRecords == UInt64(dropped))
        #expect(out.droppedTotal == UInt64(dropped))
    }

    /// nil: no commit in flight at the signal. A format 6 commit is one frame write and one flush.
    static let phases: [GatedBlockDevice.Gate?] = [nil, .beforeWrite(1), .afterWrite(1), .beforeFlush(1), .afterFlush(1)]

    @Test("a power-fail signal at each phase of a commit: everything accepted is committed, then clean and hold", arguments: phases)
    func windowAtPhase(gate: GatedBlockDevice.Gate?) throws {
        let memory = MemoryBlockDevice(image: try packedImage())
        let device = GatedBlockDevice(wrapping: memory)
        let store = try openPacked(device)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        var accepted = 0
        if let gate {
            device.arm(gate)
            while !device.waitHeld(timeoutMs: 2) && accepted < 2000 {
                if case .accepted = append(pipeline, accepted) { accepted += 1 }
            }
            #expect(device.waitHeld(timeoutMs: 2000), "no commit reached \(gate)")
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
        #expect(w.commits == (gate == nil ? 1 : 2))
        let writes = memory.writes
        try pipeline.close()
        #expect(memory.writes == writes, "holding: close wrote")
        let out = try PackedOutcome(memory)
        #expect(out.clean)
        #expect(out.boEvent == 1)
        #expect(out.data.map(\.seq) == Array(1...UInt64(accepted)))
        #expect(out.types.last == .brownout, "the brownout record is the last one committed")
        // The next start finds a clean store: no unexpected reset.
        #expect(try openPacked(memory).recovery.cleanBefore)
    }

    @Test("power comes back: resume writes power_restored before any later record, and the store is open again")
    func resume() throws {
        let memory = MemoryBlockDevice(image: try packedImage())
        let store = try openPacked(memory)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        for n in 0..<5 { _ = append(pipeline, n) }
        #expect(try pipeline.powerFail(record: brownout) != nil)
        #expect(try pipeline.powerFail(record: brownout) == nil, "a second signal while holding does nothing")
        #expect(try PackedOutcome(memory).clean)
        let step = Array("{\"direction\":\"forward\"}".utf8)
        #expect(step.withUnsafeBytes { pipeline.append(source: "edgelog.time", type: .clockStep, payload: $0, time: CrashOracle.fixedClock()) } == .deferred)
        var restored = EvidenceJSON()
        restored.add("held_ms", UInt64(1))
        #expect(try pipeline.resume(record: restored))
        #expect(try !PackedOutcome(memory).clean, "a writer has it open again")
        for n in 5..<8 { #expect(append(pipeline, n) == .accepted(seq: UInt64(n + 1))) }
        try pipeline.close()
        let out = try PackedOutcome(memory)
        #expect(out.clean)
        #expect(out.data.map(\.seq) == Array(1...8))
        let brownout = try #require(out.first(.brownout)), restoredRecord = try #require(out.first(.powerRestored))
        let step1 = try #require(out.first(.clockStep))
        #expect(out.data.prefix(5).allSatisfy { $0.mono < brownout.mono })
        #expect(brownout.mono < step1.mono && step1.mono < restoredRecord.mono)
        #expect(out.data.suffix(3).allSatisfy { $0.mono > restoredRecord.mono })
    }

    @Test("a full ring under overwrite-oldest: the gap record of the reclaimed segment comes before the brownout record")
    func brownoutAfterGap() throws {
        let memory = MemoryBlockDevice(image: try packedImage(slots: 4, segment: 8192))
        let store = try openPacked(memory, policy: .overwriteOldest)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 5_000_000_000)) { _ in }
        // Commits of a few records until the next frame is about to open a segment that reclaims.
        var n = 0
        // Frames of a few records take one sector: filled to its last sector, the segment holds no more.
        while (store.metadata.tailSegmentID == 1 || store.log.openSegmentBytes < 8192 - 512) && n < 20_000 {
            for _ in 0..<4 { _ = append(pipeline, n); n += 1 }
            try pipeline.flush()
        }
        for _ in 0..<20 { _ = append(pipeline, n); n += 1 }
        #expect(try pipeline.powerFail(record: brownout) != nil)
        try pipeline.close()
        let out = try PackedOutcome(memory)
        #expect(out.clean)
        #expect(out.types.last == .brownout, "\(out.types.suffix(4))")
        #expect(out.types.suffix(2).first == .gap, "\(out.types.suffix(4))")
    }
}
