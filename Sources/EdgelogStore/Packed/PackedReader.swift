// Streams the committed frames of a format 6 store from the tail to the head (FORMAT.md A.9 step
// 3) for export and the tools: a segment at a time, with the next one's header read ahead to know
// where its chain point is, so memory follows a segment, not the ring. Read-only. Where the
// history stops early (a slot without the expected segment, a chain that breaks), it says where
// and why: a break is damage, not a cut, and what follows it is not shown as this history.

import EdgelogCore

/// Where a format 6 history stops before its head, and why.
public struct FrameDamage: Error, Equatable, Sendable, CustomStringConvertible {
    public var segmentID: UInt64
    public var slot: Int
    public var byteOffset: UInt64
    public var reason: String
    public var description: String { "segment \(segmentID) in slot \(slot) (byte \(byteOffset)): \(reason)" }
}

extension PackedHistory {
    /// Calls `body` for every committed frame with id above `sinceFrame`, tail to head, with its
    /// segment's header; returns where the history stopped short of its head (empty: it did not).
    @discardableResult
    public func forEachFrame(device: BlockDevice, sinceFrame: UInt64 = 0,
                             _ body: (PackedSegmentHeader, PackedFrameInfo) throws -> Void) rethrows -> [FrameDamage] {
        let m = metadata
        guard headFrameID > 0, tailSegmentID <= headSegmentID else { return [] }
        func read(_ slot: Int, _ id: UInt64) -> Result<PackedSegmentReader.Walk, FrameDamage> {
            let damage = { (why: String) in FrameDamage(segmentID: id, slot: slot, byteOffset: m.geometry.slotOffset(slot), reason: why) }
            do {
                let walk = try Self.readWalk(device, m, slot: slot, keepRecords: true)
                guard walk.header.segmentID == id else {
                    return .failure(damage("the slot holds segment \(walk.header.segmentID), not \(id): the history stops before it"))
                }
                return .success(walk)
            } catch let e as DeviceError {
                return .failure(damage("read error: \(e)"))
            } catch {
                return .failure(damage("no valid segment header (\(error)): the history stops before it"))
            }
        }
        var slot = tailSlot
        var id = tailSegmentID
        var current: PackedSegmentReader.Walk
        switch read(slot, id) {
        case .success(let w): current = w
        case .failure(let d): return [d]
        }
        for _ in 0..<m.geometry.ringSlots {
            if id == headSegmentID {
                for f in current.frames where f.frameID > sinceFrame && f.frameID <= headFrameID { try body(current.header, f) }
                return []
            }
            guard let nextSlot = m.nextSlot(after: slot) else { break }
            let next: PackedSegmentReader.Walk
            switch read(nextSlot, id + 1) {
            case .success(let w): next = w
            case .failure(let d):
                for f in current.frames where f.frameID > sinceFrame { try body(current.header, f) }
                return [d]
            }
            // The frames below the next segment's first frame, the last of them the one it chains on.
            let kept = current.frames.filter { $0.frameID < next.header.firstFrameID }
            for f in kept where f.frameID > sinceFrame { try body(current.header, f) }
            guard let last = kept.last, last.frameID &+ 1 == next.header.firstFrameID, last.frameHash == next.header.prevHash else {
                return [FrameDamage(segmentID: id + 1, slot: nextSlot, byteOffset: m.geometry.slotOffset(nextSlot),
                                    reason: "chain_break: its first frame does not chain onto the last frame of segment \(id)")]
            }
            current = next
            slot = nextSlot
            id += 1
        }
        return []
    }
}

extension PackedHistory {
    /// Committed frame `id` with its records and its segment's header, or nil when the history does
    /// not hold it. Reads the segments from the head back to the one that holds it (their headers,
    /// then that segment whole), never the ring.
    public func frame(device: BlockDevice, id: UInt64) -> (header: PackedSegmentHeader, frame: PackedFrameInfo)? {
        guard id >= 1, id <= headFrameID, tailSegmentID <= headSegmentID else { return nil }
        let m = metadata
        var slot = headSlot
        var segment = headSegmentID
        var upper = headFrameID &+ 1    // frames of this segment in the history lie below this id
        for _ in 0..<m.geometry.ringSlots {
            guard let walk = try? Self.readWalk(device, m, slot: slot, keepRecords: true), walk.header.segmentID == segment else { return nil }
            if walk.header.firstFrameID <= id {
                guard id < upper, let f = walk.frames.first(where: { $0.frameID == id }) else { return nil }
                return (walk.header, f)
            }
            guard segment > tailSegmentID, let previous = previousSlot(before: slot) else { return nil }
            upper = walk.header.firstFrameID
            slot = previous
            segment -= 1
        }
        return nil
    }

    /// The good slot before `slot` (the chosen slot's bad slots skipped).
    public func previousSlot(before slot: Int) -> Int? {
        let n = metadata.geometry.ringSlots
        var s = slot
        for _ in 0..<n {
            s = (s + n - 1) % n
            if !metadata.isBad(s) { return s }
        }
        return nil
    }
}
