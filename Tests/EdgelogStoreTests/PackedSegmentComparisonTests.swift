// The independent Python decoder (scripts/edgelog_decode.py --segment, written from FORMAT.md
// appendix A.5 to A.7 alone) must read a format 6 slot exactly as the engine's walk does: the
// header, every frame with its rebuilt statement, the records, and where and why the walk ends.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

private func hex(_ b: [UInt8]) -> String { Hex.encode(b) }

private func expectedLines(_ walk: PackedSegmentReader.Walk) -> [String] {
    let h = walk.header, s = h.state
    let bad = s.tables.badSlots.map { "[\($0.slot),\($0.reason),\($0.segmentID)]" }.joined(separator: ",")
    let sources = s.tables.sources.map { "[\"\($0.name)\",\($0.lastSeq)]" }.joined(separator: ",")
    var lines = ["{\"kind\":\"header\",\"segment_id\":\(h.segmentID),\"first_frame_id\":\(h.firstFrameID),\"slot_index\":\(h.slotIndex),"
        + "\"wrap_count\":\(h.wrapCount),\"header_len\":\(walk.headerLength),\"store_uuid\":\"\(hex(h.storeUUID))\",\"device_id\":\"\(hex(h.deviceID))\","
        + "\"key_id\":\"\(hex(h.keyID))\",\"key_epoch\":\(h.keyEpoch),\"sig_alg\":\(h.sigAlg.rawValue),\"key_src\":\(h.keySrc),\"sig_len\":\(h.sigLen),"
        + "\"rollback_ctr\":\(h.rollbackCtr),\"tail_segment_id\":\(h.tailSegmentID),\"tail_slot\":\(h.tailSlot),\"ring_slots\":\(h.ringSlots),"
        + "\"mono_hwm\":\(s.monoHWM),\"records_total\":\(s.recordsTotal),\"lost_total\":\(s.lostTotal),\"dropped_total\":\(s.droppedTotal),"
        + "\"uplink_cursor\":\(s.uplinkCursor),\"unexp_rst\":\(h.unexpRst),\"bo_event\":\(s.boEvent),\"ecc_err_cnt\":\(s.eccErrCnt),"
        + "\"clock_steps\":\(s.clockSteps),\"boot_seq\":\(h.bootSeq),\"bad_slots\":[\(bad)],\"sources\":[\(sources)],"
        + "\"prev_hash\":\"\(hex(h.prevHash))\",\"header_hash\":\"\(hex(walk.headerHash))\"}"]
    for f in walk.frames {
        let state = f.stateChanges.map { "[\($0.0.rawValue),\($0.1)]" }.joined(separator: ",")
        lines.append("{\"kind\":\"frame\",\"frame_id\":\(f.frameID),\"offset\":\(f.offset),\"frame_len\":\(f.frameLength),\"deflate\":\(f.deflate),"
            + "\"record_count\":\(f.recordCount),\"block_len\":\(f.blockLength),\"state\":[\(state)],\"frame_hash\":\"\(hex(f.frameHash))\","
            + "\"statement\":\"\(hex(f.statement))\",\"signature\":\"\(hex(f.signature))\"}")
        for r in f.records { lines.append(packedRecordLine(frame: f.frameID, r)) }
    }
    lines.append("{\"kind\":\"end\",\"offset\":\(walk.endOffset),\"frames\":\(walk.frames.count),\"reason\":\"\(walk.end.reason)\"}")
    return lines
}

@Suite("Independent decoder agrees on format 6 segments", .serialized)
struct PackedSegmentComparisonTests {
    @Test("signed and unsigned slots, whole, torn, overwritten by a later lap, and with flipped bits")
    func slots() throws {
        let decoder = PackageRoot.url.appendingPathComponent("scripts/edgelog_decode.py").path
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-segment-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var rng = SplitMix64(seed: 31)
        var compared = 0
        var mismatches: [String] = []
        for (n, signer) in [nil, FileSigner(key: .ed25519(.init()), epoch: 2), FileSigner(key: .hmacSHA256(Array(repeating: 3, count: 32)), epoch: 1)].enumerated() {
            var header = PackedSegmentHeader()
            header.storeUUID = Array(1...16)
            header.segmentID = 5 + UInt64(n)
            header.firstFrameID = 40
            header.slotIndex = 2
            header.ringSlots = 12
            header.prevHash = Array(repeating: 0x11, count: 32)
            header.deviceID = Array(repeating: 0x22, count: 16)
            if let signer {
                header.keyID = signer.keyID
                header.keyEpoch = signer.keyEpoch
                header.sigAlg = signer.algorithm
                header.keySrc = 1
            }
            header.state.tables = PackedTables(badSlots: [.init(slot: 7, reason: 2, segmentID: 3)], sources: [(name: "env.bme280-3", lastSeq: 17), (name: "old", lastSeq: 2)])
            var writer = PackedSegmentWriter(header: header, sectorSize: 512, segmentSize: 64 * 1024)
            var w = SensorWorkload(sources: 6, seed: UInt64(n) + 1)
            var slot = [UInt8](repeating: 0, count: 64 * 1024)
            for i in 0..<25 {
                var rs = w.nextSecond()
                if i % 6 == 0 { rs = [] }
                // Two large frames in a row (blocks of about 11 KiB): level 1 against the last 8 KiB
                // of a dictionary longer than that (A.4).
                if i % 10 == 3 || i % 10 == 4 { for _ in 0..<20 { rs += w.nextSecond() } }
                let changes: [(FrameStateField, UInt64)] = i % 4 == 1 ? [(.lostTotal, UInt64(i)), (.clockSteps, UInt64(i / 4))] : []
                let (offset, bytes) = try writer.append(rs, changes: changes, sign: signer.map { s in { m in try m.withUnsafeBytes { try s.sign($0) } } })
                slot.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
            }
            var variants: [(String, [UInt8])] = [("whole", slot)]
            var torn = slot
            for k in (writer.nextOffset - 300)..<writer.nextOffset { torn[k] = 0 }
            variants.append(("torn", torn))
            for v in 0..<12 {
                var b = slot
                b[Int(rng.next() % UInt64(writer.nextOffset))] ^= UInt8(1 << (rng.next() % 8))
                variants.append(("flip\(v)", b))
            }
            for (label, image) in variants {
                #expect(FileManager.default.createFile(atPath: path, contents: Data(image)), "could not write the test file")
                let r = try run("/usr/bin/env", ["python3", decoder, "--segment", path, "--sector-size", "512"])
                let lines = String(decoding: r.out, as: UTF8.self).split(separator: "\n").map(String.init)
                compared += 1
                guard let walk = try? image.withUnsafeBytes({ try PackedSegmentReader.walk($0, sectorSize: 512) }) else {
                    if r.code != 1 { mismatches.append("\(n) \(label): swift refuses the header, python exit \(r.code)") }
                    continue
                }
                let want = expectedLines(walk)
                if r.code != 0 || lines != want {
                    let i = Array(zip(lines, want)).firstIndex { $0.0 != $0.1 } ?? min(lines.count, want.count)
                    mismatches.append("\(n) \(label): exit \(r.code), line \(i): python \(i < lines.count ? String(lines[i].prefix(300)) : "-") swift \(i < want.count ? String(want[i].prefix(300)) : "-") \(String(decoding: r.err, as: UTF8.self).prefix(200))")
                }
            }
        }
        print("segment comparisons: \(compared) slots, \(mismatches.count) mismatches")
        #expect(compared == 42)
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3).joined(separator: " | "))")
    }
}
