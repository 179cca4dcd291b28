// The double-buffered pipeline: commits on age, on full buffers and at close; under a slow device
// it blocks, then drops with drop records; order holds across segments whatever happens.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

final class Receipts: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [CommitReceipt] = []
    func add(_ r: CommitReceipt) { lock.lock(); items.append(r); lock.unlock() }
    var all: [CommitReceipt] { lock.lock(); defer { lock.unlock() }; return items }
}

@Suite("Commit pipeline", .serialized)
struct PipelineTests {
    @Test("a buffer is committed once its oldest record reaches the age bound")
    func ageTrigger() throws {
        let device = MemoryBlockDevice(image: try formattedImage(slots: 8, segment: 8192))
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let receipts = Receipts()
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 50_000_000, blockNs: 1_000_000_000)) { receipts.add($0) }
        for n in 0..<3 {
            payload(n).withUnsafeBytes { _ = pipeline.append(source: "a", payload: $0, time: CrashOracle.fixedClock()) }
        }
        var waited = 0
        while receipts.all.isEmpty && waited < 200 {
            usleep(10_000)
            waited += 1
        }
        #expect(receipts.all.first?.range(of: "a")?.count == 3, "no commit after \(waited * 10) ms")
        #expect(waited >= 3, "committed before the age bound")
        try pipeline.close()
    }

    @Test("a slow device: producers block, then drop; drop records explain every gap; order holds")
    func backpressure() throws {
        let memory = MemoryBlockDevice(image: try formattedImage(slots: 64, segment: 4096))
        let device = SlowBlockDevice(wrapping: memory, flushDelayMicroseconds: 30_000)
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let receipts = Receipts()
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 1_000_000_000, blockNs: 2_000_000)) { receipts.add($0) }
        var accepted: [String: [UInt64]] = [:]
        var dropped = 0
        let sources = (0..<20).map { "src\($0)" }
        for n in 0..<3000 {
            let source = sources[n % sources.count]
            let result = payload(n, size: 60).withUnsafeBytes { pipeline.append(source: source, payload: $0, time: CrashOracle.fixedClock()) }
            switch result {
            case .accepted(let seq): accepted[source, default: []].append(seq)
            case .dropped: dropped += 1
            case .refused(let error): Issue.record("refused: \(error)")
            case .frozen, .deferred: Issue.record("frozen without a power failure")
            }
        }
        try pipeline.close()
        #expect(dropped > 0, "the device was not slow enough to force drops")
        #expect(pipeline.counters.dropped == UInt64(dropped))

        let analysis = try EvidenceStore.analyze(device: memory)
        var lastMono: UInt64 = 0
        var monoOrdered = true
        var seen: [String: [UInt64]] = [:]
        var droppedInRecords: UInt64 = 0
        StoreReader.forEachRecord(device: memory, analysis: analysis) { _, r in
            if r.mono <= lastMono { monoOrdered = false }
            lastMono = r.mono
            if r.rawType == RecordType.data.rawValue { seen[r.sourceName, default: []].append(r.seq) }
            if r.rawType == RecordType.drop.rawValue,
               let object = try? JSONSerialization.jsonObject(with: Data(r.payload)) as? [String: Any],
               let count = object["dropped"] as? Int {
                droppedInRecords += UInt64(count)
            }
        }
        #expect(monoOrdered, "mono_ctr went backward across segments")
        #expect(seen == accepted, "committed records differ from the accepted ones")
        #expect(droppedInRecords == UInt64(dropped), "drop records account for \(droppedInRecords) of \(dropped) drops")
        #expect(analysis.state.droppedTotal == UInt64(dropped))
        for (source, seqs) in seen { #expect(seqs == seqs.sorted(), "\(source) out of order") }
    }
}
