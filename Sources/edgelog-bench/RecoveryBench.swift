// Recovery time against partition size (DESIGN.md section 1, promise 4: opening costs time in
// proportion to what was in flight, not to the size of the partition). Two stores with the same
// tail: format, commit the same number of full segments, stop without close (clean_flag 0, as
// after a crash), then time analyze (read-only recovery) plus open (recovery + repair + the
// clean_flag 0 write) on a fresh FileBlockDevice. Each open leaves the store open again, so the
// next run finds the same unclean state.

import EdgelogLinux
import EdgelogStore
import Glibc

struct RecoveryResult {
    var label: String
    var size: UInt64
    var totalMs: [Double] = []
    var analyzeMs: [Double] = []
    var openMs: [Double] = []
    var ringSlots = 0
    var headSegment: UInt64 = 0

    var medianMs: Double { median(totalMs) }
}

enum RecoveryBench {
    static let segments = 200
    static let runs = 5

    /// Formats a store of `size` bytes, commits `segments` full segments and stops without close.
    static func prepare(label: String, path: String, size: UInt64) -> RecoveryResult {
        progress("recovery \(label): formatting \(size >> 20) MiB and committing \(segments) segments")
        var result = RecoveryResult(label: label, size: size)
        let (_, store) = freshStore(path: path, size: size, segmentSize: Shape.segmentSize)
        var sequencer = Sequencer(from: store.metadata)
        let builder = SegmentBuilder(geometry: store.metadata.geometry)
        let bytes = RecordBytes()
        let source = UnsafeRawBufferPointer(bytes.source)
        let payload = UnsafeRawBufferPointer(bytes.payload)
        var n = 0
        for _ in 0..<segments {
            while builder.fits(sourceLength: source.count, payloadLength: payload.count) {
                guard let (seq, mono) = try? sequencer.next(for: Shape.source) else { die("sequencer failed") }
                bytes.setNumber(n)
                n += 1
                builder.append(type: .data, source: source, seq: seq, mono: mono, time: SystemClock.now(), payload: payload)
            }
            sequencer.reserveEvidence(for: builder, count: 4)
            do { _ = try store.commit(builder) } catch { die("commit: \(error)") }
            builder.reset()
        }
        result.ringSlots = store.metadata.geometry.ringSlots
        // No close(): the store and its device are dropped on return with clean_flag 0 on disk.
        return result
    }

    /// One timed recovery: analyze, then open (which recovers and marks the store open again), on
    /// a fresh FileBlockDevice; the store is dropped without close, unclean for the next run.
    static func measure(_ result: inout RecoveryResult, path: String) {
        let device: FileBlockDevice
        do { device = try FileBlockDevice(path: path) } catch { die("open \(path): \(error)") }
        let t0 = monoNs()
        let analysis: StoreAnalysis
        do { analysis = try EvidenceStore.analyze(device: device) } catch { die("analyze \(result.label): \(error)") }
        let t1 = monoNs()
        let store: EvidenceStore
        do { (store, _) = try EvidenceStore.open(device: device, policy: .pause, clock: SystemClock.now) } catch {
            die("open \(result.label): \(error)")
        }
        let t2 = monoNs()
        guard analysis.uncleanShutdown else { die("recovery \(result.label) did not find an unclean stop") }
        result.headSegment = store.metadata.headSegmentID
        result.analyzeMs.append(Double(t1 - t0) / 1e6)
        result.openMs.append(Double(t2 - t1) / 1e6)
        result.totalMs.append(Double(t2 - t0) / 1e6)
    }

    /// Prepares every store, then measures them in alternation (rotating which goes first), so a
    /// passing disk stall does not land on one size only.
    static func run(_ stores: [(label: String, size: UInt64, path: String)]) -> [RecoveryResult] {
        var results = stores.map { prepare(label: $0.label, path: $0.path, size: $0.size) }
        for run in 0..<runs {
            for k in 0..<stores.count {
                let i = (run + k) % stores.count
                measure(&results[i], path: stores[i].path)
            }
        }
        return results
    }
}
