// The evidence store on format 6 (FORMAT.md A.10): what recovery found, every reuse of the oldest
// segment, drops, the ring-full policies, the uplink cursor, the safe-commit window's clean mark and
// boot_seq are on the record; and every power cut at every operation of a session with reclaims
// recovers with every acknowledged data record and the evidence of the cut.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

private let evidenceUUID: [UInt8] = Array(31...46)

private func formatted(slots: Int, segment: Int = 8192, sector: Int = 512) throws -> FaultBlockDevice {
    let device = MemoryBlockDevice(size: PackedGeometry.ringOffset + slots * segment, sectorSize: sector)
    try PackedEvidenceStore.format(device: device, segmentSize: segment, storeUUID: evidenceUUID, deviceID: Array(repeating: 6, count: 16),
                                   wallNs: 1, force: false)
    return FaultBlockDevice(image: device.bytes, sectorSize: sector)
}

private func open(_ device: BlockDevice, policy: RingFullPolicy = .overwriteOldest, bootID: [UInt8]? = nil) throws -> PackedEvidenceStore {
    try PackedEvidenceStore.open(device: device, policy: policy, bootID: bootID,
                                 clock: { CaptureTime(wallNs: 1_700_000_000_000_000_000, bootNs: 5_000_000_000) })
}

/// Fills builders with data records of a few sources, continuing each source's seq from the store.
private struct Feeder {
    var mono: UInt64 = 0
    var seqs: [String: UInt64] = [:]
    var wall: Int64 = 1_700_000_000_000_000_000
    let sources = ["t1", "t2", "hum"]

    mutating func fill(_ store: PackedEvidenceStore, records n: Int) -> FrameBuilder {
        let b = store.makeBuilder()
        mono = max(mono, store.metadata.state.monoHWM)
        for i in 0..<n {
            let name = sources[i % sources.count]
            let seq = max(seqs[name] ?? 0, store.metadata.state.tables.lastSeq(name) ?? 0) + 1
            seqs[name] = seq
            mono += 1
            wall += 50_000_000
            let payload = Array("{\"v\":\(20 + Int(mono % 7)),\"i\":\(mono)}".utf8)
            #expect(b.append(type: .data, source: name, seq: seq, mono: mono, time: CaptureTime(wallNs: wall, bootNs: wall - 1_699_999_990_000_000_000),
                             payload: payload, evidence: false))
        }
        // Evidence the commit adds gets monos right after the data.
        b.evidenceMono = mono + 1
        b.evidenceMonoLimit = mono + 16
        mono += 16
        return b
    }
}

private func history(_ device: BlockDevice) throws -> [PackedRecord] {
    let h = try PackedHistory.analyze(device: device)
    return h.frames(device: device).flatMap(\.records)
}

private func json(_ r: PackedRecord) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(r.payload))) as? [String: Any] ?? [:]
}

private func evidence(_ records: [PackedRecord], _ type: RecordType) -> [[String: Any]] {
    records.filter { $0.rawType == type.rawValue && $0.source == SourceName.engine }.map(json)
}

@Suite("Format 6 evidence store")
struct PackedEvidenceStoreTests {
    @Test("a clean close and reopen writes no recovery frame; an unclean stop is on the record")
    func recoveryRecords() throws {
        let device = try formatted(slots: 8)
        var feed = Feeder()
        do {
            let store = try open(device)
            _ = try store.commit(feed.fill(store, records: 5))
            try store.close()
        }
        do {
            let store = try open(device)
            #expect(store.recovery.cleanBefore)
            _ = try store.commit(feed.fill(store, records: 5))
            // Not closed: the next open finds it unclean.
        }
        let store = try open(device)
        #expect(!store.recovery.cleanBefore)
        let all = try history(device)
        let recoveries = evidence(all, .recovery)
        #expect(recoveries.count == 1)
        #expect(recoveries.first?["unclean_shutdown"] as? Bool == true)
        #expect(all.filter { $0.rawType == RecordType.data.rawValue }.count == 10)
        #expect(store.metadata.unexpRst == 1)
        // Engine seqs run 1, 2, ... without holes.
        let engine = all.filter { $0.source == SourceName.engine }.map(\.seq)
        #expect(engine == Array(1...UInt64(engine.count)))
    }

    @Test("a torn frame after the head is written as an incomplete record and nothing of it is kept")
    func tornFrame() throws {
        let device = try formatted(slots: 8)
        var feed = Feeder()
        let store = try open(device)
        let receipt = try #require(try store.commit(feed.fill(store, records: 4)))
        // A frame cut by power: garbage where the next frame would start.
        let next = store.log.openSegmentBytes
        let at = PackedGeometry.ringOffset + receipt.slot * 8192 + next
        var image = device.current
        for i in 0..<512 { image[at + i] = UInt8(truncatingIfNeeded: i &* 7 &+ 1) }
        image[at] = 0x45
        image[at + 1] = 0x46
        let cut = MemoryBlockDevice(image: image, sectorSize: 512)
        let reopened = try open(cut)
        #expect(reopened.recovery.torn)
        let all = try history(cut)
        let incomplete = evidence(all, .incomplete)
        #expect(incomplete.count == 1)
        let reason = incomplete.first?["reason"] as? String
        let after = (incomplete.first?["after_frame_id"] as? NSNumber)?.uint64Value
        #expect(reason == "torn_frame")
        #expect(after == receipt.commitID)
        #expect(all.filter { $0.rawType == RecordType.data.rawValue }.count == 4)
    }

    @Test("overwrite-oldest reuses the oldest segment with a gap record that counts its records, sealed in lost_total")
    func overwriteOldest() throws {
        let device = try formatted(slots: 4)
        var feed = Feeder()
        let store = try open(device)
        var written = 0
        for _ in 0..<80 {
            _ = try store.commit(feed.fill(store, records: 12))
            written += 12
        }
        try store.close()
        let all = try history(device)
        let gaps = evidence(all, .gap)
        #expect(!gaps.isEmpty)
        #expect(gaps.allSatisfy { $0["reason"] as? String == "ring_overwrite" && $0["lost_records"] is NSNumber })
        let h = try PackedHistory.analyze(device: device)
        let kept = all.filter { $0.rawType == RecordType.data.rawValue }.count
        #expect(h.state.lostTotal + UInt64(kept) == UInt64(written))
        #expect(h.state.lostTotal > 0)
    }

    @Test("the last frames of the oldest segment damaged before its reclaim do not shorten what its gap record says was lost")
    func reclaimCountsFromTheNextHeader() throws {
        let device = try formatted(slots: 4)
        var feed = Feeder()
        let store = try open(device)
        // Until the ring is full and the open segment has no room left: the next commit reclaims.
        var guardCount = 0
        while guardCount < 2000 {
            guardCount += 1
            let m = store.log.metadata
            if m.headFrameID > 0, m.nextSlot(after: m.headSlot) == m.tailSlot, store.log.openSegmentBytes > 8192 - 512 { break }
            _ = try store.commit(feed.fill(store, records: 6))
        }
        let h = try PackedHistory.analyze(device: device)
        let tail = h.frames(device: device).filter { $0.segmentID == h.tailSegmentID }
        let expected = tail.reduce(0) { $0 + $1.records.filter { $0.type == .data }.count }
        // A card writer zeroes the tail's last two frames.
        for f in tail.suffix(2) {
            let at = UInt64(PackedGeometry.ringOffset + h.tailSlot * 8192 + f.offset)
            let zeros = [UInt8](repeating: 0, count: 512)
            try zeros.withUnsafeBytes { try device.write(at: at, from: $0) }
        }
        _ = try store.commit(feed.fill(store, records: 6))
        let gap = try #require(evidence(try history(device), .gap).first)
        #expect((gap["lost_records"] as? NSNumber)?.intValue == expected, "\(gap)")
        #expect((gap["lost_segment_id"] as? NSNumber)?.uint64Value == h.tailSegmentID)
    }

    @Test("pause refuses a full ring without writing, and the store stays healthy")
    func pause() throws {
        let device = try formatted(slots: 4)
        var feed = Feeder()
        let store = try open(device, policy: .pause)
        var refused: StoreError?
        for _ in 0..<200 {
            do throws(StoreError) { _ = try store.commit(feed.fill(store, records: 12)) } catch {
                refused = error
                break
            }
        }
        guard case .ringFull(.pause, _)? = refused else {
            Issue.record("expected ringFull, got \(String(describing: refused))")
            return
        }
        let writes = device.log.count
        #expect(throws: StoreError.self) { _ = try store.commit(feed.fill(store, records: 1)) }
        #expect(device.log.count == writes)
        try store.close()
        let h = try PackedHistory.analyze(device: device)
        #expect(h.metadata.clean && h.state.lostTotal == 0 && h.tailSegmentID == 1)
    }

    @Test("overwrite-acked reuses a segment only once every frame of it is acknowledged; those records are not lost")
    func overwriteAcked() throws {
        let device = try formatted(slots: 4)
        var feed = Feeder()
        let store = try open(device, policy: .overwriteAcked)
        var receipts: [CommitReceipt] = []
        var full = false
        for _ in 0..<200 {
            do throws(StoreError) {
                if let r = try store.commit(feed.fill(store, records: 12)) { receipts.append(r) }
            } catch {
                guard case .ringFull(.overwriteAcked, _) = error else { throw error }
                full = true
                break
            }
        }
        #expect(full)
        // Acknowledge everything committed so far: the writer goes on, and the reuse is no loss.
        store.acknowledgeUpstream(throughFrame: try #require(receipts.last).commitID)
        for _ in 0..<10 { _ = try store.commit(feed.fill(store, records: 12)) }
        try store.close()
        let gaps = evidence(try history(device), .gap)
        #expect(!gaps.isEmpty && gaps.allSatisfy { $0["reason"] as? String == "uplink_acked" })
        let h = try PackedHistory.analyze(device: device)
        #expect(h.state.lostTotal == 0)
        #expect(h.state.uplinkCursor == receipts.last!.commitID + 1)
    }

    @Test("drops are written as drop records and sealed in dropped_total")
    func drops() throws {
        let device = try formatted(slots: 8)
        var feed = Feeder()
        let store = try open(device)
        let b = feed.fill(store, records: 3)
        b.pendingDrops = [DropNote(source: "t1", firstSeq: 40, lastSeq: 49, count: 10)]
        _ = try store.commit(b)
        try store.close()
        let drop = evidence(try history(device), .drop)
        #expect(drop.count == 1 && (drop.first?["dropped"] as? NSNumber)?.intValue == 10)
        #expect(try PackedHistory.analyze(device: device).state.droppedTotal == 10)
    }

    @Test("the safe-commit window's commit ends with its brownout record after a gap, seals bo_event and leaves the store clean")
    func window() throws {
        let device = try formatted(slots: 4)
        var feed = Feeder()
        let store = try open(device)
        // Fill the ring to the point where the next frame reuses the oldest segment.
        while store.metadata.tailSegmentID == 1 || store.log.openSegmentBytes < 7000 {
            _ = try store.commit(feed.fill(store, records: 12))
            if store.metadata.tailSegmentID > 1 && store.log.openSegmentBytes > 7000 { break }
        }
        let b = feed.fill(store, records: 12)
        var payload = EvidenceJSON()
        payload.add("trigger", .word("gpio"))
        b.closingEvidence = (.brownout, payload)
        store.noteBrownout()
        let receipt = try #require(try store.commit(b, markClean: true))
        let h = try PackedHistory.analyze(device: device)
        #expect(h.metadata.clean)
        #expect(h.state.boEvent == 1)
        let frame = try #require(h.frames(device: device).last)
        #expect(frame.frameID == receipt.commitID)
        #expect(frame.records.last?.rawType == RecordType.brownout.rawValue)
        let engine = frame.records.filter { $0.source == SourceName.engine }
        #expect(zip(engine, engine.dropFirst()).allSatisfy { $0.seq + 1 == $1.seq && $0.mono < $1.mono })
        try store.markOpen()
        #expect(try !PackedHistory.analyze(device: device).metadata.clean)
    }

    @Test("a writer under a new boot id starts a new boot_seq, which its records carry")
    func bootSeq() throws {
        let device = try formatted(slots: 8)
        var feed = Feeder()
        let bootA = [UInt8](repeating: 0xA, count: 16), bootB = [UInt8](repeating: 0xB, count: 16)
        for boot in [bootA, bootA, bootB] {
            let store = try open(device, bootID: boot)
            _ = try store.commit(feed.fill(store, records: 2))
            try store.close()
        }
        let data = try history(device).filter { $0.rawType == RecordType.data.rawValue }
        #expect(data.map(\.bootSeq) == [1, 1, 1, 1, 2, 2])
        #expect(try PackedHistory.analyze(device: device).metadata.bootID == bootB)
    }

    @Test("format refuses a store of either format; a format 5 store is refused by name and left untouched")
    func refusals() throws {
        let device = try formatted(slots: 8)
        #expect(throws: StoreError.alreadyFormatted(device: device.name)) {
            try PackedEvidenceStore.format(device: device, segmentSize: 8192, storeUUID: evidenceUUID, wallNs: 0, force: false)
        }
        let old = MemoryBlockDevice(size: 1 << 20, sectorSize: 512)
        try EvidenceStore.format(device: old, segmentSize: 32 << 10, storeUUID: evidenceUUID, wallNs: 0, force: false)
        let before = old.bytes
        do throws(StoreError) {
            _ = try PackedEvidenceStore.open(device: old, clock: { CaptureTime(wallNs: 1, bootNs: 1) })
            Issue.record("a format 5 store was opened")
        } catch {
            guard case .olderFormat(_, 5, 6) = error else { throw error }
        }
        #expect(old.bytes == before)
    }

    @Test("the starts recorded in the newest frames come back newest first, with whether each found the store unclean; commit cost is measured without changing what the store holds")
    func recentBoots() throws {
        let device = try formatted(slots: 8)
        var feed = Feeder()
        var timeSeq: UInt64 = 0
        for (i, unexpected) in [false, false, true].enumerated() {
            let store = try open(device)
            if i == 2 {
                let before = try history(device)
                let cost = try store.measureCommitCost(samples: 2, clock: { Int64(DispatchTime.now().uptimeNanoseconds) })
                #expect(cost.flushNs.count == 2 && cost.segmentNs.count == 2)
                #expect(try history(device) == before)
            }
            let b = feed.fill(store, records: 0)
            timeSeq += 1
            let payload = Array("{\"boot_id\":\"00\",\"boot_seq\":1,\"unexpected_reset\":\(unexpected)}".utf8)
            feed.mono += 1
            #expect(b.append(type: .boot, source: SourceName.time, seq: timeSeq, mono: feed.mono,
                             time: CaptureTime(wallNs: 1_700_000_000_000_000_000 + Int64(i), bootNs: Int64(i + 1) * 1_000_000_000), payload: payload, evidence: false))
            b.evidenceMono = feed.mono + 1
            b.evidenceMonoLimit = feed.mono + 8
            feed.mono += 8
            _ = try store.commit(b)
            for _ in 0..<3 { _ = try store.commit(feed.fill(store, records: 4)) }
            if i != 1 { try store.close() }
            if i == 2 {
                let boots = try open(device).recentBoots(maxSegments: 64, maxBoots: 5)
                #expect(boots.map(\.unexpectedReset) == [true, false, false])
                #expect(boots.map(\.bootNs) == [3_000_000_000, 2_000_000_000, 1_000_000_000])
            }
        }
    }

    @Test("every cut of a session with reclaims, drops and a window recovers with every acknowledged data record, and says so")
    func crashEnumeration() throws {
        let device = try formatted(slots: 4)
        var feed = Feeder()
        var acked: [(op: Int, records: [(String, UInt64)], segment: UInt64)] = []
        var reusedAt: [UInt64: Int] = [:]
        do {
            let store = try open(device)
            try store.close()
        }
        let store = try open(device)
        var slotHolds: [Int: UInt64] = [:]
        for k in 0..<100 {
            let b = feed.fill(store, records: 3 + k % 9)
            if k % 7 == 3 { b.pendingDrops = [DropNote(source: "hum", firstSeq: 1000 + UInt64(k), lastSeq: 1000 + UInt64(k), count: 1)] }
            let before = device.log.count
            let sealed = b.records.filter { $0.rawType == RecordType.data.rawValue }.map { ($0.source, $0.seq) }
            let receipt = try #require(try store.commit(b, markClean: k == 25))
            if k == 25 { try store.markOpen() }
            if let previous = slotHolds[receipt.slot], previous != receipt.segmentID, reusedAt[previous] == nil { reusedAt[previous] = before }
            slotHolds[receipt.slot] = receipt.segmentID
            acked.append((device.log.count, sealed, receipt.segmentID))
        }
        #expect(reusedAt.count >= 2)
        let images = CrashImageBuilder(device: device)
        var states = 0, unclean = 0
        var failures: [String] = []
        for cut in images.cuts {
            for (v, variant) in CrashVariant.allCases.enumerated() {
                let point = CrashPoint(cut: cut, variant: variant, seed: UInt64(cut * 17 + v))
                let image = MemoryBlockDevice(image: images.image(at: point, sectorSize: 512), sectorSize: 512)
                states += 1
                let reopened: PackedEvidenceStore
                do { reopened = try open(image) } catch {
                    failures.append("\(point): open failed: \(error)")
                    continue
                }
                do { try reopened.close() } catch { failures.append("\(point): close failed: \(error)") }
                guard let records = try? history(image) else {
                    failures.append("\(point): no history after recovery")
                    continue
                }
                let present = Set(records.filter { $0.rawType == RecordType.data.rawValue }.map { "\($0.source)#\($0.seq)" })
                // The recovery frame itself may reuse the oldest segment (overwrite-oldest): its gap record says so.
                let reclaimed = Set(evidence(records, .gap).compactMap { ($0["lost_segment_id"] as? NSNumber)?.uint64Value })
                for a in acked where a.op <= cut {
                    if let at = reusedAt[a.segment], at <= cut { continue }
                    if reclaimed.contains(a.segment) { continue }
                    let missing = a.records.filter { !present.contains("\($0.0)#\($0.1)") }
                    if let first = missing.first {
                        failures.append("\(point): \(missing.count) acknowledged records of segment \(a.segment) missing, from \(first.0) seq \(first.1)")
                    }
                }
                if !reopened.recovery.cleanBefore {
                    unclean += 1
                    if evidence(records, .recovery).isEmpty { failures.append("\(point): unclean stop without a recovery record") }
                }
            }
        }
        print("packed evidence crash states: \(states) states, \(unclean) unclean, \(failures.count) failures")
        #expect(states > 200 && unclean > 0)
        #expect(failures.count == 0, "\(failures.prefix(5).joined(separator: " | "))")
    }
}
