// The store's head as the trust path sees it: the newest committed segment's seal (the signed
// head), and how a store compares with an anchor taken earlier (docs/FORMAT.md section 8).

import Crypto
import EdgelogCore
import EdgelogStore

public enum StoreHead {
    /// The seal of the newest committed segment; nil while the ring is empty or the head is unreadable.
    public static func seal(device: BlockDevice) throws(StoreError) -> SealView? {
        let analysis = try EvidenceStore.analyze(device: device)
        let state = analysis.state
        guard !state.ringIsEmpty else { return nil }
        return seal(of: state.headSegmentID, state: state, device: device)
    }

    /// True when the newest committed segment holds a key_rotation record endorsing `keyID`
    /// (how an interrupted `keys rotate` tells whether its record was committed).
    public static func endorses(keyID: [UInt8], device: BlockDevice) -> Bool {
        guard let analysis = try? EvidenceStore.analyze(device: device), !analysis.state.ringIsEmpty else { return false }
        let state = analysis.state
        let buffer = AlignedBuffer(count: state.geometry.segmentSize)
        guard (try? device.read(at: state.geometry.slotOffset(state.headSlot), into: buffer.bytes)) != nil,
              let info = try? SegmentReader.validate(UnsafeRawBufferPointer(buffer.bytes), slot: state.headSlot,
                                                     expectedID: state.headSegmentID, geometry: state.geometry, storeUUID: state.storeUUID)
        else { return false }
        var found = false
        SegmentReader.forEachRecord(UnsafeRawBufferPointer(buffer.bytes), info: info) { record in
            guard record.type == .keyRotation, let members = try? FlatJSON.parse(Array(record.payload)) else { return }
            if members.string("new_key_id").flatMap(Hex.decode) == keyID { found = true }
        }
        return found
    }

    /// The seal of retained segment `id`, if its slot holds it intact.
    static func seal(of id: UInt64, state: Metadata, device: BlockDevice) -> SealView? {
        guard !state.ringIsEmpty, id >= state.tailSegmentID, id <= state.headSegmentID else { return nil }
        var slot = state.tailSlot
        var e = state.tailSegmentID
        while e < id {
            guard let next = state.nextSlot(after: slot) else { return nil }
            slot = next
            e += 1
        }
        let buffer = AlignedBuffer(count: state.geometry.segmentSize)
        guard (try? device.read(at: state.geometry.slotOffset(slot), into: buffer.bytes)) != nil,
              let info = try? SegmentReader.validate(UnsafeRawBufferPointer(buffer.bytes), slot: slot, expectedID: id,
                                                     geometry: state.geometry, storeUUID: state.storeUUID)
        else { return nil }
        return info.seal
    }
}

/// The writer's comparison of a store with its anchor, before it writes anything.
public enum AnchorCheck {
    /// Why the store must not be opened (reason code, detail), or nil when it continues the anchor's history.
    public static func refusal(anchor: SignedHead, state: Metadata, device: BlockDevice) -> (reason: String, detail: String)? {
        let a = anchor.statement
        if a.deviceID != state.deviceID {
            return ("anchor_mismatch", "the anchor is for device \(Hex.encode(a.deviceID)), this store is device \(Hex.encode(state.deviceID))")
        }
        if a.sealed.storeUUID != state.storeUUID {
            return ("anchor_mismatch", "the anchor is for store \(Hex.encode(a.sealed.storeUUID)), this is store \(Hex.encode(state.storeUUID))")
        }
        let head = state.ringIsEmpty ? 0 : state.headSegmentID
        if head < a.segmentID || state.rollbackCtr < a.rollbackCtr {
            return ("rollback", "the store ends at segment \(head) with rollback_ctr \(state.rollbackCtr); the anchor saw segment \(a.segmentID) with rollback_ctr \(a.rollbackCtr): this is an older history")
        }
        if let stored = StoreHead.seal(of: a.segmentID, state: state, device: device), stored.statement.segmentHash != a.segmentHash {
            return ("fork", "segment \(a.segmentID) is not the one the anchor saw: the history was rewritten")
        }
        return nil
    }
}

/// Streaming SHA-256 for callers that do not import Crypto (the executable's own hash).
public struct Hasher256 {
    private var inner = SHA256()
    public init() {}
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { inner.update(bufferPointer: bytes) }
    public func finalize() -> [UInt8] { Array(inner.finalize()) }
}
