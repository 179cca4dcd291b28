// Walks the committed segments from tail to head (docs/FORMAT.md section 5) for export and
// tests. Read-only. A segment inside the committed range that fails validation is reported with
// its place and reason, and the walk goes on: slots are at fixed places, so one bad segment
// never hides the others. Records are printed only from segments whose hash matches their seal and
// whose prev_hash chains onto the segment printed before them (FORMAT.md 5 step 4): a CRC can be
// recomputed by anyone, so structure alone does not make records the writer's. Signatures are the
// verifier's to check.

import EdgelogCore

public struct SegmentDamage: Equatable, Sendable, CustomStringConvertible {
    public var segmentID: UInt64
    public var slot: Int
    public var byteOffset: UInt64
    public var reason: String
    public var description: String { "segment \(segmentID) in slot \(slot) (byte \(byteOffset)): \(reason)" }
}

public enum StoreReader {
    /// Calls `body` for every record of every committed segment with commit id above `sinceCommit`,
    /// in order; returns the damaged segments met on the way.
    @discardableResult
    public static func forEachRecord(device: BlockDevice, analysis: StoreAnalysis, sinceCommit: UInt64 = 0,
                                     _ body: (SegmentInfo, RecordView) throws -> Void) rethrows -> [SegmentDamage] {
        let state = analysis.state
        var damage: [SegmentDamage] = []
        guard !state.ringIsEmpty else { return damage }
        let geometry = state.geometry
        let buffer = AlignedBuffer(count: geometry.segmentSize)
        var slot = state.tailSlot
        var id = state.tailSegmentID
        var previousHash: [UInt8]? = id == 1 ? SegmentHash.zero : nil
        while id <= state.headSegmentID {
            let offset = geometry.slotOffset(slot)
            var loaded = load(device: device, buffer: buffer, slot: slot, id: id, state: state)
            if case .success(let info) = loaded {
                let image = UnsafeRawBufferPointer(buffer.bytes)
                let hash = SegmentReader.computedHash(image, info: info)
                if hash != info.seal?.statement.segmentHash {
                    loaded = .failure(Reason(text: "hash_mismatch: the header and records do not hash to the sealed segment_hash"))
                } else if let previousHash, previousHash != info.prevHash {
                    loaded = .failure(Reason(text: "chain_break: prev_hash is not the hash of segment \(id - 1)"))
                }
                previousHash = hash
            }
            switch loaded {
            case .failure(let reason):
                damage.append(SegmentDamage(segmentID: id, slot: slot, byteOffset: offset, reason: reason.text))
                previousHash = nil
            case .success(let info) where info.commitID > sinceCommit:
                let image = UnsafeRawBufferPointer(buffer.bytes)
                var recordOffset = Layout.segmentHeaderSize
                let end = recordOffset + info.payloadLength
                while recordOffset < end, let record = try? SegmentReader.parseRecord(image, at: recordOffset, end: end) {
                    try body(info, record)
                    recordOffset += record.bytes.count
                }
            case .success:
                break
            }
            guard let nextSlot = state.nextSlot(after: slot) else { break }
            slot = nextSlot
            id += 1
        }
        return damage
    }

    struct Reason: Error { let text: String }

    /// Reads and validates one committed segment, or says why it cannot be used.
    static func load(device: BlockDevice, buffer: AlignedBuffer, slot: Int, id: UInt64, state: Metadata) -> Result<SegmentInfo, Reason> {
        do {
            try device.read(at: state.geometry.slotOffset(slot), into: buffer.bytes)
        } catch {
            return .failure(Reason(text: "read error: \(error)"))
        }
        do {
            return .success(try SegmentReader.validate(UnsafeRawBufferPointer(buffer.bytes), slot: slot, expectedID: id,
                                                       geometry: state.geometry, storeUUID: state.storeUUID))
        } catch {
            return .failure(Reason(text: error.description))
        }
    }
}
