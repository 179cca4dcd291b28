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
                #expect(FileManager.default.createFile(atPath: path, contents: Data(image)), "could not write the test file")
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

    @Test("on a store that gave a slot up (marked bad), with and without the failed attempt's copy in it", arguments: [false, true])
    func badSlot(landed: Bool) throws {
        let decoder = PackageRoot.url.appendingPathComponent("scripts/edgelog_decode.py").path
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-packed-bad-\(getpid())-\(landed)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let base = MemoryBlockDevice(size: PackedGeometry.ringOffset + 6 * 8192, sectorSize: 512)
        try PackedLog.format(device: base, segmentSize: 8192, storeUUID: Array(1...16), deviceID: Array(repeating: 4, count: 16), wallNs: 0)
        let device = FaultBlockDevice(image: base.bytes)
        device.failWrites(at: UInt64(PackedGeometry.ringOffset + 2 * 8192), landed: landed)
        var w = SensorWorkload(sources: 5, seed: 12)
        var pending: [PackedRecord] = []
        for session in 0..<2 {
            let log = try PackedLog(device: device, identity: PackedLog.PackedIdentity(deviceID: Array(repeating: 4, count: 16)), clock: { 0 })
            for i in 0..<70 {
                while pending.count < 6 { pending += w.nextSecond() }
                let n = 1 + i % 5
                try log.append(Array(pending.prefix(n)))
                pending.removeFirst(n)
            }
            if session == 0 { try log.close() }
        }
        let memory = MemoryBlockDevice(image: device.current, sectorSize: 512)
        let h = try PackedHistory.analyze(device: memory)
        #expect(h.state.tables.badSlots.map(\.slot) == [2] && h.wrapCount >= 1)
        let want = expectedLines(h, h.frames(device: memory))
        #expect(FileManager.default.createFile(atPath: path, contents: Data(device.current)), "could not write the test file")
        let r = try run("/usr/bin/env", ["python3", decoder, "--packed-store", path])
        let lines = String(decoding: r.out, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(r.code == 0 && lines.count > 100)
        #expect(lines == want, "\(zip(lines, want).first { $0.0 != $0.1 }.map { "python \($0.0.prefix(300)) | swift \($0.1.prefix(300))" } ?? "\(lines.count) vs \(want.count) lines")")
    }
}

@Suite("edgelog export on format 6", .serialized)
struct PackedExportTests {
    @Test("export of a wrapped, recovered format 6 store prints every committed record as the independent decoder reads it")
    func exportAgreesWithDecoder() throws {
        let root = PackageRoot.url
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-packed-export-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let memory = MemoryBlockDevice(size: PackedGeometry.ringOffset + 5 * 8192, sectorSize: 512)
        try PackedEvidenceStore.format(device: memory, segmentSize: 8192, storeUUID: Array(1...16), wallNs: 0, force: false)
        var n = 0
        for session in 0..<3 {
            let store = try PackedEvidenceStore.open(device: memory, policy: .overwriteOldest, clock: CrashOracle.fixedClock)
            let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000)) { _ in }
            for _ in 0..<40 {
                for source in ["t1", "cmd.x", "hum"] {
                    _ = payload(n, size: 30 + n % 50).withUnsafeBytes { pipeline.append(source: source, payload: $0, time: CrashOracle.fixedClock()) }
                    n += 1
                }
                try pipeline.flush()
            }
            // The second session stops without closing: the third writes recovery records.
            if session != 1 { try pipeline.close() }
        }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(memory.bytes)), "could not write the test file")
        let export = try run(root.appendingPathComponent(".build/debug/edgelog").path, ["export", "--device", path])
        #expect(export.code == 0, "\(String(decoding: export.err, as: UTF8.self))")
        let decoded = try run("/usr/bin/env", ["python3", root.appendingPathComponent("scripts/edgelog_decode.py").path, "--packed-store", path])
        #expect(decoded.code == 0)
        func objects(_ d: Data) -> [[String: Any]] {
            String(decoding: d, as: UTF8.self).split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
        let ours = objects(export.out)
        let theirs = objects(decoded.out).filter { $0["kind"] == nil }
        #expect(ours.count == theirs.count && ours.count > 100)
        #expect(ours.contains { $0["type"] as? String == "gap" } && ours.contains { $0["type"] as? String == "recovery" })
        var mismatches = 0
        for (a, b) in zip(ours, theirs) {
            let payload = (try? JSONSerialization.data(withJSONObject: a["payload"] ?? NSNull(), options: [.fragmentsAllowed, .withoutEscapingSlashes])) ?? Data()
            let same = (a["commit_id"] as? NSNumber) == (b["frame"] as? NSNumber) && (a["seq"] as? NSNumber) == (b["seq"] as? NSNumber)
                && (a["mono_ctr"] as? NSNumber) == (b["mono_ctr"] as? NSNumber) && (a["source"] as? String) == (b["source"] as? String)
                && (a["wall_ns"] as? NSNumber) == (b["wall_ns"] as? NSNumber) && (a["boot_seq"] as? NSNumber) == (b["boot_seq"] as? NSNumber)
                && RecordType(rawValue: (b["type"] as? NSNumber)?.uint16Value ?? 0)?.name == a["type"] as? String
                && (try? JSONSerialization.jsonObject(with: Data(hexString: b["payload_hex"] as? String ?? "") ?? Data(), options: .fragmentsAllowed) as? NSObject)
                    == (try? JSONSerialization.jsonObject(with: payload, options: .fragmentsAllowed) as? NSObject)
            if !same { mismatches += 1 }
        }
        #expect(mismatches == 0)
        print("format 6 export vs decoder: \(ours.count) records, \(mismatches) mismatches")
    }
}

private extension Data {
    init?(hexString: String) {
        var bytes: [UInt8] = []
        var it = hexString.utf8.makeIterator()
        while let h = it.next() {
            guard let l = it.next(), let v = UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(v)
        }
        self.init(bytes)
    }
}

@Suite("edgelog verify and head on format 6", .serialized)
struct PackedVerifyCLITests {
    @Test("verify --json passes an honest unsigned store with --allow-unsigned and fails it without; head prints a version 3 head the verifier accepts as anchor")
    func verifyAndHead() throws {
        let root = PackageRoot.url
        let binary = root.appendingPathComponent(".build/debug/edgelog").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-packed-verify-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("store.img").path, anchor = dir.appendingPathComponent("head.json").path
        let memory = MemoryBlockDevice(size: PackedGeometry.ringOffset + 6 * 16384, sectorSize: 512)
        try PackedEvidenceStore.format(device: memory, segmentSize: 16384, storeUUID: Array(1...16), wallNs: 0, force: false)
        let store = try PackedEvidenceStore.open(device: memory, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000)) { _ in }
        for n in 0..<30 {
            _ = payload(n).withUnsafeBytes { pipeline.append(source: "probe", payload: $0, time: CrashOracle.fixedClock()) }
            if n % 3 == 2 { try pipeline.flush() }
        }
        try pipeline.close()
        #expect(FileManager.default.createFile(atPath: path, contents: Data(memory.bytes)), "could not write the test file")
        let passed = try run(binary, ["verify", "--device", path, "--allow-unsigned", "--json"])
        let lines = String(decoding: passed.out, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(passed.code == 0, "\(lines.suffix(3))")
        #expect(lines.first?.hasPrefix("{\"kind\":\"segment\",\"segment_id\":1,\"slot\":0,\"offset\":32768,\"first_frame_id\":1,") == true)
        #expect(lines.last?.hasPrefix("{\"kind\":\"summary\",\"verdict\":\"PASS\",\"segments\":1,\"passed\":1,\"failed\":0,\"frames\":10,\"frames_passed\":10,") == true,
                "\(lines.last ?? "")")
        #expect(try run(binary, ["verify", "--device", path]).code == 1)
        let head = try run(binary, ["head", "--device", path, "--json"])
        #expect(head.code == 0)
        #expect(String(decoding: head.out, as: UTF8.self).hasPrefix("{\"format\":\"edgelog-head\",\"version\":3,"))
        #expect(FileManager.default.createFile(atPath: anchor, contents: head.out), "could not write the test file")
        #expect(try run(binary, ["verify", "--device", path, "--allow-unsigned", "--anchor", anchor]).code == 0)
        let inspect = try run(binary, ["inspect", "--device", path, "--json", "--verify"])
        #expect(inspect.code == 0)
        let o = try #require(try JSONSerialization.jsonObject(with: inspect.out) as? [String: Any])
        #expect(o["format_version"] as? Int == 6 && o["records_total"] as? Int == 30 && o["clean_flag"] as? Bool == true)
        #expect((o["metadata_check"] as? String)?.hasPrefix("agrees") == true, "\(o["metadata_check"] ?? "")")
        #expect((o["recovery"] as? [String: Any])?["needed"] as? Bool == false)
        #expect(o["verified_records"] as? Int == 30 + 0)
    }
}
