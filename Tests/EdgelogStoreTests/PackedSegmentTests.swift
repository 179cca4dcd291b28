// Format 6 segments (docs/FORMAT.md appendix A.5 to A.7): frames appended on fresh sectors, each
// sealed by a signature over a rebuilt statement; the walk over a slot finds exactly the frames
// that were written, stops at a torn one, never takes a frame an older lap of the ring left, and a
// frame of the usual load costs what DESIGN.md 13 budgets.

import Crypto
import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit
import Testing

private let storeUUID: [UInt8] = Array(1...16)

private func header(segmentID: UInt64, firstFrameID: UInt64 = 1, signer: FileSigner?, sources: [(String, UInt64)] = []) -> PackedSegmentHeader {
    var h = PackedSegmentHeader()
    h.storeUUID = storeUUID
    h.segmentID = segmentID
    h.firstFrameID = firstFrameID
    h.slotIndex = 3
    h.wrapCount = 1
    h.prevHash = Array(repeating: 0xAB, count: 32)
    h.deviceID = Array(repeating: 7, count: 16)
    if let signer {
        h.keyID = signer.keyID
        h.keyEpoch = signer.keyEpoch
        h.sigAlg = signer.algorithm
        h.keySrc = 1
    }
    h.fwVerHash = Array(repeating: 2, count: 32)
    h.rollbackCtr = 9
    h.tailSegmentID = 2
    h.tailSlot = 1
    h.ringSlots = 16
    h.unexpRst = 1
    h.bootSeq = 4
    h.state.recordsTotal = 100
    h.state.tables = PackedTables(badSlots: [.init(slot: 5, reason: 1, segmentID: 1)], sources: sources.map { (name: $0.0, lastSeq: $0.1) })
    return h
}

/// Writes `frames` seconds of the usual load into a slot image; returns it with the records and the writer.
private func buildSlot(segmentID: UInt64, frames: Int, signer: FileSigner?, slotSize: Int = 256 * 1024, sector: Int = 512,
                       level: Int32 = Deflate.defaultLevel, seed: UInt64 = 1) throws -> (slot: [UInt8], records: [[PackedRecord]], writer: PackedSegmentWriter) {
    var w = SensorWorkload(sources: 20, seed: seed)
    var writer = PackedSegmentWriter(header: header(segmentID: segmentID, signer: signer), sectorSize: sector, segmentSize: slotSize)
    writer.method = .zlib(level: level, dictionaryBytes: 32 * 1024)
    var slot = [UInt8](repeating: 0, count: slotSize)
    var all: [[PackedRecord]] = []
    for i in 0..<frames {
        let rs = w.nextSecond()
        let changes: [(FrameStateField, UInt64)] = i % 10 == 5 ? [(.uplinkCursor, UInt64(i)), (.boEvent, UInt64(i / 10))] : []
        let (offset, bytes) = try writer.append(rs, changes: changes, sign: signer.map { s in { msg in try msg.withUnsafeBytes { try s.sign($0) } } })
        slot.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        all.append(rs)
    }
    return (slot, all, writer)
}

@Suite("Format 6 segments and frames")
struct PackedSegmentTests {
    @Test("a segment's frames hold at most 8 × segment_size of record block: the writer calls the segment full there, and a walk stops at a frame past it")
    func blockBudget() throws {
        let size = 16 * 1024
        let budget = 8 * size
        var writer = PackedSegmentWriter(header: header(segmentID: 4, signer: nil), sectorSize: 512, segmentSize: size)
        var slot = [UInt8](repeating: 0, count: size)
        // The same 1000-byte reading again and again deflates far more than eight times.
        let payload = Array(String(repeating: "{\"level\":7}", count: 90).utf8)
        var blocks: [Int] = []
        var full: (need: Int, left: Int)?
        var seq: UInt64 = 0
        while full == nil {
            var rs: [PackedRecord] = []
            for _ in 0..<20 {
                seq += 1
                rs.append(PackedRecord(rawType: 1, source: "tank", seq: seq, mono: seq,
                                       time: CaptureTime(wallNs: Int64(seq) * 1_000_000_000, bootNs: Int64(seq) * 1_000_000_000),
                                       bootSeq: 1, payload: payload))
            }
            let before = writer.blockBytes
            do throws(PackedWriteProblem) {
                let (offset, bytes) = try writer.append(rs)
                slot.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
                blocks.append(writer.blockBytes - before)
            } catch {
                guard case .segmentFull(let need, let left) = error else { throw error }
                full = (need, left)
            }
        }
        // Full by the budget with most of the slot still free.
        #expect(full?.left == budget - writer.blockBytes && (full?.need ?? 0) > (full?.left ?? 0), "\(String(describing: full))")
        #expect(writer.nextOffset < size / 2, "the slot holds \(writer.nextOffset) bytes")
        #expect(writer.blockBytes <= budget && writer.blockBytes + blocks[0] > budget)
        let walk = try slot.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512, storeUUID: storeUUID) }
        #expect(walk.frames.count == blocks.count)
        #expect(walk.end == .blank)
        // The same frames read in a slot half the size (a budget half as large) stop where the
        // budget runs out, before the frame past it inflates.
        let half = try slot.withUnsafeBytes { try PackedSegmentReader.walk(UnsafeRawBufferPointer(rebasing: $0[0..<(size / 2)]), sectorSize: 512, storeUUID: storeUUID) }
        var sum = 0, fit = 0
        while fit < blocks.count, sum + blocks[fit] <= budget / 2 { sum += blocks[fit]; fit += 1 }
        #expect(half.frames.count == fit)
        guard case .badBlockLength(let why) = half.end else {
            Issue.record("the walk ended with \(half.end)")
            return
        }
        #expect(why.contains("budget"))
    }

    @Test("the walk reads back every frame: records, state, chain and signatures; it ends at the first blank sector")
    func roundTrip() throws {
        let signer = FileSigner(key: .ed25519(.init()), epoch: 3)
        let (slot, records, writer) = try buildSlot(segmentID: 8, frames: 40, signer: signer)
        let walk = try slot.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512, storeUUID: storeUUID) }
        #expect(walk.header == writer.header)
        #expect(walk.frames.count == 40)
        #expect(walk.end == .blank)
        #expect(walk.endOffset == writer.nextOffset)
        var prev = writer.header.prevHash
        for (i, f) in walk.frames.enumerated() {
            #expect(f.records == records[i])
            #expect(f.frameID == 1 + UInt64(i))
            #expect(signer.verifies(f.signature, of: f.statement))
            #expect(Array(f.statement[120..<152]) == prev)
            #expect(Array(f.statement[152..<184]) == f.frameHash)
            prev = f.frameHash
        }
        #expect(walk.frames.last?.stateAfter == writer.state)
        #expect(writer.state.recordsTotal == 100 + 40 * 20)
        #expect(writer.state.uplinkCursor == 35 && writer.state.boEvent == 3)
        #expect(writer.state.tables.sources.count == 20)
        #expect(writer.state.tables.badSlots.count == 1)
        // Every frame signs the header: a changed header field fails them all.
        var other = writer.header
        other.unexpRst += 1
        let otherHash = other.encoded(sectorSize: 512).withUnsafeBytes { PackedSegmentHeader.hash($0) }
        #expect(otherHash != walk.headerHash)
    }

    @Test("a torn last frame ends the walk there; the frames before it stand")
    func tornFrame() throws {
        let (slot, _, writer) = try buildSlot(segmentID: 8, frames: 12, signer: nil)
        let walk = try slot.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512) }
        let last = try #require(walk.frames.last)
        for (cut, variant) in [(last.frameLength - 1, "end"), (last.frameLength / 2, "middle"), (1, "start")] {
            var torn = slot
            for k in (last.offset + cut)..<writer.nextOffset { torn[k] = variant == "middle" ? 0x5A : 0 }
            let w = try torn.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512) }
            #expect(w.frames.count == 11, "\(variant)")
            #expect(w.endOffset == last.offset)
            #expect(w.end != .blank, "\(variant)")
        }
    }

    @Test("frames an older lap left in the slot are not read as frames of the segment now there")
    func olderLap() throws {
        // The same records, so that the new segment's frames end exactly where an old frame starts.
        let (old, _, _) = try buildSlot(segmentID: 4, frames: 30, signer: nil)
        let (new, _, writer) = try buildSlot(segmentID: 20, frames: 10, signer: nil)
        var slot = old
        slot.replaceSubrange(0..<writer.nextOffset, with: new[0..<writer.nextOffset])
        let w = try slot.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512) }
        #expect(w.frames.count == 10)
        #expect(w.end == .crcMismatch)
        let oldWalk = try old.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512) }
        #expect(oldWalk.frames[10].offset == w.endOffset)
    }

    @Test("a frame that does not fit leaves the writer unchanged; a state that goes back is refused")
    func limits() throws {
        var w = SensorWorkload(sources: 20, seed: 2)
        var writer = PackedSegmentWriter(header: header(segmentID: 1, signer: nil), sectorSize: 512, segmentSize: 4096)
        var frames = 0
        while true {
            let before = writer.nextOffset
            do {
                _ = try writer.append(w.nextSecond())
                frames += 1
            } catch PackedWriteProblem.segmentFull {
                #expect(writer.nextOffset == before)
                break
            }
        }
        #expect(frames >= 2)
        #expect(throws: PackedWriteProblem.stateGoesBack(.droppedTotal)) {
            var wr = PackedSegmentWriter(header: header(segmentID: 1, signer: nil), sectorSize: 512, segmentSize: 8192)
            _ = try wr.append([], changes: [(.droppedTotal, 5)])
            _ = try wr.append([], changes: [(.droppedTotal, 4)])
        }
    }

    @Test("hostile slots: any corruption ends the walk with a typed reason, never a crash, and frames before it stand")
    func hostile() throws {
        let (slot, _, _) = try buildSlot(segmentID: 8, frames: 20, signer: nil, slotSize: 64 * 1024)
        let good = try slot.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512) }
        var rng = SplitMix64(seed: 5)
        for _ in 0..<400 {
            var b = slot
            let at = good.headerLength + Int(rng.next() % UInt64(good.endOffset - good.headerLength))
            b[at] ^= UInt8(1 << (rng.next() % 8))
            let w = try b.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512) }
            let hit = good.frames.firstIndex { $0.offset <= at && at < $0.offset + ($0.frameLength + 511) / 512 * 512 } ?? good.frames.count
            // Padding after a frame's CRC is not covered: a flip there changes nothing.
            #expect(w.frames.count == hit || w.frames.count == good.frames.count)
            for (x, y) in zip(w.frames, good.frames) { #expect(x.records == y.records) }
        }
        var header = slot
        header[100] ^= 1
        #expect(throws: PackedProblem.crcMismatch) { try header.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512) } }
        #expect(throws: PackedProblem.foreignStore) { try slot.withUnsafeBytes { try PackedSegmentReader.walk($0, sectorSize: 512, storeUUID: Array(repeating: 9, count: 16)) } }
    }

    @Test("partition bytes a record under the usual load, Ed25519-signed frames of 20 records on 512-byte sectors")
    func bytesPerRecord() throws {
        let signer = FileSigner(key: .ed25519(.init()), epoch: 1)
        for level: Int32 in [6, 9] {
            let (_, _, writer) = try buildSlot(segmentID: 2, frames: 300, signer: signer, slotSize: 1 << 20, level: level)
            let perRecord = Double(writer.nextOffset - writer.headerBytes.count) / Double(300 * 20)
            print("packed segment: level \(level): \(perRecord) partition bytes a record (frames only)")
            // DESIGN.md 13: two sectors a frame at most, 51.2 bytes a record, 52.0 with the metadata.
            #expect(perRecord <= 51.2)
        }
    }

    @Test("the search past a walk's end finds what a check at every boundary finds, in one pass over crafted length claims")
    func searchPastWalkEnd() {
        let sector = 512
        let h = header(segmentID: 7, signer: nil)
        let seed = CRC32C.checksum(storeUUID + withUnsafeBytes(of: UInt64(7).littleEndian) { Array($0) })
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x }
        for round in 0..<40 {
            var slot = (0..<(64 * sector)).map { _ in UInt8(truncatingIfNeeded: next()) }
            // Every boundary claims a frame; a third claim the rest of the slot (the quadratic case).
            var lengths: [Int] = []
            for k in 0..<64 {
                let o = k * sector
                let length = next() % 3 == 0 ? 64 * sector - o : Int(next() % UInt64(64 * sector - o - 8)) + 8
                var head: [UInt8] = Array("EF".utf8) + [0]
                Varint.append(UInt64(length), to: &head)
                slot.replaceSubrange(o..<(o + head.count), with: head)
                lengths.append(length)
            }
            // Every other round one of them is sealed with a CRC that checks.
            if round % 2 == 0 {
                let k = Int(next() % 64)
                let o = k * sector
                let end = o + lengths[k] - 4
                let crc = CRC32C.checksum(slot[o..<end], seed: seed)
                withUnsafeBytes(of: crc.littleEndian) { slot.replaceSubrange(end..<(end + 4), with: $0) }
            }
            for start in [0, sector, 17 * sector] {
                slot.withUnsafeBytes { s in
                    // The direct check at every boundary, over the lengths planted there (each claim is
                    // well formed: magic, flags 0, a frame_len that ends inside the slot).
                    let brute = (start / sector..<64).first { k in
                        let end = k * sector + lengths[k] - 4
                        return CRC32C.checksum(slot[(k * sector)..<end], seed: seed) == s.le(end, as: UInt32.self)
                    }.map { $0 * sector }
                    if round % 2 == 0 && start == 0 { #expect(brute != nil, "round \(round): the sealed frame is found") }
                    #expect(PackedSegmentReader.firstFrameWithCheckingCRC(s, from: start, sectorSize: sector, header: h) == brute, "round \(round) from \(start)")
                }
            }
        }
    }
}
