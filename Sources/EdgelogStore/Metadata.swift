// The A/B metadata slot (docs/FORMAT.md section 2): the evidence state and the recovery entry point.

import EdgelogCore

public struct BadBlock: Equatable, Sendable {
    public enum Reason: UInt16, Sendable { case write = 1, flush = 2, read = 3 }
    public var slot: Int
    public var reason: Reason
    public var segmentID: UInt64
    public init(slot: Int, reason: Reason, segmentID: UInt64) {
        self.slot = slot
        self.reason = reason
        self.segmentID = segmentID
    }
}

public struct SourceEntry: Equatable, Sendable {
    public var name: String
    public var lastSeq: UInt64
}

public struct Metadata: Equatable, Sendable {
    public var storeUUID: [UInt8]
    public var generation: UInt64
    public var geometry: Geometry
    public var commitID: UInt64 = 0
    public var headSegmentID: UInt64 = 0
    public var headSlot: Int = 0
    public var tailSlot: Int = 0
    public var tailSegmentID: UInt64 = 1
    public var wrapCount: UInt32 = 0
    public var clean: Bool = true
    public var unexpRst: UInt32 = 0
    public var boEvent: UInt32 = 0
    public var eccErrCnt: UInt32 = 0
    public var verifyStat: UInt32 = 0
    public var monoHWM: UInt64 = 0
    public var uplinkCursor: UInt64 = 1
    public var recordsTotal: UInt64 = 0
    public var droppedTotal: UInt64 = 0
    public var lostTotal: UInt64 = 0
    public var formatWallNs: Int64 = 0
    public var hashHead = [UInt8](repeating: 0, count: 32)
    /// body_crc of the head segment: binds this slot to that exact segment, so a slot whose
    /// commit was cut can never be taken for one that names a later segment with the same id.
    public var headCRC: UInt32 = 0
    // Trust fields (FORMAT.md section 2, offsets 2816..2895).
    public var deviceID = [UInt8](repeating: 0, count: 16)
    /// +1 at every open for writing; never lower than the anchor's (section 8).
    public var rollbackCtr: UInt64 = 0
    public var fwVerHash = SegmentHash.zero
    /// The key that signed the head segment (zero, 0, unsigned while unsigned).
    public var keyID = [UInt8](repeating: 0, count: 16)
    public var keyEpoch: UInt32 = 0
    public var sigAlg: UInt8 = 0
    public var keySrc: UInt8 = 0
    // Time fields (FORMAT.md section 2, offsets 2896..2955).
    public var bootID = [UInt8](repeating: 0, count: 16)
    public var bootSeq: UInt32 = 0
    public var time = TimeStats()
    public var badBlocks: [BadBlock] = []
    public var sources: [SourceEntry] = []

    public init(storeUUID: [UInt8], generation: UInt64, geometry: Geometry) {
        self.storeUUID = storeUUID
        self.generation = generation
        self.geometry = geometry
    }

    /// True while no segment has been committed, or every committed one was reclaimed.
    public var ringIsEmpty: Bool { tailSegmentID > headSegmentID }
    public var segmentCount: UInt64 { ringIsEmpty ? 0 : headSegmentID - tailSegmentID + 1 }
    /// The slot generation `generation` is written to: even in A, odd in B.
    public var slotIndex: Int { Int(generation & 1) }

    public func isBad(_ slot: Int) -> Bool { badBlocks.contains { $0.slot == slot } }

    /// The ring slot after `slot`, skipping bad ones; nil when every other slot is bad.
    public func nextSlot(after slot: Int) -> Int? {
        var s = slot
        for _ in 0..<geometry.ringSlots {
            s = (s + 1) % geometry.ringSlots
            if !isBad(s) { return s }
        }
        return nil
    }

    /// The ring slot before `slot`, skipping bad ones; nil when every other slot is bad.
    public func previousSlot(before slot: Int) -> Int? {
        var s = slot
        for _ in 0..<geometry.ringSlots {
            s = (s + geometry.ringSlots - 1) % geometry.ringSlots
            if !isBad(s) { return s }
        }
        return nil
    }

    /// Where the next segment goes.
    public var nextWriteSlot: Int? {
        if ringIsEmpty { return isBad(tailSlot) ? nextSlot(after: tailSlot) : tailSlot }
        return nextSlot(after: headSlot)
    }

    public var ringIsFull: Bool { !ringIsEmpty && nextSlot(after: headSlot) == tailSlot }

    public func lastSeq(of source: String) -> UInt64 {
        sources.first { $0.name == source }?.lastSeq ?? 0
    }

    // MARK: the sealed state

    /// SHA-256 of bad_block_count, source_count and the used entries of both tables, as encoded in
    /// the slot (FORMAT.md 3.5, tables_hash): the source sequence state and the remapped slots.
    public var tablesHash: [UInt8] {
        let bad = min(badBlocks.count, Layout.maxBadBlocks)
        let src = min(sources.count, Layout.maxSources)
        var bytes = [UInt8](repeating: 0, count: 8 + 16 * bad + 48 * src)
        return bytes.withUnsafeMutableBytes { b in
            b.setLE(UInt32(bad), at: 0)
            b.setLE(UInt32(src), at: 4)
            encodeTables(badBlocksAt: 8, sourcesAt: 8 + 16 * bad, into: b)
            return SegmentHash.of(UnsafeRawBufferPointer(b))
        }
    }

    /// The used entries of both tables as the slot stores them (16 and 48 bytes each).
    private func encodeTables(badBlocksAt: Int, sourcesAt: Int, into b: UnsafeMutableRawBufferPointer) {
        for (i, bad) in badBlocks.prefix(Layout.maxBadBlocks).enumerated() {
            let o = badBlocksAt + i * 16
            b.setLE(UInt32(bad.slot), at: o)
            b.setLE(bad.reason.rawValue, at: o + 4)
            b.setLE(bad.segmentID, at: o + 8)
        }
        for (i, source) in sources.prefix(Layout.maxSources).enumerated() {
            let o = sourcesAt + i * 48
            let name = Array(source.name.utf8.prefix(SourceName.maxLength))
            b.setLE(UInt8(name.count), at: o)
            name.withUnsafeBytes { b.setBytes($0, at: o + 1) }
            b.setLE(source.lastSeq, at: o + 40)
        }
    }

    /// The state a commit writing this metadata seals (FORMAT.md 3.5).
    public var sealedState: SealedState {
        var t = SealedState()
        t.storeUUID = storeUUID
        t.tailSegmentID = tailSegmentID
        t.monoHWM = monoHWM
        t.recordsTotal = recordsTotal
        t.lostTotal = lostTotal
        t.droppedTotal = droppedTotal
        t.uplinkCursor = uplinkCursor
        t.wrapCount = wrapCount
        t.unexpRst = unexpRst
        t.boEvent = boEvent
        t.eccErrCnt = eccErrCnt
        t.clockSteps = time.clockSteps
        t.bootSeq = bootSeq
        t.tablesHash = tablesHash
        t.tailSlot = UInt32(truncatingIfNeeded: tailSlot)
        t.ringSlots = UInt32(truncatingIfNeeded: geometry.ringSlots)
        return t
    }

    // MARK: encoding

    /// Encodes the slot into `b`, which must hold `Layout.metadataSlotSize` bytes (else nothing is written).
    public func encode(into b: UnsafeMutableRawBufferPointer) {
        guard b.count >= Layout.metadataSlotSize else { return }
        b.zero(0..<Layout.metadataSlotSize)
        b.setLE(Layout.metadataMagic, at: 0)
        b.setLE(Layout.formatVersion, at: 8)
        b.setLE(UInt16(Layout.metadataSlotSize), at: 10)
        storeUUID.withUnsafeBytes { b.setBytes($0, at: 24) }
        b.setLE(generation, at: 40)
        b.setLE(geometry.storeSize, at: 48)
        b.setLE(UInt32(geometry.sectorSize), at: 56)
        b.setLE(UInt32(geometry.segmentSize), at: 60)
        b.setLE(geometry.ringOffset, at: 64)
        b.setLE(UInt32(geometry.ringSlots), at: 72)
        b.setLE(commitID, at: 80)
        b.setLE(headSegmentID, at: 88)
        b.setLE(UInt32(headSlot), at: 96)
        b.setLE(UInt32(tailSlot), at: 100)
        b.setLE(tailSegmentID, at: 104)
        b.setLE(wrapCount, at: 112)
        b.setLE(UInt32(clean ? 1 : 0), at: 116)
        b.setLE(unexpRst, at: 120)
        b.setLE(boEvent, at: 124)
        b.setLE(eccErrCnt, at: 128)
        b.setLE(verifyStat, at: 132)
        b.setLE(monoHWM, at: 136)
        b.setLE(uplinkCursor, at: 144)
        b.setLE(recordsTotal, at: 152)
        b.setLE(droppedTotal, at: 160)
        b.setLE(lostTotal, at: 168)
        b.setLE(UInt32(badBlocks.count), at: 176)
        b.setLE(UInt32(sources.count), at: 180)
        b.setLE(formatWallNs, at: 184)
        hashHead.withUnsafeBytes { b.setBytes($0, at: 192) }
        b.setLE(headCRC, at: 224)
        encodeTables(badBlocksAt: 256, sourcesAt: 1280, into: b)
        deviceID.withUnsafeBytes { b.setBytes(UnsafeRawBufferPointer(rebasing: $0.prefix(16)), at: 2816) }
        b.setLE(rollbackCtr, at: 2832)
        fwVerHash.withUnsafeBytes { b.setBytes(UnsafeRawBufferPointer(rebasing: $0.prefix(32)), at: 2840) }
        keyID.withUnsafeBytes { b.setBytes(UnsafeRawBufferPointer(rebasing: $0.prefix(16)), at: 2872) }
        b.setLE(keyEpoch, at: 2888)
        b.setLE(sigAlg, at: 2892)
        b.setLE(keySrc, at: 2893)
        bootID.withUnsafeBytes { b.setBytes(UnsafeRawBufferPointer(rebasing: $0.prefix(16)), at: 2896) }
        b.setLE(bootSeq, at: 2912)
        b.setLE(time.clockSteps, at: 2916)
        b.setLE(time.largestStepNs, at: 2920)
        b.setLE(time.unsyncNs, at: 2928)
        b.setLE(time.lastSyncWallNs, at: 2936)
        b.setLE(time.rtcOffsetNs, at: 2944)
        b.setLE(time.rtcState.rawValue, at: 2952)
        b.setLE(time.lastOffsetNs, at: 2956)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<4092]))
        b.setLE(crc, at: 4092)
    }

    /// Why a slot is not valid, for the report.
    public enum Problem: Error, Equatable, CustomStringConvertible {
        case blank
        case badMagic
        case newerFormat(UInt16)
        case badCRC
        case unknownIncompatFlags(UInt32)
        case badGeometry(String)
        case unreadable(String)

        public var description: String {
            switch self {
            case .blank: "blank (all zero)"
            case .badMagic: "no metadata magic"
            case .newerFormat(let v): "format version \(v) is newer than \(Layout.formatVersion)"
            case .badCRC: "CRC mismatch (torn or corrupted)"
            case .unknownIncompatFlags(let f): "unknown incompatible flags 0x\(String(f, radix: 16))"
            case .badGeometry(let why): "inconsistent geometry: \(why)"
            case .unreadable(let why): "unreadable: \(why)"
            }
        }
    }

    public static func decode(_ b: UnsafeRawBufferPointer) throws(Problem) -> Metadata {
        guard b.count >= Layout.metadataSlotSize else { throw .unreadable("short slot") }
        if b.le(0, as: UInt64.self) != Layout.metadataMagic {
            throw b.prefix(Layout.metadataSlotSize).allSatisfy({ $0 == 0 }) ? .blank : .badMagic
        }
        // The version is checked before the CRC so a newer store is named as such, not as damage.
        let version: UInt16 = b.le(8)
        if version > Layout.formatVersion { throw .newerFormat(version) }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<4092])) == b.le(4092, as: UInt32.self) else { throw .badCRC }
        guard version == Layout.formatVersion else { throw .badGeometry("format version \(version)") }
        guard b.le(10, as: UInt16.self) == UInt16(Layout.metadataSlotSize) else { throw .badGeometry("slot size") }
        let incompat: UInt32 = b.le(12)
        guard incompat == 0 else { throw .unknownIncompatFlags(incompat) }
        let storeSize: UInt64 = b.le(48)
        let sector = Int(b.le(56, as: UInt32.self))
        let segment = Int(b.le(60, as: UInt32.self))
        let ringOffset: UInt64 = b.le(64)
        let slots = Int(b.le(72, as: UInt32.self))
        guard sector == 512 || sector == 4096 else { throw .badGeometry("sector size \(sector)") }
        guard segment >= Layout.minSegmentSize, segment <= Layout.maxSegmentSize, segment % 4096 == 0 else {
            throw .badGeometry("segment size \(segment)")
        }
        guard ringOffset == Layout.ringOffset else { throw .badGeometry("ring offset \(ringOffset)") }
        guard slots >= Layout.minRingSlots,
              storeSize >= Layout.ringOffset,
              UInt64(slots) <= (storeSize - Layout.ringOffset) / UInt64(segment)
        else { throw .badGeometry("\(slots) slots of \(segment) bytes in \(storeSize) bytes") }
        let geometry = Geometry(storeSize: storeSize, sectorSize: sector, segmentSize: segment, ringSlots: slots)

        var m = Metadata(storeUUID: Array(b[24..<40]), generation: b.le(40), geometry: geometry)
        m.commitID = b.le(80)
        m.headSegmentID = b.le(88)
        m.headSlot = Int(b.le(96, as: UInt32.self))
        m.tailSlot = Int(b.le(100, as: UInt32.self))
        m.tailSegmentID = b.le(104)
        guard m.headSlot < slots, m.tailSlot < slots else { throw .badGeometry("head or tail slot outside the ring") }
        // Every id below 2^62 (FORMAT.md 2): no `+ 1` a reader or the writer makes on them can overflow.
        guard m.generation < Layout.idLimit, m.commitID < Layout.idLimit, m.headSegmentID < Layout.idLimit,
              m.tailSegmentID < Layout.idLimit else { throw .badGeometry("an id or the generation is 2^62 or more") }
        guard m.tailSegmentID >= 1, m.tailSegmentID <= m.headSegmentID + 1 else { throw .badGeometry("tail segment after head") }
        // One segment per commit: the newest commit is the head segment's.
        guard m.commitID == m.headSegmentID else { throw .badGeometry("commit_id \(m.commitID) is not head_segment_id \(m.headSegmentID)") }
        // Every commit leaves a segment in the ring (a reclaim happens inside a commit), so only a
        // store that never committed is empty: a ring "emptied" by its metadata would hide everything.
        guard m.tailSegmentID <= m.headSegmentID || (m.headSegmentID == 0 && m.tailSegmentID == 1) else {
            throw .badGeometry("an empty ring after segment \(m.headSegmentID)")
        }
        m.wrapCount = b.le(112)
        let clean: UInt32 = b.le(116)
        guard clean <= 1 else { throw .badGeometry("clean_flag \(clean)") }
        m.clean = clean == 1
        m.unexpRst = b.le(120)
        m.boEvent = b.le(124)
        m.eccErrCnt = b.le(128)
        m.verifyStat = b.le(132)
        m.monoHWM = b.le(136)
        m.uplinkCursor = b.le(144)
        m.recordsTotal = b.le(152)
        m.droppedTotal = b.le(160)
        m.lostTotal = b.le(168)
        let badCount = Int(b.le(176, as: UInt32.self))
        let sourceCount = Int(b.le(180, as: UInt32.self))
        guard badCount <= Layout.maxBadBlocks, sourceCount <= Layout.maxSources else { throw .badGeometry("table counts") }
        m.formatWallNs = b.le(184)
        m.hashHead = Array(b[192..<224])
        m.headCRC = b.le(224)
        m.deviceID = Array(b[2816..<2832])
        m.rollbackCtr = b.le(2832)
        m.fwVerHash = Array(b[2840..<2872])
        m.keyID = Array(b[2872..<2888])
        m.keyEpoch = b.le(2888)
        m.sigAlg = b[2892]
        m.keySrc = b[2893]
        m.bootID = Array(b[2896..<2912])
        m.bootSeq = b.le(2912)
        m.time.clockSteps = b.le(2916)
        m.time.largestStepNs = b.le(2920)
        m.time.unsyncNs = b.le(2928)
        m.time.lastSyncWallNs = b.le(2936)
        m.time.rtcOffsetNs = b.le(2944)
        m.time.rtcState = TimeStats.RTCState(rawValue: b[2952]) ?? .neverRead
        m.time.lastOffsetNs = b.le(2956)
        for i in 0..<badCount {
            let o = 256 + i * 16
            let slot = Int(b.le(o, as: UInt32.self))
            guard slot < slots, let reason = BadBlock.Reason(rawValue: b.le(o + 4)), !m.isBad(slot) else {
                throw .badGeometry("bad block entry \(i)")
            }
            m.badBlocks.append(BadBlock(slot: slot, reason: reason, segmentID: b.le(o + 8)))
        }
        // Bad slots never hide segments: the retained range fits the good slots, and a ring keeps
        // at least two (the head's and the next) or it could not have been written.
        guard slots - badCount >= 2 else { throw .badGeometry("\(badCount) of \(slots) ring slots listed bad") }
        guard m.ringIsEmpty || m.headSegmentID - m.tailSegmentID < UInt64(slots - badCount) else {
            throw .badGeometry("segments \(m.tailSegmentID) to \(m.headSegmentID) do not fit \(slots - badCount) good slots")
        }
        // The retained segments sit in consecutive good slots from tail_slot to head_slot: the good
        // slots of that stretch of the ring (counted without walking it) are exactly the segments.
        if !m.ringIsEmpty {
            guard !m.isBad(m.tailSlot), !m.isBad(m.headSlot) else { throw .badGeometry("head or tail slot listed bad") }
            let span = (m.headSlot - m.tailSlot + slots) % slots
            let badInSpan = m.badBlocks.filter { ($0.slot - m.tailSlot + slots) % slots <= span }.count
            // Head and tail are good slots, so 1 <= span + 1 - badInSpan.
            guard UInt64(span + 1 - badInSpan) == m.segmentCount else {
                throw .badGeometry("segments \(m.tailSegmentID) to \(m.headSegmentID) from slot \(m.tailSlot) do not end at head slot \(m.headSlot)")
            }
        }
        for i in 0..<sourceCount {
            let o = 1280 + i * 48
            let n = Int(b[o])
            guard n >= 1, n <= SourceName.maxLength, SourceName.isValid(UnsafeRawBufferPointer(rebasing: b[(o + 1)..<(o + 1 + n)])) else {
                throw .badGeometry("source entry \(i)")
            }
            let name = String(decoding: b[(o + 1)..<(o + 1 + n)], as: UTF8.self)
            guard b.le(o + 40, as: UInt64.self) < Layout.idLimit else { throw .badGeometry("source entry \(i): last_seq is 2^62 or more") }
            guard !m.sources.contains(where: { $0.name == name }) else { throw .badGeometry("source entry \(i) repeats \(name)") }
            m.sources.append(SourceEntry(name: name, lastSeq: b.le(o + 40)))
        }
        guard m.monoHWM < Layout.idLimit, m.rollbackCtr < Layout.idLimit else { throw .badGeometry("mono_hwm or rollback_ctr is 2^62 or more") }
        return m
    }
}

/// The writer's time bookkeeping, kept in the metadata for `inspect` (FORMAT.md section 2).
public struct TimeStats: Equatable, Sendable {
    public enum RTCState: UInt8, Sendable {
        case neverRead = 0
        case read = 1
        case absent = 2
    }
    public var clockSteps: UInt32 = 0
    public var largestStepNs: UInt64 = 0
    public var unsyncNs: UInt64 = 0
    public var lastSyncWallNs: Int64 = 0
    public var rtcOffsetNs: Int64 = 0
    public var rtcState: RTCState = .neverRead
    /// wall − boot at the last capture (0: none yet).
    public var lastOffsetNs: Int64 = 0
    public init() {}
}
