// Validation of a segment image read from a ring slot (docs/FORMAT.md section 3.4), and the
// records inside it. Everything here treats the bytes as hostile: any field may be garbage.

import EdgelogCore

/// One record as stored, pointing into the segment image it was read from.
public struct RecordView {
    public let bytes: UnsafeRawBufferPointer
    public let rawType: UInt16
    public let seq: UInt64
    public let mono: UInt64
    public let time: CaptureTime
    public let bootSeq: UInt16
    public let source: UnsafeRawBufferPointer
    public let payload: UnsafeRawBufferPointer

    public var type: RecordType? { RecordType(rawValue: rawType) }
    public var sourceName: String { String(decoding: source, as: UTF8.self) }
}

/// The fields of a valid segment header and marker.
public struct SegmentInfo: Equatable, Sendable {
    public var segmentID: UInt64
    public var commitID: UInt64
    public var slot: Int
    public var wrapCount: UInt32
    public var recordCount: Int
    public var payloadLength: Int
    public var firstMono: UInt64
    public var lastMono: UInt64
    public var lostRecords: UInt32
    public var droppedRecords: UInt32
    /// CRC of header and records, as in the commit marker.
    public var bodyCRC: UInt32 = 0
    /// body_crc of the segment written before this one (0 for the first).
    public var prevCRC: UInt32 = 0
    /// segment_hash of the segment written before this one (zero for the first).
    public var prevHash: [UInt8] = SegmentHash.zero
    /// The seal of the commit marker (set by validate).
    public var seal: SealView?
}

/// Why a slot does not hold the expected segment.
public enum SegmentProblem: Error, Equatable, CustomStringConvertible, Sendable {
    /// All zero: never written.
    case blank
    /// Not a segment header at all (garbage, or torn before the first sector landed).
    case noHeader(String)
    /// A valid header of another store or an older lap of the ring: the slot is simply not the next one.
    case stale(segmentID: UInt64)
    /// A valid header for the expected segment, but the body or marker do not check: a torn write.
    case torn(String)
    /// Header, records and marker check, but the seal is malformed or disagrees with the header:
    /// not something a power cut produces.
    case badSeal(String)

    public var description: String {
        switch self {
        case .blank: "blank slot"
        case .noHeader(let why): "no valid segment header (\(why))"
        case .stale(let id): "holds older segment \(id)"
        case .torn(let why): "torn segment: \(why)"
        case .badSeal(let why): "bad seal: \(why)"
        }
    }
}

public enum SegmentReader {
    /// Checks the header only; returns its fields if the header is intact and belongs to this store.
    public static func header(_ b: UnsafeRawBufferPointer, geometry: Geometry, storeUUID: [UInt8]) throws(SegmentProblem) -> SegmentInfo {
        guard b.count >= Layout.segmentHeaderSize else { throw .noHeader("short read") }
        if b.le(0, as: UInt64.self) != Layout.segmentMagic {
            throw b.prefix(Layout.segmentHeaderSize).allSatisfy({ $0 == 0 }) ? .blank : .noHeader("bad magic")
        }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<124])) == b.le(124, as: UInt32.self) else {
            throw .noHeader("header CRC mismatch")
        }
        guard b.le(8, as: UInt16.self) == Layout.formatVersion, b.le(10, as: UInt16.self) == UInt16(Layout.segmentHeaderSize) else {
            throw .noHeader("unknown header version")
        }
        guard b[16..<32].elementsEqual(storeUUID) else { throw .noHeader("belongs to another store") }
        let info = SegmentInfo(
            segmentID: b.le(32), commitID: b.le(40), slot: Int(b.le(48, as: UInt32.self)), wrapCount: b.le(52),
            recordCount: Int(b.le(56, as: UInt32.self)), payloadLength: Int(b.le(60, as: UInt32.self)),
            firstMono: b.le(64), lastMono: b.le(72), lostRecords: b.le(112), droppedRecords: b.le(116),
            prevCRC: b.le(120), prevHash: Array(b[80..<112]))
        return info
    }

    /// Full validation of the segment in `slot` against the segment id expected there.
    /// `sealRequired: false` checks everything but the seal, leaving `seal` nil when it is malformed
    /// (the verifier ranks a broken structure before a broken seal, FORMAT.md 9).
    public static func validate(_ b: UnsafeRawBufferPointer, slot: Int, expectedID: UInt64, geometry: Geometry,
                                storeUUID: [UInt8], sealRequired: Bool = true) throws(SegmentProblem) -> SegmentInfo {
        var info = try header(b, geometry: geometry, storeUUID: storeUUID)
        guard info.segmentID == expectedID else {
            if info.segmentID < expectedID { throw .stale(segmentID: info.segmentID) }
            throw .noHeader("segment id \(info.segmentID) is ahead of the expected \(expectedID)")
        }
        guard info.slot == slot else { throw .noHeader("header names slot \(info.slot)") }
        // One segment per commit (FORMAT.md 3.4).
        guard info.commitID == info.segmentID else { throw .torn("commit_id \(info.commitID) is not segment_id \(info.segmentID)") }
        guard info.payloadLength <= geometry.payloadCapacity, b.count >= geometry.writeLength(payloadLength: info.payloadLength) else {
            throw .torn("payload length \(info.payloadLength) exceeds the segment")
        }
        let m = Layout.segmentHeaderSize + info.payloadLength
        guard b.le(m, as: UInt64.self) == Layout.markerMagic else { throw .torn("commit marker missing") }
        let crcAt = Layout.markerCRCOffset
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[m..<(m + crcAt)])) == b.le(m + crcAt, as: UInt32.self) else {
            throw .torn("commit marker CRC mismatch")
        }
        guard b.le(m + 8, as: UInt64.self) == info.segmentID, b.le(m + 16, as: UInt64.self) == info.commitID,
              Int(b.le(m + 24, as: UInt32.self)) == info.recordCount, Int(b.le(m + 28, as: UInt32.self)) == info.payloadLength
        else { throw .torn("commit marker disagrees with the header") }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<m])) == b.le(m + 32, as: UInt32.self) else {
            throw .torn("body CRC mismatch")
        }
        info.bodyCRC = b.le(m + 32)
        info.seal = sealRequired ? try seal(b, markerAt: m, info: info) : try? seal(b, markerAt: m, info: info)
        var count = 0
        var previousMono: UInt64 = 0
        var offset = Layout.segmentHeaderSize
        while offset < m {
            let record: RecordView
            do { record = try parseRecord(b, at: offset, end: m) } catch { throw .torn("record \(count + 1): \(error)") }
            // Below 2^62 (FORMAT.md 3.4): no writer continuing from them can overflow.
            guard record.mono < Layout.idLimit, record.seq < Layout.idLimit else { throw .torn("record \(count + 1): mono_ctr or seq is 2^62 or more") }
            if count == 0 {
                guard record.mono == info.firstMono else { throw .torn("first mono_ctr disagrees with the header") }
            } else {
                guard record.mono > previousMono else { throw .torn("mono_ctr not increasing at record \(count + 1)") }
            }
            previousMono = record.mono
            count += 1
            offset += record.bytes.count
        }
        guard count == info.recordCount, count == 0 || previousMono == info.lastMono else {
            throw .torn("record count or last mono_ctr disagrees with the header")
        }
        return info
    }

    /// The seal of a segment whose marker checks, if it is well formed and repeats the header (3.4).
    public static func seal(_ b: UnsafeRawBufferPointer, markerAt m: Int, info: SegmentInfo) throws(SegmentProblem) -> SealView {
        let sealLength = Int(b.le(m + 36, as: UInt32.self))
        guard let statement = Statement.decode(b, at: m + Statement.markerOffset) else { throw .badSeal("no statement") }
        let signatureLength = Int(statement.sigLen)
        guard let algorithm = statement.algorithm else { throw .badSeal("unknown sig_alg \(statement.sigAlg)") }
        guard signatureLength == algorithm.signatureLength else {
            throw .badSeal("sig_len \(signatureLength) is not the \(algorithm.signatureLength) bytes of \(algorithm.name)")
        }
        guard sealLength == Statement.size + signatureLength else {
            throw .badSeal("seal length \(sealLength) does not match signature length \(signatureLength)")
        }
        guard statement.segmentID == info.segmentID, statement.commitID == info.commitID,
              statement.firstMono == info.firstMono, statement.lastMono == info.lastMono,
              Int(statement.recordCount) == info.recordCount, statement.prevHash == info.prevHash,
              b[16..<32].elementsEqual(statement.sealed.storeUUID)
        else { throw .badSeal("statement disagrees with the header") }
        let sealAt = m + Statement.markerOffset
        return SealView(statement: statement,
                        statementBytes: Array(b[sealAt..<(sealAt + Statement.size)]),
                        signature: Array(b[(sealAt + Statement.size)..<(sealAt + Statement.size + signatureLength)]))
    }

    /// SHA-256 of the header and records of a validated segment.
    public static func computedHash(_ b: UnsafeRawBufferPointer, info: SegmentInfo) -> [UInt8] {
        SegmentHash.of(UnsafeRawBufferPointer(rebasing: b[0..<(Layout.segmentHeaderSize + info.payloadLength)]))
    }

    public struct RecordProblem: Error, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "\(reason) at segment byte \(offset)" }
    }

    /// Parses and checks one record at `offset`, which must end by `end`.
    public static func parseRecord(_ b: UnsafeRawBufferPointer, at offset: Int, end: Int) throws(RecordProblem) -> RecordView {
        guard end - offset >= Layout.recordFixedSize + 1 else { throw RecordProblem(offset: offset, reason: "truncated record") }
        let length = Int(b.le(offset, as: UInt32.self))
        guard length >= Layout.recordFixedSize + 1, length <= end - offset else {
            throw RecordProblem(offset: offset, reason: "record length \(length) out of bounds")
        }
        let crcAt = offset + length - 8
        guard b.le(crcAt + 4, as: UInt32.self) == Layout.recordEndMagic else { throw RecordProblem(offset: offset, reason: "end marker missing") }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[offset..<crcAt])) == b.le(crcAt, as: UInt32.self) else {
            throw RecordProblem(offset: offset, reason: "record CRC mismatch")
        }
        let sourceLength = Int(b.le(offset + 40, as: UInt16.self))
        guard sourceLength >= 1, sourceLength <= SourceName.maxLength, Layout.recordFixedSize + sourceLength <= length else {
            throw RecordProblem(offset: offset, reason: "bad source length \(sourceLength)")
        }
        let sourceStart = offset + Layout.recordHeadSize
        let source = UnsafeRawBufferPointer(rebasing: b[sourceStart..<(sourceStart + sourceLength)])
        guard SourceName.isValid(source) else { throw RecordProblem(offset: offset, reason: "bad source name") }
        return RecordView(
            bytes: UnsafeRawBufferPointer(rebasing: b[offset..<(offset + length)]),
            rawType: b.le(offset + 4), seq: b.le(offset + 8), mono: b.le(offset + 16),
            time: CaptureTime(wallNs: b.le(offset + 24), bootNs: b.le(offset + 32), flags: TimeFlags(rawValue: b.le(offset + 6)),
                              maxErrorUs: b.le(offset + 44), estErrorUs: b.le(offset + 48), lastSyncNs: b.le(offset + 52)),
            bootSeq: b.le(offset + 42),
            source: source,
            payload: UnsafeRawBufferPointer(rebasing: b[(sourceStart + sourceLength)..<crcAt]))
    }

    /// Calls `body` for each record of a segment already validated.
    public static func forEachRecord(_ b: UnsafeRawBufferPointer, info: SegmentInfo, _ body: (RecordView) throws -> Void) rethrows {
        var offset = Layout.segmentHeaderSize
        let end = offset + info.payloadLength
        while offset < end {
            guard let record = try? parseRecord(b, at: offset, end: end) else { return }
            try body(record)
            offset += record.bytes.count
        }
    }

    /// How many records of a torn segment check one by one from the start (none are kept: FORMAT.md
    /// section 4), and the payload bytes it declares (all of them quarantined).
    public static func readableRecords(_ b: UnsafeRawBufferPointer, info: SegmentInfo, geometry: Geometry) -> (count: Int, declaredBytes: Int) {
        let declared = min(info.payloadLength, geometry.payloadCapacity)
        let end = min(Layout.segmentHeaderSize + declared, b.count)
        var count = 0
        var offset = Layout.segmentHeaderSize
        while offset < end, let record = try? parseRecord(b, at: offset, end: end) {
            count += 1
            offset += record.bytes.count
        }
        return (count, declared)
    }
}
