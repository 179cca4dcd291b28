// The decoders of untrusted bytes, as fuzz targets: an ingest line, a metadata slot, a segment with
// its records, a whole store image through recovery's analysis, export and repair, and a signed
// store whose metadata fields are set to chosen values (not only random bytes) run through every
// read command's code path and the writer's. Each must
// return or throw a typed error for any input; a crash, a hang or a sanitizer report is a bug.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogRuntime
import EdgelogTestKit

enum FuzzTarget: String, CaseIterable {
    case json, metadata, segment, image, head, verify, fields, devices, board, status, frames, packed, packedstore

    /// The key the seed stores are signed with, trusted by the verify target.
    static let seedKey = PrivateSigningKey.hmacSHA256(Array(repeating: 0x5A, count: 32))

    func run(_ data: UnsafeRawBufferPointer) {
        switch self {
        case .json:
            _ = try? JSONObjectValidator.validate(data)
        case .metadata:
            guard data.count >= Layout.metadataSlotSize else { return }
            _ = try? Metadata.decode(data)
        case .segment:
            FuzzTarget.segment(data)
        case .image:
            FuzzTarget.image(data)
        case .head:
            // The signed head / anchor file parser (and the flat JSON reader under it).
            if let head = try? SignedHead.parse(Array(data)) { _ = head.verifies(with: [FuzzTarget.seedKey.trusted]) }
            // The format 6 head (version 3) from the same bytes.
            if let head = try? FrameHead.parse(Array(data)) {
                if head.fileBytes != Array(data) { FuzzReport.fail("a version 3 head parsed from bytes it does not print") }
                _ = head.verifies(with: [(FuzzTarget.seedKey.trusted, 1)])
            }
        case .verify:
            FuzzTarget.verify(data)
        case .fields:
            FieldFuzz.run(data)
        case .devices:
            DeviceFuzz.run(data)
        case .board:
            BoardFuzz.run(data)
        case .status:
            FuzzTarget.status(data)
        case .frames:
            FuzzTarget.frames(data)
        case .packed:
            FuzzTarget.packed(data)
        case .packedstore:
            FuzzTarget.packedStore(data)
        }
    }

    /// A whole format 6 image (FORMAT.md A.8, A.9): the metadata slots, the choice, the forward scan,
    /// the committed history, then a writer session on a copy (recovery, one commit, close) and the
    /// analysis again. Typed errors only; a writer that opened must leave a store that still opens.
    static func packedStore(_ data: UnsafeRawBufferPointer) {
        // The input is the image's head (metadata and the first slots); the rest of 4 slots of 8 KiB is zero.
        let size = PackedGeometry.ringOffset + 4 * 8192
        guard data.count <= size else { return }
        var bytes = [UInt8](data)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: size - data.count))
        let device = MemoryBlockDevice(image: bytes, sectorSize: 512)
        // The verifier and inspect read any image without writing or trapping.
        let report = PackedVerifier.verify(device: device, options: VerifyOptions(trusted: [seedKey.trusted], anchor: Array(bytes.suffix(512))))
        _ = report.reasons
        _ = try? PackedInspection.read(device: device)
        if device.writes != 0 { FuzzReport.fail("the format 6 verifier or inspect wrote to the device") }
        guard let history = try? PackedHistory.analyze(device: device) else { return }
        _ = history.frames(device: device)
        // The evidence store's open (recovery records, a session) on another copy.
        let evidenceCopy = MemoryBlockDevice(image: bytes, sectorSize: 512)
        if let store = try? PackedEvidenceStore.open(device: evidenceCopy, policy: .overwriteOldest, clock: { CaptureTime(wallNs: 1, bootNs: 1) }) {
            _ = try? store.close()
            if (try? PackedHistory.analyze(device: evidenceCopy)) == nil { FuzzReport.fail("a store the evidence store opened and closed no longer opens") }
        }
        let copy = MemoryBlockDevice(image: bytes, sectorSize: 512)
        guard let log = try? PackedLog(device: copy, identity: PackedLog.PackedIdentity(deviceID: Array(repeating: 1, count: 16)), clock: { 0 }) else { return }
        var workload = SensorWorkload(sources: 2, seed: 1, firstMono: history.state.monoHWM &+ 1)
        if history.state.monoHWM < RecordBlock.bound - 100 { _ = try? log.append(workload.nextSecond()) }
        _ = try? log.close()
        if (try? PackedHistory.analyze(device: copy)) == nil { FuzzReport.fail("a store the writer opened and closed no longer opens") }
    }

    /// A format 6 slot (FORMAT.md A.5 to A.7) walked frame by frame: the header, each frame's CRC,
    /// state list, inflate and records, the rebuilt statement. What the walk returns must be
    /// consistent: frames at increasing sector offsets inside the slot, ids counting up.
    static func packed(_ data: UnsafeRawBufferPointer) {
        let size = (data.count + 511) / 512 * 512
        guard size >= 512, size <= 1 << 20 else { return }
        var bytes = [UInt8](data)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: size - data.count))
        guard let walk = try? bytes.withUnsafeBytes({ try PackedSegmentReader.walk($0, sectorSize: 512) }) else { return }
        var next = walk.headerLength
        for (i, f) in walk.frames.enumerated() {
            if f.offset != next || f.offset % 512 != 0 || f.offset + f.frameLength > size { FuzzReport.fail("frame \(i) at \(f.offset), expected \(next)") }
            if f.frameID != walk.header.firstFrameID &+ UInt64(i) { FuzzReport.fail("frame id out of order") }
            if f.records.count != f.recordCount || f.statement.count != FrameStatement.size { FuzzReport.fail("frame \(i) inconsistent") }
            next = f.offset + (f.frameLength + 511) / 512 * 512
        }
    }

    /// Format 6 frames (FORMAT.md appendix A): per frame u8 encoding, u16 record_count, u16 block_len,
    /// u16 stored_len (little-endian) and the stored bytes, all frames of one segment. Each frame is
    /// inflated and decoded as a reader would; what decodes must encode again to a block that decodes
    /// to the same records.
    static func frames(_ data: UnsafeRawBufferPointer) {
        var at = 0
        var ctx = RecordBlockContext()
        var previous: [UInt8] = []
        var reencoded = RecordBlockContext()
        while at + 7 <= data.count {
            let encoding = data[at]
            let count = Int(data.le(at + 1, as: UInt16.self))
            let blockLength = Int(data.le(at + 3, as: UInt16.self))
            let storedLength = Int(data.le(at + 5, as: UInt16.self))
            at += 7
            guard storedLength <= data.count - at else { return }
            let stored = UnsafeRawBufferPointer(rebasing: data[at..<(at + storedLength)])
            at += storedLength
            let block: [UInt8]
            switch encoding {
            case 0:
                guard storedLength == blockLength else { return }
                block = Array(stored)
            case 1:
                guard let b = try? Deflate.inflate(stored, dictionary: previous, length: blockLength) else { return }
                if b.count != blockLength { FuzzReport.fail("inflate gave \(b.count) bytes for \(blockLength)") }
                block = b
            default:
                return
            }
            var records: [PackedRecord] = []
            let decoded: Void? = block.withUnsafeBytes { b in try? RecordBlock.decode(b, count: count, context: &ctx) { records.append($0) } }
            guard decoded != nil else { return }
            previous = block
            let before = reencoded
            var again: [UInt8] = []
            for r in records {
                do { try RecordBlock.append(r, to: &again, context: &reencoded) } catch { FuzzReport.fail("a decoded record does not encode: \(error)") }
            }
            var back: [PackedRecord] = []
            var c = before
            let ok: Void? = again.withUnsafeBytes { b in try? RecordBlock.decode(b, count: records.count, context: &c) { back.append($0) } }
            if ok == nil || back != records { FuzzReport.fail("decoded records do not survive encoding again") }
        }
    }

    /// An answer on the status socket (`edgelog status`): decoded, checked, and shown as text and as
    /// JSON, which must not carry a control character to the terminal.
    static func status(_ data: UnsafeRawBufferPointer) {
        guard let snapshot = try? StatusJSON.decode(Array(data)) else { return }
        let text = StatusText.render(snapshot, stateDir: "/var/lib/edgelog")
        if text.utf8.contains(where: { $0 == 0x1B || $0 == 0x07 || $0 == 0x9B }) { FuzzReport.fail("status text carries a control character") }
        _ = StatusJSON.encode(snapshot)
    }

    /// A whole image through the verifier, with the first kilobyte of the input also offered as an anchor.
    static func verify(_ data: UnsafeRawBufferPointer) {
        let size = (data.count + 511) / 512 * 512
        guard size >= Int(Layout.ringOffset) + Layout.minRingSlots * Layout.minSegmentSize, size <= 4 << 20 else { return }
        var bytes = [UInt8](data)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: size - data.count))
        let device = MemoryBlockDevice(image: bytes, sectorSize: 512)
        let report = Verifier.verify(device: device, options: VerifyOptions(trusted: [seedKey.trusted], anchor: Array(bytes.suffix(1024))))
        if device.writes != 0 { FuzzReport.fail("the verifier wrote to the device") }
        _ = report.reasons
    }

    /// A segment image in slot 0 of a small store; the first 8 bytes pick the expected id.
    static func segment(_ data: UnsafeRawBufferPointer) {
        guard data.count > 8 else { return }
        guard let geometry = try? Geometry.make(storeSize: 8192 + 4 * 4096, sectorSize: 512, segmentSize: 4096) else { return }
        let buffer = AlignedBuffer(count: geometry.segmentSize)
        let body = UnsafeRawBufferPointer(rebasing: data[8...])
        buffer.bytes.setBytes(UnsafeRawBufferPointer(rebasing: body.prefix(geometry.segmentSize)), at: 0)
        let image = UnsafeRawBufferPointer(buffer.bytes)
        let uuid = Array(image[16..<32])
        let expected = data.le(0, as: UInt64.self)
        if let info = try? SegmentReader.validate(image, slot: 0, expectedID: expected, geometry: geometry, storeUUID: uuid) {
            SegmentReader.forEachRecord(image, info: info) { record in
                _ = record.sourceName
                _ = record.payload.count
            }
        }
        if let info = try? SegmentReader.header(image, geometry: geometry, storeUUID: uuid) {
            _ = SegmentReader.readableRecords(image, info: info, geometry: geometry)
        }
        var offset = Layout.segmentHeaderSize
        while offset < image.count, let record = try? SegmentReader.parseRecord(image, at: offset, end: image.count) {
            offset += record.bytes.count
        }
    }

    /// A whole store image: analysis, export, recovery and a second recovery that must write nothing.
    static func image(_ data: UnsafeRawBufferPointer) {
        let size = (data.count + 511) / 512 * 512
        guard size >= Int(Layout.ringOffset) + Layout.minRingSlots * Layout.minSegmentSize, size <= 4 << 20 else { return }
        var bytes = [UInt8](data)
        bytes.append(contentsOf: [UInt8](repeating: 0, count: size - data.count))
        let device = MemoryBlockDevice(image: bytes, sectorSize: 512)
        guard let analysis = try? EvidenceStore.analyze(device: device) else { return }
        var out: [UInt8] = []
        StoreReader.forEachRecord(device: device, analysis: analysis) { info, record in
            ExportFormat.jsonl.append(info, record, to: &out)
        }
        guard (try? EvidenceStore.recover(device: device, policy: .overwriteOldest, clock: CrashOracle.fixedClock)) != nil else { return }
        let once = device.bytes
        let again = MemoryBlockDevice(image: once, sectorSize: 512)
        let second = try? EvidenceStore.recover(device: again, policy: .overwriteOldest, clock: CrashOracle.fixedClock)
        // Recovery of a recovered store writes nothing (idempotence holds for any input).
        if again.writes != 0 {
            let why = second.map { a in
                "unclean=\(a.1.uncleanShutdown) adopted=\(a.1.adopted.map(\.segmentID)) torn=\(String(describing: a.1.torn?.segmentID)) "
                    + "passedOver=\(a.1.passedOver) headMissing=\(a.1.headMissing) tailLost=\(a.1.tailLost) "
                    + "chosen=\(a.1.chosenSlot)@\(a.1.chosenGeneration) stop=\(a.1.scanStop)"
            } ?? "second recovery threw"
            FuzzReport.fail("second recovery wrote \(again.writes) times: \(why)")
        }
    }
}

enum FuzzReport {
    static func fail(_ message: String) -> Never {
        FuzzOutput.line("FUZZ FAILURE: " + message)
        abortProcess()
    }
}
