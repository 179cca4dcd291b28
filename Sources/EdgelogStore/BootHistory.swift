// The writer starts recorded in the newest segments, newest first: what the brownout-loop check
// (docs/DESIGN.md section 12) counts. Only segments that check (structure, hash, chain back from
// the head, and for a writer that signs its own key's signature) are read, so bytes someone wrote
// onto the card cannot edit the history; the walk stops at the first that does not. (Whether each
// start found the store unclean came from the unsealed clean_flag: DESIGN.md section 12 says
// what that leaves open.)

import EdgelogCore

public struct BootEntry: Equatable, Sendable {
    /// The start's boot record said the store had not been closed cleanly.
    public var unexpectedReset: Bool
    /// The boot record's capture time.
    public var wallNs: Int64
    public var wallTrusted: Bool
    public var bootNs: Int64
    /// The boot_ns of the newest record of that writer session (the session's end as far as the
    /// store knows it; records of one session share one kernel boot).
    public var lastBootNs: Int64
    public var segmentID: UInt64

    public init(unexpectedReset: Bool, wallNs: Int64, wallTrusted: Bool, bootNs: Int64, lastBootNs: Int64, segmentID: UInt64) {
        self.unexpectedReset = unexpectedReset
        self.wallNs = wallNs
        self.wallTrusted = wallTrusted
        self.bootNs = bootNs
        self.lastBootNs = lastBootNs
        self.segmentID = segmentID
    }
}

public enum BootHistory {
    /// At most `maxBoots` starts from at most `maxSegments` segments, newest first.
    public static func recent(device: BlockDevice, metadata m: Metadata, adopts: ((SealView) -> Bool)?, maxSegments: Int,
                              maxBoots: Int) -> [BootEntry] {
        guard !m.ringIsEmpty else { return [] }
        let buffer = AlignedBuffer(count: m.geometry.segmentSize)
        var entries: [BootEntry] = []
        var slot = m.headSlot
        var id = m.headSegmentID
        var expectedHash = m.hashHead
        // The newest boot_ns per boot_seq seen since the last boot record met (walking backwards).
        // Recovery and incomplete records are left out: the next start writes them, before its
        // own boot record, so they do not belong to the session they follow.
        var sessionEnd: [UInt16: Int64] = [:]
        for _ in 0..<max(maxSegments, 0) {
            guard id >= m.tailSegmentID, id > 0 else { break }
            do { try device.read(at: m.geometry.slotOffset(slot), into: buffer.bytes) } catch { break }
            let image = UnsafeRawBufferPointer(buffer.bytes)
            guard let info = try? SegmentReader.validate(image, slot: slot, expectedID: id, geometry: m.geometry, storeUUID: m.storeUUID),
                  let seal = info.seal else { break }
            let hash = SegmentReader.computedHash(image, info: info)
            guard hash == seal.statement.segmentHash, hash == expectedHash, adopts.map({ $0(seal) }) ?? true else { break }
            var records: [(boot: Bool, unexpected: Bool, skip: Bool, bootSeq: UInt16, time: CaptureTime)] = []
            SegmentReader.forEachRecord(image, info: info) { r in
                let isBoot = r.rawType == RecordType.boot.rawValue && r.source.elementsEqual(SourceName.time.utf8)
                let skip = r.rawType == RecordType.recovery.rawValue || r.rawType == RecordType.incomplete.rawValue
                records.append((isBoot, isBoot && contains(r.payload, unexpectedTrue), skip, r.bootSeq, r.time))
            }
            for r in records.reversed() where !r.skip {
                if r.boot {
                    let end = max(sessionEnd[r.bootSeq] ?? r.time.bootNs, r.time.bootNs)
                    entries.append(BootEntry(unexpectedReset: r.unexpected, wallNs: r.time.wallNs, wallTrusted: !r.time.flags.contains(.wallUntrusted),
                                             bootNs: r.time.bootNs, lastBootNs: end, segmentID: id))
                    sessionEnd.removeAll()
                    if entries.count >= maxBoots { return entries }
                } else if sessionEnd[r.bootSeq] == nil {
                    sessionEnd[r.bootSeq] = r.time.bootNs
                }
            }
            expectedHash = info.prevHash
            guard let previous = m.previousSlot(before: slot) else { break }
            slot = previous
            id -= 1
        }
        return entries
    }

    /// Format 6: the same, from the newest frames back, segment by segment, each segment's frames
    /// below the next one's chain point and chained to it, and only frames `adopts` takes (a
    /// writer that signs: its own key's); the walk stops at the first that is not.
    public static func recent(device: BlockDevice, history h: PackedHistory, adopts: ((PackedFrameInfo, PackedSegmentHeader) -> Bool)?,
                              maxSegments: Int, maxBoots: Int) -> [BootEntry] {
        guard h.headFrameID > 0, h.tailSegmentID <= h.headSegmentID else { return [] }
        var entries: [BootEntry] = []
        var sessionEnd: [UInt16: Int64] = [:]
        var slot = h.headSlot
        var id = h.headSegmentID
        var upper = h.headFrameID &+ 1
        var chainHash: [UInt8]? = nil
        for _ in 0..<max(maxSegments, 0) {
            guard id >= h.tailSegmentID,
                  let walk = try? PackedHistory.readWalk(device, h.metadata, slot: slot, keepRecords: true), walk.header.segmentID == id else { break }
            let frames = walk.frames.filter { $0.frameID < upper }
            // The later segment continues this one's last frame here, or nothing of it is read.
            if let chainHash, frames.last?.frameHash != chainHash { break }
            for f in frames.reversed() {
                guard adopts?(f, walk.header) ?? true else { return entries }
                for r in f.records.reversed() where r.type != .recovery && r.type != .incomplete {
                    if r.type == .boot && r.source == SourceName.time {
                        let end = max(sessionEnd[r.bootSeq] ?? r.time.bootNs, r.time.bootNs)
                        let unexpected = r.payload.withUnsafeBytes { contains($0, unexpectedTrue) }
                        entries.append(BootEntry(unexpectedReset: unexpected, wallNs: r.time.wallNs, wallTrusted: !r.time.flags.contains(.wallUntrusted),
                                                 bootNs: r.time.bootNs, lastBootNs: end, segmentID: id))
                        sessionEnd.removeAll()
                        if entries.count >= maxBoots { return entries }
                    } else if sessionEnd[r.bootSeq] == nil {
                        sessionEnd[r.bootSeq] = r.time.bootNs
                    }
                }
            }
            guard id > h.tailSegmentID, let previous = h.previousSlot(before: slot) else { break }
            upper = walk.header.firstFrameID
            chainHash = walk.header.prevHash
            slot = previous
            id -= 1
        }
        return entries
    }

    /// The writer writes the boot record's keys in a fixed order without spaces (FORMAT.md
    /// section 4); the segment holding it has been checked before this is read.
    private static let unexpectedTrue = Array("\"unexpected_reset\":true".utf8)

    private static func contains(_ haystack: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count, let first = needle.first else { return false }
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == first && haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
