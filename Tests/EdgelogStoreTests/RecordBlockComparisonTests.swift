// The independent Python decoder (scripts/edgelog_decode.py --frames, written from FORMAT.md
// appendix A alone) must decode the record blocks the engine writes to the same fields, for the
// usual load and for records with every field at its extremes, stored and deflated.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

/// The test-vector container of `edgelog_decode.py --frames`: `EDGEFRM1`, then per frame u8
/// encoding, 3 zero bytes, u32 record_count, u32 block_len, u32 stored_len, the stored bytes.
private struct FrameFile {
    var bytes: [UInt8] = Array("EDGEFRM1".utf8)
    var expected: [String] = []
    var frames = 0
    private var ctx = RecordBlockContext()
    private var previous: [UInt8] = []

    mutating func add(_ records: [PackedRecord], deflate: Bool) throws {
        var block: [UInt8] = []
        for r in records { try RecordBlock.append(r, to: &block, context: &ctx) }
        let stored = deflate ? (Deflate.compress(block, dictionary: previous) ?? block) : block
        let encoding: UInt8 = deflate && stored != block ? 1 : 0
        previous = block
        bytes.append(encoding)
        bytes.append(contentsOf: [0, 0, 0])
        for v in [UInt32(records.count), UInt32(block.count), UInt32(stored.count)] {
            withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
        }
        bytes.append(contentsOf: stored)
        for r in records { expected.append(packedRecordLine(frame: UInt64(frames), r)) }
        frames += 1
    }
}

@Suite("Independent decoder agrees on record blocks", .serialized)
struct RecordBlockComparisonTests {
    private func compare(_ file: FrameFile, name: String) throws {
        let decoder = PackageRoot.url.appendingPathComponent("scripts/edgelog_decode.py").path
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-frames-\(getpid())-\(name)").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(file.bytes)), "could not write the test file")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try run("/usr/bin/env", ["python3", decoder, "--frames", path])
        #expect(r.code == 0, "\(String(decoding: r.err, as: UTF8.self).prefix(300)) \(String(decoding: r.out, as: UTF8.self).suffix(300))")
        let lines = String(decoding: r.out, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.count == file.expected.count)
        let first = Array(zip(lines, file.expected)).firstIndex { $0.0 != $0.1 }
        #expect(first == nil, "first difference at record \(first ?? -1): python \(first.map { lines[$0] } ?? "") swift \(first.map { file.expected[$0] } ?? "")")
    }

    @Test("the usual load: 20 sources a second, deflated with the previous frame as dictionary")
    func usualLoad() throws {
        var w = SensorWorkload(sources: 20, seed: 5)
        var file = FrameFile()
        for i in 0..<60 { try file.add(w.nextSecond(), deflate: i % 7 != 3) }
        try compare(file, name: "usual")
    }

    @Test("records with every field at its extremes, evidence types and binary payloads")
    func extremes() throws {
        var rng = SplitMix64(seed: 77)
        var file = FrameFile()
        var mono: UInt64 = 0
        let walls: [Int64] = [.min, .max, 0, -1, 1, 1_790_000_000_000_000_000]
        for f in 0..<30 {
            var rs: [PackedRecord] = []
            for k in 0..<Int(rng.next() % 12) {
                mono += k % 3 == 0 ? 1 + rng.next() % (1 << 40) : 1
                guard mono < RecordBlock.bound else { break }
                let time = CaptureTime(wallNs: walls[Int(rng.next() % 6)], bootNs: Int64(bitPattern: rng.next()),
                                       flags: TimeFlags(rawValue: UInt16(truncatingIfNeeded: rng.next())),
                                       maxErrorUs: rng.next() % 2 == 0 ? .max : UInt32(truncatingIfNeeded: rng.next()),
                                       estErrorUs: UInt32(truncatingIfNeeded: rng.next()), lastSyncNs: walls[Int(rng.next() % 6)])
                let payload = (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                rs.append(PackedRecord(rawType: UInt16(truncatingIfNeeded: rng.next() % 3 == 0 ? rng.next() : 1),
                                       source: "src_\(rng.next() % 300)", seq: rng.next() % RecordBlock.bound, mono: mono, time: time,
                                       bootSeq: UInt16(truncatingIfNeeded: rng.next()), payload: payload))
            }
            try file.add(rs, deflate: f % 2 == 0)
        }
        try compare(file, name: "extremes")
    }
}
