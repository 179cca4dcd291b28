// Format 6's partition layout and metadata slot (docs/FORMAT.md appendix A.8): two 16 KiB slots of
// which a write covers only the used sectors, then the ring of segment slots.

import EdgelogCore

public struct PackedGeometry: Equatable, Sendable {
    public static let metadataSlotSize = 16384
    public static let ringOffset = 32768
    public static let minSegmentSize = 8192
    public static let maxSegmentSize = 16 << 20
    public static let minRingSlots = 4

    public var storeSize: UInt64
    public var sectorSize: Int
    public var segmentSize: Int
    public var ringSlots: Int

    public init(storeSize: UInt64, sectorSize: Int, segmentSize: Int) {
        self.storeSize = storeSize
        self.sectorSize = sectorSize
        self.segmentSize = segmentSize
        // Hostile numbers: a segment size out of range or a ring count past Int gives 0 slots (not valid).
        if segmentSize >= Self.minSegmentSize, segmentSize <= Self.maxSegmentSize, storeSize > UInt64(Self.ringOffset),
           let n = Int(exactly: (storeSize - UInt64(Self.ringOffset)) / UInt64(segmentSize)), n <= 1 << 31 {
            ringSlots = n
        } else {
            ringSlots = 0
        }
    }

    public var isValid: Bool {
        (sectorSize == 512 || sectorSize == 4096) && segmentSize % 4096 == 0 && segmentSize >= Self.minSegmentSize
            && segmentSize <= Self.maxSegmentSize && ringSlots >= Self.minRingSlots
            && UInt64(Self.ringOffset) + UInt64(ringSlots) * UInt64(segmentSize) <= storeSize
    }

    public func slotOffset(_ slot: Int) -> UInt64 { UInt64(Self.ringOffset) + UInt64(slot) * UInt64(segmentSize) }

    /// Why these sizes make no store, in words for the person who chose them; nil when they do.
    public static func problem(storeSize: UInt64, sectorSize: Int, segmentSize: Int) -> String? {
        if PackedGeometry(storeSize: storeSize, sectorSize: sectorSize, segmentSize: segmentSize).isValid { return nil }
        return "segment size \(segmentSize) on \(storeSize) bytes with \(sectorSize)-byte sectors makes no store: segments are a multiple "
            + "of 4096 from \(minSegmentSize) to \(maxSegmentSize) bytes, sectors 512 or 4096, and the store holds \(minRingSlots) "
            + "segments at least after its \(ringOffset)-byte metadata"
    }
}

public struct PackedMetadata: Equatable, Sendable {
    public static let magic = magic64("EDGELOGM")
    public static let formatVersion: UInt16 = 6
    static let tablesOffset = 512

    public var storeUUID = [UInt8](repeating: 0, count: 16)
    public var generation: UInt64 = 0
    public var geometry: PackedGeometry
    public var clean = true
    public var headFrameID: UInt64 = 0
    public var headSegmentID: UInt64 = 0
    public var headSlot = 0
    public var headOffset = 0
    public var hashHead = [UInt8](repeating: 0, count: 32)
    public var headCRC: UInt32 = 0
    public var wrapCount: UInt32 = 0
    public var tailSegmentID: UInt64 = 1
    public var tailSlot = 0
    public var unexpRst: UInt32 = 0
    public var rollbackCtr: UInt64 = 0
    public var bootSeq: UInt32 = 0
    public var deviceID = [UInt8](repeating: 0, count: 16)
    public var formatWallNs: Int64 = 0
    // Fields no frame seals (FORMAT.md A.8, offsets 232..295): the writer's own bookkeeping, which
    // tools print as not verified and which never steers a verdict.
    /// The kernel boot id of the last writer session (a new one starts a new boot_seq).
    public var bootID = [UInt8](repeating: 0, count: 16)
    /// What the last recovery found (FORMAT.md section 6's bits).
    public var verifyStat: UInt32 = 0
    /// The time path's bookkeeping; its clock_steps is `state.clockSteps` (sealed).
    public var time = TimeStats()
    /// The sealed numbers and tables as of the head frame.
    public var state = PackedState()

    public init(geometry: PackedGeometry) { self.geometry = geometry }

    public var ringIsEmpty: Bool { tailSegmentID > headSegmentID }
    /// Slot the generation is written to: even in A, odd in B.
    public var slotIndex: Int { Int(generation & 1) }

    public func isBad(_ slot: Int) -> Bool { state.tables.badSlots.contains { Int($0.slot) == slot } }

    /// The slot after `slot`, wrapping, skipping bad ones; nil when no other is good.
    public func nextSlot(after slot: Int) -> Int? {
        var s = slot
        for _ in 0..<geometry.ringSlots {
            s = (s + 1) % geometry.ringSlots
            if !isBad(s) { return s }
        }
        return nil
    }

    public func encoded() -> [UInt8] {
        let tables = state.tables.encoded()
        let sector = geometry.sectorSize
        let length = min(PackedGeometry.metadataSlotSize, (Self.tablesOffset + tables.count + 4 + sector - 1) / sector * sector)
        var out = [UInt8](repeating: 0, count: length)
        out.withUnsafeMutableBytes { b in
            b.setLE(Self.magic, at: 0)
            b.setLE(Self.formatVersion, at: 8)
            b.setLE(UInt32(length), at: 12)
            storeUUID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 16) }
            b.setLE(generation, at: 32)
            b.setLE(geometry.storeSize, at: 40)
            b.setLE(UInt32(geometry.sectorSize), at: 48)
            b.setLE(UInt32(geometry.segmentSize), at: 52)
            b.setLE(UInt32(geometry.ringSlots), at: 56)
            b.setLE(UInt32(clean ? 1 : 0), at: 60)
            b.setLE(headFrameID, at: 64)
            b.setLE(headSegmentID, at: 72)
            b.setLE(UInt32(headSlot), at: 80)
            b.setLE(UInt32(headOffset), at: 84)
            hashHead.prefix(32).withUnsafeBytes { b.setBytes($0, at: 88) }
            b.setLE(headCRC, at: 120)
            b.setLE(wrapCount, at: 124)
            b.setLE(tailSegmentID, at: 128)
            b.setLE(UInt32(tailSlot), at: 136)
            b.setLE(unexpRst, at: 140)
            b.setLE(rollbackCtr, at: 144)
            b.setLE(state.monoHWM, at: 152)
            b.setLE(state.recordsTotal, at: 160)
            b.setLE(state.lostTotal, at: 168)
            b.setLE(state.droppedTotal, at: 176)
            b.setLE(state.uplinkCursor, at: 184)
            b.setLE(state.boEvent, at: 192)
            b.setLE(state.eccErrCnt, at: 196)
            b.setLE(state.clockSteps, at: 200)
            b.setLE(bootSeq, at: 204)
            deviceID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 208) }
            b.setLE(formatWallNs, at: 224)
            bootID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 232) }
            b.setLE(verifyStat, at: 248)
            b.setLE(time.rtcState.rawValue, at: 252)
            b.setLE(time.largestStepNs, at: 256)
            b.setLE(time.unsyncNs, at: 264)
            b.setLE(time.lastSyncWallNs, at: 272)
            b.setLE(time.rtcOffsetNs, at: 280)
            b.setLE(time.lastOffsetNs, at: 288)
            b.setLE(UInt32(tables.count), at: 508)
            tables.withUnsafeBytes { b.setBytes($0, at: Self.tablesOffset) }
            b.setLE(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<(length - 4)])), at: length - 4)
        }
        return out
    }

    /// Decodes a slot read whole (16 KiB); nil when it is not a valid format 6 slot for a device of `deviceSize` bytes.
    public static func decode(_ b: UnsafeRawBufferPointer, deviceSize: UInt64) -> PackedMetadata? {
        guard b.count >= PackedGeometry.metadataSlotSize, b.le(0, as: UInt64.self) == magic, b.le(8, as: UInt16.self) == formatVersion else { return nil }
        let sector = Int(b.le(48, as: UInt32.self))
        let length = Int(b.le(12, as: UInt32.self))
        guard sector == 512 || sector == 4096, length >= 512, length <= PackedGeometry.metadataSlotSize, length % sector == 0 else { return nil }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<(length - 4)])) == b.le(length - 4, as: UInt32.self) else { return nil }
        let storeSize: UInt64 = b.le(40)
        guard storeSize <= deviceSize else { return nil }
        let geometry = PackedGeometry(storeSize: storeSize, sectorSize: sector, segmentSize: Int(b.le(52, as: UInt32.self)))
        guard geometry.isValid, geometry.ringSlots == Int(b.le(56, as: UInt32.self)), storeSize <= deviceSize else { return nil }
        var m = PackedMetadata(geometry: geometry)
        m.storeUUID = Array(b[16..<32])
        m.generation = b.le(32)
        let clean: UInt32 = b.le(60)
        guard clean <= 1 else { return nil }
        m.clean = clean == 1
        m.headFrameID = b.le(64)
        m.headSegmentID = b.le(72)
        m.headSlot = Int(b.le(80, as: UInt32.self))
        m.headOffset = Int(b.le(84, as: UInt32.self))
        m.hashHead = Array(b[88..<120])
        m.headCRC = b.le(120)
        m.wrapCount = b.le(124)
        m.tailSegmentID = b.le(128)
        m.tailSlot = Int(b.le(136, as: UInt32.self))
        m.unexpRst = b.le(140)
        m.rollbackCtr = b.le(144)
        m.state.monoHWM = b.le(152)
        m.state.recordsTotal = b.le(160)
        m.state.lostTotal = b.le(168)
        m.state.droppedTotal = b.le(176)
        m.state.uplinkCursor = b.le(184)
        m.state.boEvent = b.le(192)
        m.state.eccErrCnt = b.le(196)
        m.state.clockSteps = b.le(200)
        m.bootSeq = b.le(204)
        m.deviceID = Array(b[208..<224])
        m.formatWallNs = b.le(224)
        m.bootID = Array(b[232..<248])
        m.verifyStat = b.le(248)
        guard let rtc = TimeStats.RTCState(rawValue: b.le(252)) else { return nil }
        m.time.rtcState = rtc
        m.time.largestStepNs = b.le(256)
        m.time.unsyncNs = b.le(264)
        m.time.lastSyncWallNs = b.le(272)
        m.time.rtcOffsetNs = b.le(280)
        m.time.lastOffsetNs = b.le(288)
        m.time.clockSteps = m.state.clockSteps
        let bound: UInt64 = 1 << 62
        guard m.headSlot < geometry.ringSlots, m.tailSlot < geometry.ringSlots, m.headOffset < geometry.segmentSize,
              m.generation < bound, m.headFrameID < bound, m.headSegmentID < bound, m.tailSegmentID < bound, m.rollbackCtr < bound,
              m.state.monoHWM < bound, m.tailSegmentID >= 1, m.tailSegmentID <= m.headSegmentID + 1,
              m.unexpRst < 1 << 31, m.bootSeq < 1 << 31 else { return nil }
        // A slot that names no frame is a store nothing was committed to yet: head segment 0, tail 1.
        if m.headFrameID == 0 {
            guard m.headSegmentID == 0, m.tailSegmentID == 1, m.hashHead.allSatisfy({ $0 == 0 }), m.headCRC == 0 else { return nil }
        }
        let tablesLength = Int(b.le(508, as: UInt32.self))
        guard tablesLength <= length - 4 - tablesOffset,
              let tables = try? PackedTables.decode(UnsafeRawBufferPointer(rebasing: b[tablesOffset..<(tablesOffset + tablesLength)])) else { return nil }
        m.state.tables = tables
        guard tables.badSlotsFit(ringSlots: geometry.ringSlots), !m.isBad(m.headSlot), !m.isBad(m.tailSlot) else { return nil }
        return m
    }
}

/// Which format a device holds, without judging it: the tools read format 6 when either metadata
/// slot carries its magic and version, and format 5 otherwise.
public enum PackedStoreProbe {
    /// Why a device with no valid format 6 slot is not read as one: a slot of another format
    /// version (the magic is shared), a slot describing more bytes than the device has, or neither.
    public static func whyNoSlot(_ device: BlockDevice) -> PackedLogError {
        let buffer = AlignedBuffer(count: PackedGeometry.metadataSlotSize)
        var other: UInt16?
        var truncatedTo: UInt64?
        // Format 5 keeps its second slot at 4096, format 6 at 16384.
        for offset in [UInt64(0), UInt64(Layout.metadataSlotSize), UInt64(PackedGeometry.metadataSlotSize)]
        where offset + UInt64(PackedGeometry.metadataSlotSize) <= device.byteCount {
            guard (try? device.read(at: offset, into: buffer.bytes)) != nil else { continue }
            let b = UnsafeRawBufferPointer(buffer.bytes)
            guard b.le(0, as: UInt64.self) == PackedMetadata.magic else { continue }
            let version = b.le(8, as: UInt16.self)
            if version != PackedMetadata.formatVersion {
                other = max(other ?? 0, version)
                continue
            }
            let length = Int(b.le(12, as: UInt32.self))
            guard length >= 512, length <= PackedGeometry.metadataSlotSize,
                  CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<(length - 4)])) == b.le(length - 4, as: UInt32.self) else { continue }
            let size: UInt64 = b.le(40)
            if size > device.byteCount { truncatedTo = size }
        }
        if let truncatedTo { return .truncated(storeSize: truncatedTo, deviceSize: device.byteCount) }
        if let other { return .otherFormat(other) }
        return .notAStore(device.byteCount < UInt64(PackedGeometry.ringOffset) ? "device smaller than the metadata" : "no valid format 6 metadata slot")
    }


    public static func isPacked(_ device: BlockDevice) -> Bool {
        let buffer = AlignedBuffer(count: 4096)
        for offset in [UInt64(0), UInt64(PackedGeometry.metadataSlotSize)] where offset + 4096 <= device.byteCount {
            guard (try? device.read(at: offset, into: buffer.bytes)) != nil else { continue }
            let b = UnsafeRawBufferPointer(buffer.bytes)
            if b.le(0, as: UInt64.self) == PackedMetadata.magic && b.le(8, as: UInt16.self) == PackedMetadata.formatVersion { return true }
        }
        return false
    }
}

extension PackedMetadata {
    /// A metadata field that disagrees with the sealed state of the frame the slot names (FORMAT.md
    /// A.11.2 item 4).
    public struct Mismatch: Equatable, Sendable, CustomStringConvertible {
        public var offset: Int
        public var field: String
        public var value: UInt64
        public var sealed: UInt64
        public var description: String { "\(field) is \(value), sealed \(sealed)" }
    }

    /// Where this slot disagrees with `state` and `header`, the sealed state after the frame it names
    /// and that frame's segment header: equal fields, or not below for those a writer raises between
    /// commits; the tables by their hash (value and sealed 0 and 1 there). `tailGivenUp`: recovery
    /// gave the sealed tail up (it moves on by one segment and one good slot).
    public func mismatches(against state: PackedState, header: PackedSegmentHeader, tailGivenUp: Bool, nextSlot: (Int) -> Int?) -> [Mismatch] {
        // A tail given up is in the slot either as sealed (written before the cut reclaim) or moved
        // on by one segment and one good slot (written by the recovery that gave it up).
        let movedSlot = nextSlot(Int(header.tailSlot)) ?? Int(header.tailSlot)
        let moved = tailGivenUp && tailSegmentID == header.tailSegmentID &+ 1 && tailSlot == movedSlot
        let tailSlotExpected = moved ? movedSlot : Int(header.tailSlot)
        let rows: [(Int, String, UInt64, UInt64, Bool)] = [
            (56, "ring_slots", UInt64(geometry.ringSlots), UInt64(header.ringSlots), true),
            (124, "wrap_count", UInt64(wrapCount), UInt64(header.wrapCount), true),
            (128, "tail_segment_id", tailSegmentID, header.tailSegmentID &+ (moved ? 1 : 0), true),
            (136, "tail_slot", UInt64(tailSlot), UInt64(tailSlotExpected), true),
            (140, "unexp_rst", UInt64(unexpRst), UInt64(header.unexpRst), false),
            (144, "rollback_ctr", rollbackCtr, header.rollbackCtr, false),
            (152, "mono_hwm", self.state.monoHWM, state.monoHWM, true),
            (160, "records_total", self.state.recordsTotal, state.recordsTotal, true),
            (168, "lost_total", self.state.lostTotal, state.lostTotal, true),
            (176, "dropped_total", self.state.droppedTotal, state.droppedTotal, true),
            (184, "uplink_cursor", self.state.uplinkCursor, state.uplinkCursor, false),
            (192, "bo_event", UInt64(self.state.boEvent), UInt64(state.boEvent), true),
            (196, "ecc_err_cnt", UInt64(self.state.eccErrCnt), UInt64(state.eccErrCnt), false),
            (200, "clock_steps", UInt64(self.state.clockSteps), UInt64(state.clockSteps), true),
            (204, "boot_seq", UInt64(bootSeq), UInt64(header.bootSeq), false),
        ]
        var out = rows.filter { $0.4 ? $0.2 != $0.3 : $0.2 < $0.3 }.map { Mismatch(offset: $0.0, field: $0.1, value: $0.2, sealed: $0.3) }
        if self.state.tables.hash != state.tables.hash { out.append(Mismatch(offset: 512, field: "tables", value: 1, sealed: 0)) }
        return out
    }
}
