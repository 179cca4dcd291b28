// The independent Python decoder (scripts/edgelog_decode.py --packed-store, written from FORMAT.md
// A.8 and A.9 alone) must find the same committed history as the engine's recovery analysis on
// the images power cuts leave in a format 6 store: the slot chosen, what the forward scan adopts,
// torn commits, the tail, the sealed totals, and every committed frame with its records.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

private func expectedLines(_ h: PackedHistory, _ frames: [PackedFrameInfo]) -> [String] {
    var lines = ["{\"kind\":\"metadata\",\"slot\":\"\(h.recovery.metadataSlot == 0 ? "A" : "B")\",\"generation\":\(h.recovery.generation),"
        + "\"clean_flag\":\(h.metadata.clean ? 1 : 0),\"head_missing\":\(h.recovery.headMissing),\"frames_adopted\":\(h.recovery.framesAdopted),"
        + "\"segments_adopted\":\(h.recovery.segmentsAdopted),\"torn\":\(h.recovery.torn),\"head_frame_id\":\(h.headFrameID),"
        + "\"head_segment_id\":\(h.headSegmentID),\"tail_segment_id\":\(h.tailSegmentID),\"tail_slot\":\(h.tailSlot),"
        + "\"records_total\":\(h.state.recordsTotal),\"lost_total\":\(h.state.lostTotal)}"]
    for f in frames {
        lines.append("{\"kind\":\"frame\",\"segment_id\":\(f.segmentID),\"frame_id\":\(f.frameID),\"records\":\(f.records.count)}")
        for r in f.records { lines.append(packedRecordLine(frame: f.frameID, r)) }
    }
    return lines
}

@Suite("Independent decoder agrees on format 6 stores", .serialized)
struct PackedStoreComparisonTests {
    @Test("on the images power cuts leave while the ring wraps, before recovery", arguments: [512, 4096])
    func crashImages(sector: Int) throws {
        let decoder = PackageRoot.url.appendingPathComponent("scripts/edgelog_decode.py").path
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-packed-\(getpid())-\(sector)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let segment = sector == 4096 ? 32768 : 8192
        let base = MemoryBlockDevice(size: PackedGeometry.ringOffset + (sector == 4096 ? 6 : 4) * segment, sectorSize: sector)
        try PackedLog.format(device: base, segmentSize: segment, storeUUID: Array(1...16), deviceID: Array(repeating: 4, count: 16), wallNs: 0)
        let device = FaultBlockDevice(image: base.bytes, sectorSize: sector)
        var w = SensorWorkload(sources: 5, seed: UInt64(sector))
        var pending: [PackedRecord] = []
        for session in 0..<2 {
            let log = try PackedLog(device: device, identity: PackedLog.PackedIdentity(deviceID: Array(repeating: 4, count: 16)), clock: { 0 })
            log.metadataEvery = 4
            for i in 0..<(session == 0 ? 25 : 45) {
                while pending.count < 6 { pending += w.nextSecond() }
                let n = 1 + i % 5
                try log.append(Array(pending.prefix(n)))
                pending.removeFirst(n)
            }
            if session == 0 { try log.close() }
        }
        let images = CrashImageBuilder(device: device)
        var compared = 0
        var mismatches: [String] = []
        for cut in stride(from: 0, to: images.cuts.upperBound, by: 4) {
            for (v, variant) in [CrashVariant.torn512, .garbage].enumerated() {
                let image = images.image(at: CrashPoint(cut: cut, variant: variant, seed: UInt64(cut * 7 + v)), sectorSize: sector)
                let memory = MemoryBlockDevice(image: image, sectorSize: sector)
                let h = try PackedHistory.analyze(device: memory)
                let want = expectedLines(h, h.frames(device: memory))
                FileManager.default.createFile(atPath: path, contents: Data(image))
                let r = try run("/usr/bin/env", ["python3", decoder, "--packed-store", path])
                let lines = String(decoding: r.out, as: UTF8.self).split(separator: "\n").map(String.init)
                compared += 1
                if r.code != 0 || lines != want {
                    let i = Array(zip(lines, want)).firstIndex { $0.0 != $0.1 } ?? min(lines.count, want.count)
                    mismatches.append("cut \(cut) \(variant): exit \(r.code), \(lines.count) vs \(want.count) lines, line \(i): python \(i < lines.count ? String(lines[i].prefix(400)) : "-") swift \(i < want.count ? String(want[i].prefix(400)) : "-") \(String(decoding: r.err, as: UTF8.self).prefix(200))")
                }
            }
        }
        print("packed store comparisons (\(sector)): \(compared) images, \(mismatches.count) mismatches")
        #expect(compared > 80)
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3).joined(separator: " | "))")
    }
}
