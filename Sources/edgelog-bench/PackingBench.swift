// Section 7: format 6's record block and deflate (docs/FORMAT.md appendix A), the codec alone: how
// many bytes a record takes before the frame header, seal, sector rounding and metadata, against
// format 5's record encoding, and what encoding and decoding cost per record. These are not
// partition bytes: section 8 (PackedStoreBench.swift) measures those on the store.

import EdgelogSeal
import EdgelogStore
import EdgelogTestKit

enum PackingBench {
    struct Result {
        var name: String
        var records = 0
        var frames = 0
        var format5Bytes = 0
        var blockBytes = 0
        var deflateAloneBytes = 0
        var deflateDictBytes = 0
        var deflateDict6Bytes = 0
        /// Slot bytes the same records take as format 6 segments of 1 MiB on 512-byte sectors, each
        /// frame Ed25519-signed (headers, frames, sector padding; not the metadata or the slot left
        /// unused when a segment closes).
        var segmentBytes = 0
        var segments = 0
        var frameNs = Latencies(capacity: 4096)
        var encodeNs = Latencies(capacity: 4096)
        var decodeNs = Latencies(capacity: 4096)
    }

    /// Format 5's bytes for a record (FORMAT.md 3.2): 60 fixed, the source, the payload, CRC and end.
    static func format5Length(_ r: PackedRecord) -> Int { 60 + r.source.utf8.count + r.payload.count + 8 }

    /// `frameRecords`: records per frame, or 0 to fill each frame to `frameFormat5Bytes` of format 5 records.
    static func run(name: String, seconds: Int, frameRecords: Int, frameFormat5Bytes: Int = 32 * 1024 - 128 - 432) -> Result {
        var w = SensorWorkload(sources: 20, seed: 42)
        var result = Result(name: name)
        var pending: [PackedRecord] = []
        var ctx = RecordBlockContext(), dctx = RecordBlockContext()
        var previous: [UInt8] = [], dprevious: [UInt8] = []
        var pendingBytes = 0
        let signer = FileSigner(key: .ed25519(.init()), epoch: 1)
        func newSegment(_ id: UInt64, firstFrame: UInt64) -> PackedSegmentWriter {
            var h = PackedSegmentHeader()
            h.storeUUID = Array(repeating: 1, count: 16)
            h.segmentID = id
            h.firstFrameID = firstFrame
            h.keyID = signer.keyID
            h.keyEpoch = 1
            h.sigAlg = signer.algorithm
            h.ringSlots = 64
            result.segments += 1
            return PackedSegmentWriter(header: h, sectorSize: 512, segmentSize: 1 << 20)
        }
        var segment = newSegment(1, firstFrame: 1)
        let sign: ([UInt8]) throws -> [UInt8] = { m in try m.withUnsafeBytes { try signer.sign($0) } }
        func flush() {
            guard !pending.isEmpty else { return }
            let t0 = monoNs()
            var block: [UInt8] = []
            block.reserveCapacity(pendingBytes)
            for r in pending {
                do { try RecordBlock.append(r, to: &block, context: &ctx) } catch { die("packing: \(error)") }
            }
            guard let packed = Deflate.compress(block, dictionary: previous) else { die("packing: deflate failed") }
            let t1 = monoNs()
            let stored = packed.count < block.count ? packed : block
            let inflated: [UInt8]
            do {
                inflated = stored.count < block.count
                    ? try stored.withUnsafeBytes { try Deflate.inflate($0, dictionary: dprevious, length: block.count) } : stored
                var n = 0
                try inflated.withUnsafeBytes { try RecordBlock.decode($0, count: pending.count, context: &dctx) { _ in n += 1 } }
            } catch { die("packing: \(error)") }
            let t2 = monoNs()
            result.encodeNs.add((t1 - t0) / UInt64(pending.count))
            result.decodeNs.add((t2 - t1) / UInt64(pending.count))
            result.records += pending.count
            result.frames += 1
            result.format5Bytes += pending.reduce(0) { $0 + format5Length($1) }
            result.blockBytes += block.count
            result.deflateDictBytes += stored.count
            result.deflateAloneBytes += min(block.count, Deflate.compress(block, dictionary: [])?.count ?? block.count)
            result.deflateDict6Bytes += min(block.count, Deflate.compress(block, dictionary: previous, level: 6)?.count ?? block.count)
            let t3 = monoNs()
            do {
                do {
                    result.segmentBytes += try segment.append(pending, sign: sign).bytes.count
                } catch PackedWriteProblem.segmentFull {
                    segment = newSegment(segment.header.segmentID + 1, firstFrame: segment.nextFrameID)
                    result.segmentBytes += try segment.append(pending, sign: sign).bytes.count
                }
            } catch { die("packing: \(error)") }
            result.frameNs.add((monoNs() - t3) / UInt64(pending.count))
            previous = block
            dprevious = inflated
            pending.removeAll(keepingCapacity: true)
            pendingBytes = 0
        }
        for _ in 0..<seconds {
            for r in w.nextSecond() {
                if frameRecords == 0 && pendingBytes + format5Length(r) > frameFormat5Bytes { flush() }
                pending.append(r)
                pendingBytes += format5Length(r)
                if frameRecords > 0 && pending.count == frameRecords { flush() }
            }
        }
        flush()
        return result
    }

    static func lines(_ r: Result) -> [String] {
        let n = Double(max(r.records, 1))
        func per(_ bytes: Int) -> String { fixed(Double(bytes) / n, 1) }
        return [
            "packing_\(r.name): records=\(r.records) frames=\(r.frames) records_per_frame=\(fixed(n / Double(max(r.frames, 1)), 1)) "
                + "format5_record_bytes_per_record=\(per(r.format5Bytes)) block_bytes_per_record=\(per(r.blockBytes)) "
                + "deflate_alone_bytes_per_record=\(per(r.deflateAloneBytes)) deflate_dict_bytes_per_record=\(per(r.deflateDictBytes)) "
                + "deflate_dict_level6_bytes_per_record=\(per(r.deflateDict6Bytes))",
            "packing_\(r.name)_ratios: block_vs_format5=\(fixed(Double(r.blockBytes) / Double(max(r.format5Bytes, 1)), 3)) "
                + "deflate_dict_vs_format5=\(fixed(Double(r.deflateDictBytes) / Double(max(r.format5Bytes, 1)), 3))  # codec only: no frame header, seal, sector rounding or metadata yet",
            "packing_\(r.name)_segments: slot_bytes_per_record=\(per(r.segmentBytes)) segments=\(r.segments) "
                + "format5_slot_bytes_per_record=\(fixed(Double(r.frames * 32 * 1024) / n, 1))  # format 6: 1 MiB segments, Ed25519 frames on 512-byte sectors; format 5: one 32 KiB slot a commit; neither counts metadata writes",
            "packing_\(r.name)_frame_ns_per_record: \(r.frameNs.summaryNs())  # encode, deflate, hash, sign, CRC",
            "packing_\(r.name)_encode_ns_per_record: \(r.encodeNs.summaryNs())",
            "packing_\(r.name)_decode_ns_per_record: \(r.decodeNs.summaryNs())",
        ]
    }
}
