// The adversarial suite (issue 9): an attacker who can write every byte of the card but holds no
// key. Each class of attack has several variants, each with the verdict and reason it must get;
// where the attack would steer the writer, the writer is run on it too. The same images go through
// `scripts/edgelog_verify.py` in the CLI comparison test.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit
import Testing

/// Metadata field offsets (FORMAT.md section 2).
enum MetaField {
    static let generation = 40, headSegmentID = 88, headSlot = 96, tailSlot = 100, tailSegmentID = 104, wrapCount = 112
    static let clean = 116, unexpRst = 120, boEvent = 124, eccErrCnt = 128, verifyStat = 132, monoHWM = 136
    static let uplinkCursor = 144, recordsTotal = 152, droppedTotal = 160, lostTotal = 168, badBlockCount = 176
    static let rollbackCtr = 2832, bootSeq = 2912, clockSteps = 2916
}

extension Forge {
    /// Sets a field of both metadata slots, as an attacker would, with good CRCs.
    mutating func setMeta(_ offset: Int, _ value: UInt64, size: Int) {
        for slot in 0..<2 {
            let at = slot * 4096 + offset
            for k in 0..<size { image[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
            fixMetadataCRC(slot: slot)
        }
    }

    func meta(_ offset: Int, slot: Int) -> UInt64 { image.withUnsafeBytes { $0.le(slot * 4096 + offset) } }
}

@Suite("Adversarial suite: an attacker with the card and no key")
struct AdversarialTests {
    static let clock = CrashOracle.fixedClock

    func store(segments: Int = 6, perSegment: Int = 3, slots: Int = 12) throws -> SignedStore {
        var store = try SignedStore(slots: slots)
        try store.session(segments: segments, perSegment: perSegment)
        return store
    }

    /// Opens the image for writing as ingest does; the error, if refused, and whether a byte changed.
    func openWriter(_ image: [UInt8], _ store: SignedStore, policy: RingFullPolicy = .pause) -> (error: StoreError?, device: MemoryBlockDevice) {
        let device = MemoryBlockDevice(image: image)
        do {
            let (writer, _) = try EvidenceStore.open(device: device, policy: policy, identity: store.identity, clock: Self.clock)
            try writer.close()
            return (nil, device)
        } catch {
            return (error, device)
        }
    }

    // MARK: 1. Laundering through salvage

    @Test("class 1: a planted torn segment's records are never signed, exported or kept", arguments: ["reading", "gap", "formula"])
    func plantedTornSegment(variant: String) throws {
        var store = try store(segments: 3)
        // The attacker builds a real segment 4 with records of their choosing (a second store of the
        // same geometry and uuid stands in for their tools), copies it after the head and tears its marker.
        var other = try SignedStore(slots: 12)
        let forged: [UInt8] = switch variant {
        case "reading": Array("{\"t\":-99.9,\"forged\":true}".utf8)
        case "gap": Array("{\"reason\":\"ring_overwrite\",\"lost_segment_id\":1}".utf8)
        default: Array("{\"x\":\"=HYPERLINK(\\\"http://x\\\")\"}".utf8)
        }
        try other.session(segments: 4, perSegment: 3, payloads: { _ in forged })
        var forge = Forge(image: store.device.bytes)
        let s = Forge.slotOffset(3)
        forge.image.replaceSubrange(s..<(s + segmentSize), with: other.device.bytes[s..<(s + segmentSize)])
        // Chain it onto the genuine head (prev_crc and prev_hash), good header CRC, no marker.
        let headMarker = forge.markerOffset(slot: 2)
        forge.setU32(forge.u32(headMarker + 32), at: s + 120)
        forge.image.replaceSubrange((s + 80)..<(s + 112), with: forge.image[(headMarker + 40 + 152)..<(headMarker + 40 + 184)])
        forge.fixHeaderCRC(slot: 3)
        forge.image[forge.markerOffset(slot: 3)] ^= 0xFF
        forge.setMeta(MetaField.clean, 0, size: 4)

        let before = store.verify(forge.image)
        #expect(before.notes.contains { $0.note == "torn_tail_power_cut" }, "\(before.notes)")
        store.device = MemoryBlockDevice(image: forge.image)
        let (writer, analysis) = try EvidenceStore.open(device: store.device, identity: store.identity, clock: Self.clock)
        try writer.close()
        #expect(analysis.torn?.readableCount == 3)
        let records = try exported(store.device)
        #expect(!records.contains { $0.payload == String(decoding: forged, as: UTF8.self) }, "forged records were committed")
        let incomplete = try #require(records.first { $0.type == RecordType.incomplete.rawValue })
        #expect(incomplete.payload.contains("\"records_readable\":3"))
        let after = store.verify()
        #expect(after.passed, "\(after.segments) \(after.findings)")
        #expect(after.notes.filter { $0.note == "power_cut_explained" }.count == 2)
    }

    // MARK: 2. Deleting the oldest history

    @Test("class 2: zeroed oldest segments with the metadata tail moved forward fail, with and without an anchor")
    func deletedOldest() throws {
        let store = try store()
        for deleted in [1, 2, 4] {
            var forge = Forge(image: store.device.bytes)
            for slot in 0..<deleted { forge.zeroSlot(slot) }
            forge.setMeta(MetaField.tailSegmentID, UInt64(deleted + 1), size: 8)
            forge.setMeta(MetaField.tailSlot, UInt64(deleted), size: 4)
            for anchor in [nil, store.seals.last] {
                let report = store.verify(forge.image, anchor: anchor)
                #expect(!report.passed)
                #expect((1...deleted).allSatisfy { report.reasonsBySegment[UInt64($0)] == "gap" }, "\(report.reasonsBySegment)")
                #expect(report.findings.contains { $0.reason == .metadataMismatch && $0.detail.contains("tail_segment_id") })
            }
            // The tail moved without zeroing anything: the segments are still checked, and the metadata is named.
            var moved = Forge(image: store.device.bytes)
            moved.setMeta(MetaField.tailSegmentID, UInt64(deleted + 1), size: 8)
            moved.setMeta(MetaField.tailSlot, UInt64(deleted), size: 4)
            let report = store.verify(moved.image)
            #expect(report.segments.count == 6 && report.failedSegments == 0)
            #expect(Set(report.findingReasons) == ["metadata_mismatch"] && report.findings.contains { $0.detail.contains("tail_segment_id") })
            // The writer does not continue from it.
            let writer = openWriter(moved.image, store)
            #expect(writer.error.map { if case .metadataContradictsSeal = $0 { true } else { false } } == true)
            #expect(writer.device.bytes == moved.image)
        }
    }

    // MARK: 3. Substituting another history

    @Test("class 3: another store of the same device and key, or a history past the anchor's reach, is not a continuation")
    func substitutedHistory() throws {
        let genuine = try store(segments: 3)
        let anchor = try #require(genuine.seals.last)
        // Same device, same key, another store (another uuid): the anchor names the store.
        var sibling = try SignedStore(uuid: Array(repeating: 0x5C, count: 16))
        try sibling.session(segments: 8, perSegment: 2)
        let report = sibling.verify(anchor: anchor)
        #expect(report.findingReasons == ["foreign_segment"], "\(report.findings)")
        // The writer refuses it too.
        #expect(AnchorCheck.refusal(anchor: SignedHead(seal: anchor), state: try EvidenceStore.analyze(device: sibling.device).state,
                                    device: sibling.device)?.reason == "anchor_mismatch")

        // A long history of the genuine store under overwrite-oldest: the anchored segment is gone.
        var long = try SignedStore(slots: 6)
        try long.session(segments: 2, perSegment: 2)
        let early = try #require(long.seals.last)
        let (writer, _) = try EvidenceStore.open(device: long.device, policy: .overwriteOldest, identity: long.identity, clock: Self.clock)
        let driver = StoreDriver(store: writer, clock: ManualClock())
        for n in 0..<10 {
            _ = try driver.append(source: "sensor", payload: Array("{\"m\":\(n)}".utf8))
            _ = try driver.commit()
        }
        try writer.close()
        let lapped = long.verify(anchor: early)
        #expect(lapped.findingReasons == ["anchor_not_retained"], "\(lapped.findings)")
        // The anchor of the segment just before the oldest retained one is checked through prev_hash.
        let retained = long.verify()
        let start = try #require(retained.segments.first?.segmentID)
        #expect(retained.passed)
        _ = start
    }

    // MARK: 4. Truncation shown as a power cut

    @Test("class 4: deleted newest segments behind a torn stub are a truncation; a torn tail after a clean close too")
    func truncationAsPowerCut() throws {
        let store = try store(segments: 8, perSegment: 2)
        let full = store.device.bytes
        // Back to the metadata as it was after segment 5 (the attacker rewrites both slots), segment
        // 6 torn by one flipped byte, 7 and 8 left intact behind it.
        var forge = Forge(image: store.snapshots[4])
        for slot in 5..<8 {
            let s = Forge.slotOffset(slot)
            forge.image.replaceSubrange(s..<(s + segmentSize), with: full[s..<(s + segmentSize)])
        }
        forge.image[forge.markerOffset(slot: 5) + 100] ^= 1
        forge.setMeta(MetaField.clean, 0, size: 4)
        let report = store.verify(forge.image)
        #expect(report.findings.filter { $0.reason == .truncatedTail }.count == 2, "\(report.findings)")
        #expect(!report.passed)
        // Only segment 6, torn, and nothing after it: indistinguishable from a cut commit without an anchor,
        // and the verifier says so.
        var alone = Forge(image: forge.image)
        for slot in 6..<8 { alone.zeroSlot(slot) }
        let lone = store.verify(alone.image)
        #expect(lone.passed)
        #expect(lone.notes.map(\.note).contains("torn_tail_power_cut") && lone.notes.last?.note == "truncation_not_excluded")
        #expect(store.verify(alone.image, anchor: store.seals.last).findingReasons == ["truncated_tail"])
        // The same torn stub after a cleanly closed head cannot be a power cut.
        var clean = Forge(image: alone.image)
        clean.setMeta(MetaField.clean, 1, size: 4)
        #expect(store.verify(clean.image).findingReasons == ["truncated_tail"])
    }

    // MARK: 5. The unsigned metadata tells the story and steers the writer

    @Test("class 5: every sealed metadata field edited is metadata_mismatch, and the writer refuses it untouched", arguments: [
        ("unexp_rst", MetaField.unexpRst, 4, UInt64(0)), ("lost_total", MetaField.lostTotal, 8, 7), ("dropped_total", MetaField.droppedTotal, 8, 9),
        ("records_total", MetaField.recordsTotal, 8, 1), ("wrap_count", MetaField.wrapCount, 4, 3), ("bo_event", MetaField.boEvent, 4, 2),
        ("clock_steps", MetaField.clockSteps, 4, 5), ("mono_hwm", MetaField.monoHWM, 8, 1),
        ("rollback_ctr", MetaField.rollbackCtr, 8, 0), ("boot_seq", MetaField.bootSeq, 4, 0), ("uplink_cursor", MetaField.uplinkCursor, 8, 0),
        ("key_epoch", 2888, 4, 7), ("sig_alg", 2892, 1, 1), ("key_src", 2893, 1, 3), ("source table", 1280 + 40, 8, 1),
        ("ring_slots", 72, 4, 8),
    ])
    func editedMetadata(field: String, offset: Int, size: Int, value: UInt64) throws {
        var store = try SignedStore()
        try store.session(segments: 3, perSegment: 3)
        // Give the at-least counters something to be lowered from: a writer under a boot id
        // (boot_seq 1) killed after a commit (the next open recovers: unexp_rst 1, sealed).
        let boot = [UInt8](repeating: 7, count: 16)
        let (killed, _) = try EvidenceStore.open(device: store.device, identity: store.identity, bootID: boot, clock: Self.clock)
        let driver = StoreDriver(store: killed, clock: ManualClock())
        _ = try driver.append(source: "sensor", payload: Array("{\"k\":1}".utf8))
        _ = try driver.commit()
        let (again, _) = try EvidenceStore.open(device: store.device, identity: store.identity, bootID: boot, clock: Self.clock)
        try again.close()
        #expect(again.metadata.unexpRst == 1 && again.metadata.bootSeq == 1)
        var forge = Forge(image: store.device.bytes)
        forge.setMeta(offset, value, size: size)
        let report = store.verify(forge.image)
        let mismatch = report.findings.filter { $0.reason == .metadataMismatch }
        #expect(mismatch.count == 1 && mismatch[0].detail.contains(field.components(separatedBy: " ")[0]), "\(field): \(report.findings)")
        #expect(report.failedSegments == 0)
        let writer = openWriter(forge.image, store)
        #expect(writer.error.map { if case .metadataContradictsSeal = $0 { true } else { false } } == true, "\(field): \(String(describing: writer.error))")
        #expect(writer.device.bytes == forge.image, "\(field): the writer changed the store")
    }

    @Test("class 5: a faked full ring (tail_slot after the head, clean_flag 0) neither passes nor makes the writer overwrite history")
    func fakedFullRing() throws {
        let store = try store(segments: 4, perSegment: 2, slots: 12)
        var forge = Forge(image: store.device.bytes)
        let head = forge.meta(MetaField.headSlot, slot: 0)
        forge.setMeta(MetaField.tailSlot, head + 1, size: 4)
        for clean in [UInt64(0), 1] {
            forge.setMeta(MetaField.clean, clean, size: 4)
            // Segments 1 to 4 cannot fill the slots from head + 1 round to the head: the slot is invalid
            // (FORMAT.md 2); were the range consistent, tail_slot would contradict the seal.
            let report = store.verify(forge.image, anchor: store.seals.last)
            #expect(!report.passed && report.findingReasons.contains("not_a_store"), "clean \(clean): \(report.findings)")
            for policy in [RingFullPolicy.overwriteOldest, .pause] {
                let writer = openWriter(forge.image, store, policy: policy)
                #expect(writer.error.map { if case .notAStore = $0 { true } else { false } } == true, "\(String(describing: writer.error))")
                #expect(writer.device.bytes == forge.image)
            }
        }
        // A consistent but moved range (tail and head slot shifted together) contradicts the seal.
        var shifted = Forge(image: store.device.bytes)
        shifted.setMeta(MetaField.tailSlot, 1, size: 4)
        shifted.setMeta(MetaField.headSlot, head + 1, size: 4)
        let moved = store.verify(shifted.image)
        #expect(!moved.passed, "\(moved.findings) \(moved.reasonsBySegment)")
        let writer = openWriter(shifted.image, store, policy: .overwriteOldest)
        #expect(writer.error != nil && writer.device.bytes == shifted.image, "\(String(describing: writer.error))")
        // clean_flag other than 0 or 1 makes the slot invalid (both verifiers read it the same way).
        var odd = Forge(image: store.device.bytes)
        odd.setMeta(MetaField.clean, 2, size: 4)
        #expect(store.verify(odd.image).findingReasons.contains("not_a_store"))
        // commit_id other than head_segment_id: invalid too (it would steer the writer's next commit id).
        var commit = Forge(image: store.device.bytes)
        commit.setMeta(80, 2, size: 8)
        #expect(store.verify(commit.image).findingReasons.contains("not_a_store"))
    }

    @Test("class 5: a forged tail segment's counts never reach a signed gap record")
    func forgedTailCounts() throws {
        var store = try SignedStore(slots: 5)
        try store.session(segments: 5, perSegment: 3)
        // The tail (segment 1) replaced by an unsigned segment of the same id and slot holding one record.
        let other = try SignedStore(slots: 5)
        let unsigned = SealIdentity(deviceID: deviceID, fwVerHash: firmware, signer: nil)
        let (w, _) = try EvidenceStore.open(device: other.device, identity: unsigned, clock: Self.clock)
        let d = StoreDriver(store: w, clock: ManualClock())
        _ = try d.append(source: "sensor", payload: Array("{\"f\":1}".utf8))
        _ = try d.commit()
        try w.close()
        var forge = Forge(image: store.device.bytes)
        forge.image.replaceSubrange(Forge.slotOffset(0)..<Forge.slotOffset(1), with: other.device.bytes[Forge.slotOffset(0)..<Forge.slotOffset(1)])
        store.device = MemoryBlockDevice(image: forge.image)
        let (writer, _) = try EvidenceStore.open(device: store.device, policy: .overwriteOldest, identity: store.identity, clock: Self.clock)
        let driver = StoreDriver(store: writer, clock: ManualClock())
        _ = try driver.append(source: "sensor", payload: Array("{\"after\":1}".utf8))
        _ = try driver.commit()
        try writer.close()
        let gap = try #require(try exported(store.device).first { $0.type == RecordType.gap.rawValue })
        #expect(gap.payload == "{\"reason\":\"ring_overwrite\",\"lost_segment_id\":1,\"lost_records\":null,\"first_mono\":null,\"last_mono\":null}", "\(gap.payload)")
        #expect(writer.metadata.lostTotal == 0)
        // A genuine tail is counted.
        let (again, _) = try EvidenceStore.open(device: store.device, policy: .overwriteOldest, identity: store.identity, clock: Self.clock)
        let more = StoreDriver(store: again, clock: ManualClock())
        _ = try more.append(source: "sensor", payload: Array("{\"later\":1}".utf8))
        _ = try more.commit()
        try again.close()
        let counted = try exported(store.device).filter { $0.type == RecordType.gap.rawValue }.last
        #expect(counted?.payload.contains("\"lost_segment_id\":2,\"lost_records\":3,") == true, "\(String(describing: counted))")
        _ = other
    }

    @Test("class 6: a writer refuses values within reach of a bound (no increment may wrap)", arguments: [
        (MetaField.generation, 8, (UInt64(1) << 62) - 1), (MetaField.rollbackCtr, 8, (UInt64(1) << 62) - 1),
        (MetaField.unexpRst, 4, UInt64(UInt32.max)), (MetaField.bootSeq, 4, UInt64(UInt32.max)),
    ])
    func writerBounds(offset: Int, size: Int, value: UInt64) throws {
        let store = try store(segments: 2)
        var forge = Forge(image: store.device.bytes)
        forge.setMeta(offset, value, size: size)
        let writer = openWriter(forge.image, store)
        #expect(writer.error.map { if case .implausibleMetadata = $0 { true } else { false } } == true, "\(String(describing: writer.error))")
        #expect(writer.device.bytes == forge.image)
    }

    @Test("class 5: raised at-least counters are not trusted; a raised uplink cursor does not make overwrite-acked reclaim")
    func raisedCounters() throws {
        var store = try SignedStore(slots: 4)
        try store.session(segments: 4, perSegment: 1)
        var forge = Forge(image: store.device.bytes)
        forge.setMeta(MetaField.uplinkCursor, 1 << 40, size: 8)
        // Verify: above the sealed value is allowed (acknowledgments come between commits) but not believed.
        #expect(store.verify(forge.image).passed)
        let device = MemoryBlockDevice(image: forge.image)
        let (writer, _) = try EvidenceStore.open(device: device, policy: .overwriteAcked, identity: store.identity, clock: Self.clock)
        let driver = StoreDriver(store: writer, clock: ManualClock())
        _ = try driver.append(source: "sensor", payload: Array("{\"late\":1}".utf8))
        #expect(throws: StoreError.self) { try driver.commit() }
        #expect(writer.metadata.tailSegmentID == 1, "a segment the collector never acknowledged was reclaimed")
    }

    @Test("class 5: clean_flag 0 does not turn a wiped metadata slot into a note")
    func wipedSlot() throws {
        let store = try store(segments: 2)
        var forge = Forge(image: store.device.bytes)
        forge.setMeta(MetaField.clean, 0, size: 4)
        let newer = forge.meta(MetaField.generation, slot: 0) > forge.meta(MetaField.generation, slot: 1) ? 1 : 0
        forge.image.replaceSubrange((newer * 4096)..<(newer * 4096 + 4096), with: Array(repeating: 0, count: 4096))
        let report = store.verify(forge.image)
        #expect(report.findings.contains { $0.reason == .crcMismatch && $0.offset == UInt64(newer * 4096) }, "\(report.findings) \(report.notes)")
        // A torn write (garbage in the slot) is still a note, which says it cannot be told from an edit.
        forge.image[newer * 4096 + 700] = 0x55
        let torn = store.verify(forge.image)
        #expect(torn.notes.contains { $0.note == "torn_metadata_write" && $0.detail.contains("not verified") })
    }

    @Test("class 5: a segment written by a steered writer is sequence_regression")
    func steeredWriterIsSeen() throws {
        var store = try store(segments: 3, perSegment: 2)
        // Re-sign segment 3 with mono and seq values that repeat segment 2's: what a writer whose
        // mono_hwm and last_seq had been lowered would write (the attacker cannot sign; the test can).
        var forge = Forge(image: store.device.bytes)
        let first2 = forge.records(slot: 1)[0], first3 = forge.records(slot: 2)[0]
        forge.setU64(forge.image.withUnsafeBytes { $0.le(first2 + 8) }, at: first3 + 8)
        forge.fixRecordCRC(at: first3)
        forge.fixBodyAndMarker(slot: 2)
        forge.resealHash(slot: 2)
        try forge.resign(slot: 2, with: store.signer)
        // Segment 3's hash changed: re-chain segment 4 onwards the same way.
        for slot in 3..<6 {
            let prev = forge.markerOffset(slot: slot - 1)
            let s = Forge.slotOffset(slot)
            forge.image.replaceSubrange((s + 80)..<(s + 112), with: forge.image[(prev + 40 + 152)..<(prev + 40 + 184)])
            forge.setU32(forge.u32(prev + 32), at: s + 120)
            forge.fixHeaderCRC(slot: slot)
            let m = forge.markerOffset(slot: slot)
            forge.image.replaceSubrange((m + 40 + 120)..<(m + 40 + 152), with: forge.image[(s + 80)..<(s + 112)])
            forge.fixBodyAndMarker(slot: slot)
            forge.resealHash(slot: slot)
            try forge.resign(slot: slot, with: store.signer)
        }
        store.device = MemoryBlockDevice(image: forge.image)
        let report = store.verify()
        #expect(report.reasonsBySegment[3] == "sequence_regression", "\(report.reasonsBySegment)")
    }

    // MARK: 6. Hostile numbers

    static let hostile: [(Int, UInt64)] = [
        (MetaField.headSegmentID, UInt64.max), (MetaField.headSegmentID, 1 << 40), (MetaField.tailSegmentID, UInt64.max),
        (MetaField.generation, UInt64.max), (MetaField.recordsTotal, 1 << 63), (MetaField.monoHWM, UInt64.max),
        (MetaField.rollbackCtr, UInt64.max), (MetaField.uplinkCursor, UInt64.max), (MetaField.badBlockCount, 64),
    ]

    @Test("class 6: ids, generations and counters at the edges give typed errors or findings, never a trap or a hang",
          arguments: AdversarialTests.hostile)
    func hostileNumbers(offset: Int, value: UInt64) throws {
        let store = try store(segments: 3)
        for onlyOlder in [false, true] {
            var forge = Forge(image: store.device.bytes)
            let older = forge.meta(MetaField.generation, slot: 0) < forge.meta(MetaField.generation, slot: 1) ? 0 : 1
            for slot in onlyOlder ? [older] : [0, 1] {
                let at = slot * 4096 + offset
                let size = [MetaField.badBlockCount].contains(offset) ? 4 : 8
                for k in 0..<size { forge.image[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
                forge.fixMetadataCRC(slot: slot)
            }
            let device = MemoryBlockDevice(image: forge.image)
            if let analysis = try? EvidenceStore.analyze(device: device) {
                _ = StoreReader.forEachRecord(device: device, analysis: analysis) { _, _ in }
                _ = try? StoreHead.seal(device: device)
            }
            let report = store.verify(forge.image)
            _ = report.reasons
            _ = openWriter(forge.image, store)
        }
    }

    // MARK: 7. The bad-block table

    @Test("class 7: bad slots never shrink what is verified")
    func badBlockTable() throws {
        let store = try store(segments: 4, slots: 6)
        // Every slot but the head's listed bad: not a plausible table, the slot is invalid.
        var all = Forge(image: store.device.bytes)
        let head = Int(all.meta(MetaField.headSlot, slot: 0))
        var n = 0
        for slot in 0..<6 where slot != head {
            for meta in 0..<2 {
                let o = meta * 4096 + 256 + 16 * n
                all.setU32(UInt32(slot), at: o)
                all.image.withUnsafeMutableBytes { $0.setLE(UInt16(1), at: o + 4) }
            }
            n += 1
        }
        all.setMeta(MetaField.badBlockCount, UInt64(n), size: 4)
        #expect(!store.verify(all.image).passed)
        // One retained slot listed bad: the walk steps back from the head, so every id still gets a
        // verdict, and the edited table is named.
        var one = Forge(image: store.device.bytes)
        for meta in 0..<2 { one.setU32(1, at: meta * 4096 + 256); one.image.withUnsafeMutableBytes { $0.setLE(UInt16(1), at: meta * 4096 + 260) } }
        one.setMeta(MetaField.badBlockCount, 1, size: 4)
        // The retained segments no longer fill consecutive good slots: the slot is invalid.
        let report = store.verify(one.image)
        #expect(!report.passed && report.findingReasons.contains("not_a_store"), "\(report.reasonsBySegment) \(report.findings)")
        // A bad entry for a slot outside the range keeps the slot valid; tables_hash names the edit.
        var outside = Forge(image: store.device.bytes)
        for meta in 0..<2 { outside.setU32(5, at: meta * 4096 + 256); outside.image.withUnsafeMutableBytes { $0.setLE(UInt16(1), at: meta * 4096 + 260) } }
        outside.setMeta(MetaField.badBlockCount, 1, size: 4)
        let named = store.verify(outside.image)
        #expect(named.segments.count == 4 && named.failedSegments == 0 && named.findings.contains { $0.reason == .metadataMismatch && $0.offset % 4096 == 256 },
                "\(named.findings)")
    }

    // MARK: 8. Anchors

    @Test("class 8: an anchor taken before a key rotation verifies with the key the rotation retired")
    func anchorBeforeRotation() throws {
        var store = try SignedStore(key: .ed25519(.init()))
        try store.session(segments: 2)
        let before = try #require(store.seals.last)
        let next = PrivateSigningKey.ed25519(.init())
        let (writer, _) = try EvidenceStore.open(device: store.device, identity: store.identity, clock: Self.clock)
        _ = try writer.commitEvidence(.keyRotation, rotationRecord(old: store.signer, next: next))
        try writer.close()
        let first = store.trusted
        store.signer = FileSigner(key: next, epoch: 2)
        try store.session(segments: 2)
        let report = store.verify(trusted: [first], anchor: before)
        #expect(report.passed, "\(report.findings) \(report.reasonsBySegment)")
        // Two heads in one file are malformed, not "the first line".
        let two = SignedHead(seal: before).fileBytes + SignedHead(seal: try #require(store.seals.last)).fileBytes
        #expect(store.verify(trusted: [first], anchorBytes: two).findingReasons == ["anchor_malformed"])
    }

    @Test("class 8: a rotation to an HMAC key the verifier was not given passes; that key's segments are unknown_key")
    func rotationToUnknownHMAC() throws {
        var store = try SignedStore(key: .ed25519(.init()))
        try store.session(segments: 2)
        let first = store.trusted
        let next = PrivateSigningKey.hmacSHA256(Array(repeating: 0x31, count: 32))
        let (writer, _) = try EvidenceStore.open(device: store.device, identity: store.identity, clock: Self.clock)
        _ = try writer.commitEvidence(.keyRotation, rotationRecord(old: store.signer, next: next))
        try writer.close()
        store.signer = FileSigner(key: next, epoch: 2)
        try store.session(segments: 2)
        let report = store.verify(trusted: [first])
        #expect(report.reasonsBySegment == [1: "PASS", 2: "PASS", 3: "PASS", 4: "unknown_key", 5: "unknown_key"], "\(report.reasonsBySegment)")
        // Given the secret, everything passes.
        #expect(store.verify(trusted: [first, next.trusted]).passed)
    }

    // MARK: the second review: a writer steered through a missing head

    @Test("a signing writer refuses a store whose head does not check (edited head_crc, a shrunk ring), untouched")
    func headUnverified() throws {
        let store = try store(segments: 6, perSegment: 2, slots: 12)
        var crc = Forge(image: store.device.bytes)
        crc.setMeta(224, 0xDEAD_BEEF, size: 4)
        crc.setMeta(MetaField.monoHWM, 2, size: 8)
        var shrunk = Forge(image: store.device.bytes)
        shrunk.setMeta(72, 4, size: 4)
        shrunk.setMeta(MetaField.headSlot, 3, size: 4)
        shrunk.setMeta(MetaField.tailSlot, 0, size: 4)
        shrunk.setMeta(MetaField.tailSegmentID, 3, size: 8)
        for forged in [crc.image, shrunk.image] {
            for policy in [RingFullPolicy.pause, .overwriteOldest] {
                let writer = openWriter(forged, store, policy: policy)
                #expect(writer.error.map { if case .headUnverified = $0 { true } else { false } } == true, "\(String(describing: writer.error))")
                #expect(writer.device.bytes == forged)
            }
            #expect(!store.verify(forged).passed)
        }
        // The edited head_crc with the head segment intact: its seal still bounds the range and the metadata.
        let report = store.verify(crc.image)
        #expect(report.findings.contains { $0.reason == .metadataMismatch && $0.detail.contains("mono_hwm") }, "\(report.findings)")
    }

    @Test("a signed anchor that verifies forbids unsigned segments after it, even with --allow-unsigned")
    func downgradePastAnchor() throws {
        let store = try store(segments: 3, perSegment: 2)
        let anchor = try #require(store.seals.last)
        // Unsigned segments continue the chain in an image the attacker builds with an unsigned writer.
        let device = MemoryBlockDevice(image: store.device.bytes)
        let unsigned = SealIdentity(deviceID: deviceID, fwVerHash: firmware, signer: nil)
        let (writer, _) = try EvidenceStore.open(device: device, identity: unsigned, clock: Self.clock)
        let driver = StoreDriver(store: writer, clock: ManualClock())
        _ = try driver.append(source: "sensor", payload: Array("{\"forged\":1}".utf8))
        _ = try driver.commit()
        try writer.close()
        let options = VerifyOptions(trusted: [store.trusted], anchor: SignedHead(seal: anchor).fileBytes, allowUnsigned: true)
        let report = Verifier.verify(device: MemoryBlockDevice(image: device.bytes), options: options)
        #expect(!report.passed && report.segments.contains { $0.reason == .unsigned }, "\(report.reasonsBySegment)")
    }

    // MARK: 10. Downgrade and disagreement

    @Test("class 10: an unsigned segment after signed ones fails even with --allow-unsigned; malformed seals are seal_mismatch")
    func downgrade() throws {
        let store = try store(segments: 4, perSegment: 2)
        var forge = Forge(image: store.device.bytes)
        // Segment 4 stripped of its signature (sig_alg 0, sig_len 0): its hash and chain still check.
        let m = forge.markerOffset(slot: 3), st = m + 40
        forge.image[st + 184] = 0
        forge.image[st + 185] = 0
        forge.image.withUnsafeMutableBytes { $0.setLE(UInt16(0), at: st + 186) }
        forge.image.replaceSubrange((st + 60)..<(st + 80), with: Array(repeating: 0, count: 20))
        forge.image.replaceSubrange((st + Statement.size)..<(st + Statement.size + 64), with: Array(repeating: 0, count: 64))
        forge.setU32(UInt32(Statement.size), at: m + 36)
        forge.fixBodyAndMarker(slot: 3)
        let options = VerifyOptions(trusted: [store.trusted], allowUnsigned: true)
        let report = Verifier.verify(device: MemoryBlockDevice(image: forge.image), options: options)
        #expect(report.reasonsBySegment[4] == "unsigned" && !report.passed, "\(report.reasonsBySegment)")

        for (alg, length) in [(UInt8(7), UInt16(64)), (1, 32), (3, 64)] {
            var bad = Forge(image: store.device.bytes)
            bad.image[st + 184] = alg
            bad.image.withUnsafeMutableBytes { $0.setLE(length, at: st + 186) }
            bad.setU32(UInt32(Statement.size) + UInt32(length), at: m + 36)
            bad.fixBodyAndMarker(slot: 3)
            #expect(store.verify(bad.image).reasonsBySegment[4] == "seal_mismatch", "sig_alg \(alg) sig_len \(length)")
        }
        // A forged segment's rollback_ctr does not count: the genuine segment after it passes.
        var ctr = Forge(image: store.device.bytes)
        ctr.setU64(1 << 40, at: ctr.markerOffset(slot: 1) + 40 + 80)
        ctr.fixBodyAndMarker(slot: 1)
        let counted = store.verify(ctr.image)
        #expect(counted.reasonsBySegment[2] == "bad_signature" && counted.reasonsBySegment[3] == "PASS", "\(counted.reasonsBySegment)")
    }

    // MARK: 9. Output

    @Test("class 9: export prints only hash-checked records; a payload that is not printable is hex, CSV cells cannot be formulas")
    func output() throws {
        let store = try store(segments: 3, perSegment: 2)
        // A record's payload edited with CRCs fixed: the hash no longer checks, so export skips it.
        var forge = Forge(image: store.device.bytes)
        let record = forge.records(slot: 1)[0]
        let payloadAt = record + 60 + Int(forge.image[record + 40])
        forge.image[payloadAt + 1] = 0x0A
        forge.fixRecordCRC(at: record)
        forge.fixBodyAndMarker(slot: 1)
        let device = MemoryBlockDevice(image: forge.image)
        let damage = StoreReader.forEachRecord(device: device, analysis: try EvidenceStore.analyze(device: device)) { info, _ in
            #expect(info.segmentID != 2)
        }
        #expect(damage.map(\.segmentID) == [2] && damage[0].reason.hasPrefix("hash_mismatch"))

        // The line formats themselves, on records a card could hold.
        let builder = SegmentBuilder(geometry: try Geometry.make(storeSize: 8192 + 4 * 4096, sectorSize: 512, segmentSize: 4096))
        let time = CaptureTime(wallNs: -5, bootNs: 1)
        #expect(builder.append(type: .data, source: "s", seq: 1, mono: 1, time: time, payload: Array("{\"a\":1}\n{\"b\":2}".utf8), evidence: false))
        #expect(builder.append(type: .data, source: "s", seq: 2, mono: 2, time: time, payload: Array("=1+2".utf8), evidence: false))
        let image = try builder.seal(segmentID: 1, commitID: 1, slot: 0, wrapCount: 0, storeUUID: storeUUID, prevCRC: 0, prevHash: SegmentHash.zero,
                                     rollbackCtr: 1, sealed: SealedState(), identity: .unsigned())
        let info = try SegmentReader.validate(image, slot: 0, expectedID: 1, geometry: builder.geometry, storeUUID: storeUUID)
        var lines: [UInt8] = []
        SegmentReader.forEachRecord(image, info: info) { r in
            ExportFormat.jsonl.append(info, r, to: &lines)
            ExportFormat.csv.append(info, r, to: &lines)
        }
        let text = String(decoding: lines, as: UTF8.self)
        #expect(text.split(separator: "\n").count == 4, "\(text)")
        #expect(text.contains("\"payload\":null,\"payload_hex\":\"7b2261223a317d0a7b2262223a327d\"}"))
        #expect(text.contains(",\"hex:3d312b32\"") && !text.contains("\"=1"))
    }
}

