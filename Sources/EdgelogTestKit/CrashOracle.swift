// What must hold after any power cut (docs/DESIGN.md, proof): recovery succeeds; every
// acknowledged record is present (unless the ring legitimately reclaimed its segment); nothing is
// invented; mono_ctr and each source's seq strictly increase; the generation does not go back;
// recovery is idempotent; and the recovered store takes new records.

import EdgelogCore
import EdgelogStore

public struct CrashExpectation {
    public var submitted: [RecordKey: [UInt8]]
    /// Acknowledged keys with the segment that holds them.
    public var acked: [RecordKey: UInt64]
    /// The generation of the last durable metadata write before the cut.
    public var minGeneration: UInt64
    public init(submitted: [RecordKey: [UInt8]], acked: [RecordKey: UInt64], minGeneration: UInt64) {
        self.submitted = submitted
        self.acked = acked
        self.minGeneration = minGeneration
    }
}

public enum CrashOracle {
    public static let fixedClock: @Sendable () -> CaptureTime = { CaptureTime(wallNs: 1_800_000_000_000_000_000, bootNs: 9_000_000_000) }

    /// Returns nil when the image passes, or what is wrong.
    /// `verify`, when given, judges the recovered image too (the trust path's verifier: the hash
    /// chain and hash_head must be intact after any cut); it returns what is wrong, or nil.
    /// `identity` is the writer's: a signed store is recovered and written on with its signer, as the
    /// writer would after a power cut.
    public static func check(image: [UInt8], sectorSize: Int, policy: RingFullPolicy, expect: CrashExpectation,
                             identity: SealIdentity = .unsigned(),
                             continueWriting: Bool = true, verify: ((BlockDevice) -> String?)? = nil) -> String? {
        let device = MemoryBlockDevice(image: image, sectorSize: sectorSize)
        let recovered: StoreAnalysis
        do {
            (_, recovered) = try EvidenceStore.recover(device: device, policy: policy, identity: identity, clock: fixedClock)
        } catch {
            return "recovery failed: \(error)"
        }
        if recovered.maxGeneration < expect.minGeneration {
            return "generation went back: saw \(recovered.maxGeneration), durable was \(expect.minGeneration)"
        }
        let once = device.bytes

        // Idempotence: a second recovery writes nothing.
        let again = MemoryBlockDevice(image: once, sectorSize: sectorSize)
        do {
            let (_, second) = try EvidenceStore.recover(device: again, policy: policy, identity: identity, clock: fixedClock)
            if again.writes != 0 || again.bytes != once {
                return "recovery not idempotent: second pass wrote \(again.writes) times (needsRepair: unclean=\(second.uncleanShutdown) adopted=\(second.adopted.count) torn=\(second.torn != nil) passedOver=\(second.passedOver))"
            }
        } catch {
            return "second recovery failed: \(error)"
        }

        // Contents.
        let analysis: StoreAnalysis
        do { analysis = try EvidenceStore.analyze(device: again) } catch { return "analysis after recovery failed: \(error)" }
        var seen = Set<RecordKey>()
        var lastMono: UInt64 = 0
        var lastSeq: [String: UInt64] = [:]
        var problem: String?
        let damage = StoreReader.forEachRecord(device: again, analysis: analysis) { _, record in
            guard problem == nil else { return }
            if record.mono <= lastMono { problem = "mono_ctr not increasing: \(record.mono) after \(lastMono)" }
            lastMono = record.mono
            let source = record.sourceName
            if let previous = lastSeq[source], record.seq <= previous { problem = "seq of \(source) not increasing: \(record.seq) after \(previous)" }
            lastSeq[source] = record.seq
            guard record.rawType == RecordType.data.rawValue else { return }
            let key = RecordKey(source, record.seq)
            guard let payload = expect.submitted[key] else { problem = "invented record \(key)"; return }
            if !payload.elementsEqual(record.payload) { problem = "record \(key) has a different payload" }
            if !seen.insert(key).inserted { problem = "record \(key) appears twice" }
        }
        if let problem { return problem }
        if !damage.isEmpty { return "damaged committed segments: \(damage)" }
        if let verify, let problem = verify(again) { return "verifier after recovery: \(problem)" }
        let tail = analysis.state.ringIsEmpty ? analysis.state.headSegmentID + 1 : analysis.state.tailSegmentID
        for (key, segment) in expect.acked where !seen.contains(key) {
            // A record may only be missing if the ring reclaimed its segment.
            if segment >= tail { return "acknowledged record \(key) (segment \(segment)) missing; tail is \(tail)" }
        }

        guard continueWriting else { return nil }
        do {
            let (store, _) = try EvidenceStore.open(device: again, policy: policy, identity: identity, clock: fixedClock)
            let driver = StoreDriver(store: store, clock: ManualClock(wallNs: 1_800_000_000_000_000_000, bootNs: 10_000_000_000))
            let key = try driver.append(source: "after", payload: Array("{\"after\":1}".utf8))
            _ = try driver.commit()
            try store.close()
            let post = try EvidenceStore.analyze(device: again)
            var found = false
            StoreReader.forEachRecord(device: again, analysis: post) { _, r in
                if r.sourceName == key.source && r.seq == key.seq { found = true }
            }
            if !found { return "record written after recovery is missing" }
        } catch StoreError.ringFull {
            return nil
        } catch {
            return "writing after recovery failed: \(error)"
        }
        return nil
    }
}
