// What `edgelog inspect` shows of a format 6 store: the metadata as recovery reads it, whether it
// agrees with the sealed state of the frame it names (no key is needed for that comparison; the
// signature is edgelog verify's), the head segment's key and firmware, and what the next open
// would do. Read-only.

import EdgelogCore

public struct PackedInspection: Sendable {
    public var history: PackedHistory
    /// Each metadata slot as read: valid (its generation) or not.
    public var slots: [PackedMetadata?]
    /// The chosen slot as stored (before recovery's reading of the ring).
    public var chosen: PackedMetadata
    /// The head segment's header (key, firmware, rollback_ctr), when the head frame is there.
    public var headHeader: PackedSegmentHeader?
    /// nil: not checked (nothing committed, or the frame the slot names is not in the ring).
    public var mismatches: [PackedMetadata.Mismatch]?

    public static func read(device: BlockDevice) throws(PackedLogError) -> PackedInspection {
        let history = try PackedHistory.analyze(device: device)
        var slots: [PackedMetadata?] = []
        let buffer = AlignedBuffer(count: PackedGeometry.metadataSlotSize)
        for i in 0..<2 {
            let offset = UInt64(i * PackedGeometry.metadataSlotSize)
            do { try device.read(at: offset, into: buffer.bytes) } catch { throw .device(error) }
            slots.append(PackedMetadata.decode(UnsafeRawBufferPointer(buffer.bytes), deviceSize: device.byteCount))
        }
        let chosen = history.chosenSlotHead?.slot ?? slots[history.recovery.metadataSlot] ?? history.metadata
        return PackedInspection(history: history, slots: slots, chosen: chosen, headHeader: history.headFrame?.header,
                                mismatches: history.metadataMismatches)
    }

    public var recoverySummary: String { history.recoverySummary }
    public var needsRecovery: Bool { history.needsRecovery }
}

extension PackedHistory {
    /// What recovery found, for a person.
    public var recoverySummary: String {
        let r = recovery
        var parts: [String] = []
        if !r.cleanBefore { parts.append("last shutdown was not clean") }
        if r.framesAdopted > 0 {
            parts.append("adopted \(r.framesAdopted) frame(s) in \(r.segmentsAdopted + 1) segment(s) committed after the last metadata write (read by chain; a writer that signs adopts only frames its own key, or the key it succeeds, signed, and edgelog verify checks the signatures)")
        }
        if r.torn { parts.append("a commit after frame \(headFrameID) was torn by a power cut: never acknowledged, nothing of it kept") }
        if r.tailsGivenUp > 0 { parts.append("the oldest segment was lost to a reclaim cut short") }
        if let refused = r.refusedFrameID { parts.append("frame \(refused) chains on but was not signed by this writer's key nor by the key it succeeds: not adopted") }
        if r.headMissing { parts.append("neither metadata slot's head frame is in the ring: a writer refuses this store (copy the image and verify it)") }
        return parts.isEmpty ? "nothing to do" : parts.joined(separator: "; ")
    }

    public var needsRecovery: Bool {
        let r = recovery
        return !r.cleanBefore || r.torn || r.framesAdopted > 0 || r.tailsGivenUp > 0 || r.refusedFrameID != nil || r.headMissing
    }
}
