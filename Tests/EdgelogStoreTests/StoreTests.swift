// Error paths and policies of the evidence store: every fault a device or a person can cause gives
// a specific error, is counted, and loses nothing that was acknowledged.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Testing

let uuid: [UInt8] = Array(1...16)

func formattedImage(slots: Int = 8, segment: Int = 4096, sector: Int = 512) throws -> [UInt8] {
    let memory = MemoryBlockDevice(size: 8192 + slots * segment, sectorSize: sector)
    try EvidenceStore.format(device: memory, sectorSize: sector, segmentSize: segment, storeUUID: uuid, wallNs: 0, force: false)
    return memory.bytes
}

func payload(_ n: Int, size: Int = 40) -> [UInt8] {
    let head = "{\"n\":\(n),\"v\":\""
    return Array((head + String(repeating: "y", count: max(0, size - head.count - 2)) + "\"}").utf8)
}

/// Every record in committed order, as (type, source, seq, payload text).

@Suite("Evidence store")
struct StoreTests {
    @Test("format refuses a device that holds a store unless forced, and force starts a new store")
    func formatRefusesExisting() throws {
        let device = MemoryBlockDevice(image: try formattedImage())
        #expect(throws: StoreError.alreadyFormatted(device: "memory")) {
            try EvidenceStore.format(device: device, segmentSize: 4096, storeUUID: uuid, wallNs: 0, force: false)
        }
        let other: [UInt8] = Array(repeating: 7, count: 16)
        let meta = try EvidenceStore.format(device: device, segmentSize: 4096, storeUUID: other, wallNs: 0, force: true)
        #expect(try EvidenceStore.analyze(device: device).state.storeUUID == meta.storeUUID)
    }

    @Test("format refuses sizes that cannot hold a ring")
    func formatTooSmall() {
        let device = MemoryBlockDevice(size: 8192 + 3 * 4096)
        #expect(throws: StoreError.self) {
            try EvidenceStore.format(device: device, segmentSize: 4096, storeUUID: uuid, wallNs: 0, force: false)
        }
    }

    @Test("commits survive close and reopen; seq and mono_ctr continue above what was committed")
    func reopenContinues() throws {
        let device = MemoryBlockDevice(image: try formattedImage())
        var (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        var driver = StoreDriver(store: store, clock: ManualClock())
        for n in 0..<30 { try driver.append(source: "a", payload: payload(n)) }
        try driver.commit()
        try store.close()
        (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        driver = StoreDriver(store: store, clock: ManualClock())
        let key = try driver.append(source: "a", payload: payload(99))
        #expect(key.seq == 31)
        try driver.commit()
        try store.close()
        let records = try exported(device)
        #expect(records.filter { $0.type == 1 }.map(\.seq) == Array(1...31))
        #expect(store.metadata.clean)
        #expect(store.metadata.unexpRst == 0)
    }

    @Test("an unclean stop is counted and explained by a recovery record")
    func uncleanStop() throws {
        let device = MemoryBlockDevice(image: try formattedImage())
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        try driver.append(source: "a", payload: payload(1))
        try driver.commit()
        // No close: the process died.
        let (again, analysis) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        #expect(analysis.uncleanShutdown)
        #expect(again.metadata.unexpRst == 1)
        let recovery = try exported(device).filter { $0.type == RecordType.recovery.rawValue }
        #expect(recovery.count == 1)
        #expect(recovery.first?.payload.contains("\"unclean_shutdown\":true") == true)
    }

    @Test("not a store: a clear error and not one byte changed")
    func notAStore() throws {
        var rng = SplitMix64(seed: 5)
        let garbage = (0..<(8192 + 8 * 4096)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let device = MemoryBlockDevice(image: garbage)
        #expect(throws: StoreError.self) { try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock) }
        #expect(device.bytes == garbage)
        #expect(device.writes == 0)
    }

    @Test("one corrupt metadata slot: the other is used and verify_stat says which")
    func oneSlotCorrupt() throws {
        let device = MemoryBlockDevice(image: try formattedImage())
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        for n in 0..<10 { try driver.append(source: "a", payload: payload(n)) }
        try driver.commit()
        try store.close()
        let newest = store.metadata.slotIndex
        device.bytes[newest * 4096 + 300] ^= 0x40
        let analysis = try EvidenceStore.analyze(device: device)
        #expect(analysis.chosenSlot != newest)
        #expect(analysis.verifyStat & (newest == 0 ? 1 : 2) != 0)
        #expect(try exported(device).filter { $0.type == 1 }.count == 10)
    }

    @Test("both metadata slots corrupt: reported, never reformatted")
    func bothSlotsCorrupt() throws {
        var image = try formattedImage()
        image[100] ^= 1
        image[4096 + 100] ^= 1
        let device = MemoryBlockDevice(image: image)
        let error = #expect(throws: StoreError.self) { _ = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock) }
        guard case .notAStore(_, let reasons)? = error else {
            Issue.record("expected notAStore, got \(String(describing: error))")
            return
        }
        #expect(reasons.count == 2)
        #expect(reasons.allSatisfy { $0.contains("CRC") })
        #expect(device.bytes == image)
    }

    @Test("a newer format version is refused by name and left untouched")
    func newerFormat() throws {
        var image = try formattedImage()
        image[8] = UInt8(Layout.formatVersion + 1)  // format_version of slot A; the CRC is not even looked at
        let device = MemoryBlockDevice(image: image)
        #expect(throws: StoreError.newerFormat(device: "memory", found: Layout.formatVersion + 1, supported: Layout.formatVersion)) {
            _ = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        }
        #expect(device.bytes == image)
    }

    @Test("a store formatted for 512-byte sectors is not written on a 4096-byte-sector device")
    func sectorMismatch() throws {
        let image = try formattedImage(sector: 512)
        let device = MemoryBlockDevice(image: image, sectorSize: 4096)
        #expect(throws: StoreError.sectorMismatch(device: "memory", storeSectorSize: 512, deviceSectorSize: 4096)) {
            _ = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        }
        #expect(device.writes == 0)
        #expect(try EvidenceStore.analyze(device: device).state.geometry.sectorSize == 512)
    }

    @Test("a truncated store is named as such")
    func truncated() throws {
        let image = Array(try formattedImage().prefix(8192 + 4 * 4096))
        let device = MemoryBlockDevice(image: image)
        #expect(throws: StoreError.truncated(device: "memory", storeSize: UInt64(8192 + 8 * 4096), deviceSize: UInt64(image.count))) {
            _ = try EvidenceStore.analyze(device: device)
        }
    }

    @Test("a failed flush proves nothing: the segment is written again elsewhere, the slot marked bad")
    func flushFailure() throws {
        let device = FaultBlockDevice(image: try formattedImage())
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        device.failFlush = { $0 == 1 }  // flush 0 was open's; the first commit's flush fails
        for n in 0..<5 { try driver.append(source: "a", payload: payload(n)) }
        let receipt = try #require(try driver.commit())
        #expect(store.metadata.badBlocks == [BadBlock(slot: 0, reason: .flush, segmentID: 1)])
        #expect(receipt.slot == 1)
        #expect(store.writeErrors == 1)
        try store.close()
        let analysis = try EvidenceStore.analyze(device: device)
        #expect(analysis.state.badBlocks.count == 1)
        #expect(try exported(device).map(\.seq) == [1, 2, 3, 4, 5])
    }

    @Test("a write error remaps the slot; bad slots are skipped on every later lap of the ring")
    func writeErrorRemaps() throws {
        let device = FaultBlockDevice(image: try formattedImage(slots: 5))
        let (store, _) = try EvidenceStore.open(device: device, policy: .overwriteOldest, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        let slot2 = UInt64(8192 + 2 * 4096)
        device.failWrite = { _, offset in offset == slot2 }
        for round in 0..<20 {
            for n in 0..<3 { try driver.append(source: "a", payload: payload(round * 3 + n)) }
            let receipt = try #require(try driver.commit())
            #expect(receipt.slot != 2)
        }
        #expect(store.metadata.badBlocks.map(\.slot) == [2])
        #expect(store.metadata.badBlocks.first?.reason == .write)
    }

    @Test("writes that keep failing stop the writer with a typed error and acknowledge nothing")
    func deviceFailing() throws {
        let device = FaultBlockDevice(image: try formattedImage())
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        device.failFlush = { _ in true }
        try driver.append(source: "a", payload: payload(1))
        #expect(throws: StoreError.self) { try driver.commit() }
        #expect(driver.acked.isEmpty)
        #expect(store.failure != nil)
        #expect(throws: StoreError.self) { try driver.commit() }
    }

    @Test("read errors on a committed segment are reported with their place and counted")
    func readError() throws {
        let device = FaultBlockDevice(image: try formattedImage())
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        for segment in 0..<3 {
            for n in 0..<4 { try driver.append(source: "a", payload: payload(segment * 4 + n)) }
            try driver.commit()
        }
        try store.close()
        let slot1 = UInt64(8192 + 4096)
        device.failRead = { offset, _ in offset == slot1 }
        let analysis = try EvidenceStore.analyze(device: device)
        var seqs: [UInt64] = []
        let damage = StoreReader.forEachRecord(device: device, analysis: analysis) { _, r in seqs.append(r.seq) }
        #expect(damage.count == 1)
        #expect(damage.first?.segmentID == 2)
        #expect(damage.first?.byteOffset == slot1)
        #expect(seqs == [1, 2, 3, 4, 9, 10, 11, 12])
    }

    @Test("ring full, policy pause: refuses with ringFull and keeps everything")
    func ringFullPause() throws {
        let device = MemoryBlockDevice(image: try formattedImage(slots: 4))
        let (store, _) = try EvidenceStore.open(device: device, policy: .pause, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        var full = false
        for n in 0..<1000 where !full {
            do {
                try driver.append(source: "a", payload: payload(n, size: 200))
            } catch {
                if case .ringFull = error { full = true } else { throw error }
            }
        }
        #expect(full)
        #expect(store.metadata.segmentCount == 4)
        let seqs = try exported(device).filter { $0.type == 1 }.map(\.seq)
        #expect(seqs == Array(1...UInt64(seqs.count)))
        #expect(Set(driver.acked.keys.map(\.seq)) == Set(seqs))
    }

    @Test("ring full, overwrite-acked: reuses only what the uplink acknowledged")
    func ringFullOverwriteAcked() throws {
        let device = MemoryBlockDevice(image: try formattedImage(slots: 4))
        let (store, _) = try EvidenceStore.open(device: device, policy: .overwriteAcked, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        for segment in 0..<4 {
            for n in 0..<3 { try driver.append(source: "a", payload: payload(segment * 3 + n)) }
            try driver.commit()
        }
        try driver.append(source: "a", payload: payload(100))
        #expect(throws: StoreError.ringFull(policy: .overwriteAcked,
                                            detail: "all 4 segments hold records not yet acknowledged upstream; nothing more is accepted")) {
            try driver.commit()
        }
        store.acknowledgeUpstream(through: 1)
        try driver.commit()
        #expect(store.metadata.tailSegmentID == 2)
        #expect(store.metadata.lostTotal == 0)
        // The reclaim is on record (FORMAT.md 4, gap reason uplink_acked), not counted as lost.
        let gaps = try exported(device).filter { $0.type == RecordType.gap.rawValue }
        #expect(gaps.count == 1)
        #expect(gaps.first?.payload.hasPrefix("{\"reason\":\"uplink_acked\",\"lost_segment_id\":1,") == true)
    }

    @Test("ring full, overwrite-oldest: reuses the oldest segment and a gap record says what was lost")
    func ringFullOverwriteOldest() throws {
        let device = MemoryBlockDevice(image: try formattedImage(slots: 4))
        let (store, _) = try EvidenceStore.open(device: device, policy: .overwriteOldest, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        for segment in 0..<6 {
            for n in 0..<3 { try driver.append(source: "a", payload: payload(segment * 3 + n)) }
            try driver.commit()
        }
        #expect(store.metadata.tailSegmentID == 3)
        #expect(store.metadata.lostTotal == 6)
        let gaps = try exported(device).filter { $0.type == RecordType.gap.rawValue }
        #expect(gaps.count == 2)
        #expect(gaps.first?.payload == "{\"reason\":\"ring_overwrite\",\"lost_segment_id\":1,\"lost_records\":3,\"first_mono\":1,\"last_mono\":3}")
    }

    @Test("a payload holding a forged segment header, marker and record is only ever payload")
    func fakeHeaderInPayload() throws {
        let device = MemoryBlockDevice(image: try formattedImage())
        let (store, _) = try EvidenceStore.open(device: device, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        try driver.append(source: "a", payload: payload(1))
        try driver.commit()
        // The real first segment's bytes (header, record, marker, all CRCs good) as a payload.
        let real = Array(device.bytes[8192..<(8192 + 512)])
        let forged = String(decoding: real, as: UTF8.self)
        try driver.append(source: "a", payload: real)
        try driver.commit()
        try store.close()
        let records = try exported(device)
        #expect(records.filter { $0.type == 1 }.map(\.seq) == [1, 2])
        #expect(records.last?.payload == forged)
    }
}
