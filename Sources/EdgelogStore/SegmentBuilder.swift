// A segment image built in place in an aligned buffer: records are encoded straight into the bytes
// that will be written, so the commit path copies nothing and allocates nothing per record.

import EdgelogCore

/// Records of one source the producer had to drop (both buffers full past the wait bound).
public struct DropNote: Equatable, Sendable {
    public var source: String
    public var firstSeq: UInt64
    public var lastSeq: UInt64
    public var count: UInt64

    public init(source: String, firstSeq: UInt64, lastSeq: UInt64, count: UInt64) {
        self.source = source
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.count = count
    }
}

public final class SegmentBuilder: @unchecked Sendable {
    public let geometry: Geometry
    public let buffer: AlignedBuffer
    /// Bytes kept free for the engine's evidence records (gap, drop), so they always fit.
    public let evidenceReserve: Int

    public private(set) var payloadLength = 0
    public private(set) var recordCount = 0
    public private(set) var dataRecordCount = 0
    public private(set) var firstMono: UInt64 = 0
    public private(set) var lastMono: UInt64 = 0
    public private(set) var lostRecords: UInt32 = 0
    public private(set) var droppedRecords: UInt32 = 0
    /// body_crc of the last sealed image.
    public private(set) var bodyCRC: UInt32 = 0
    /// segment_hash of the last sealed image.
    public private(set) var segmentHash = SegmentHash.zero
    /// The store's boot_seq (mod 65536) written into every record this builder encodes.
    public var bootSeq: UInt16 = 0
    /// The writer's time bookkeeping at hand-off; the commit folds it into the metadata.
    public var timeStats: TimeStats?
    /// Mono values reserved for evidence records the commit adds (see Sequencer.reserveEvidence).
    public var evidenceMono: UInt64 = 0
    public var evidenceMonoLimit: UInt64 = 0
    /// Drops noted by the producer, written as drop records by the commit of this buffer.
    public var pendingDrops: [DropNote] = []
    /// Engine evidence the commit of this buffer writes after its records (a resume, a budget).
    public var pendingEvidence: [(type: RecordType, json: EvidenceJSON)] = []
    /// Engine evidence that must be the segment's last record (the window's brownout record): it is
    /// written after every other record, gap records of a reclaimed tail included.
    public var closingEvidence: (type: RecordType, json: EvidenceJSON)?
    /// Payload bytes data records may fill before the buffer counts as full: below the capacity
    /// when the hold-up budget cannot cover writing a whole segment (docs/DESIGN.md, power fail).
    /// A record alone in an empty buffer is always taken if it fits the capacity.
    public var fillLimit = Int.max
    /// The tail segment whose loss this segment already records (a retried commit must not repeat it).
    public var notedLostSegment: UInt64 = 0
    /// Highest seq per source in this segment, in first-seen order (few sources per segment).
    public private(set) var sourceLastSeq: [(name: String, first: UInt64, last: UInt64, count: Int)] = []

    public init(geometry: Geometry, evidenceReserve: Int = 512) {
        self.geometry = geometry
        self.buffer = AlignedBuffer(count: geometry.segmentSize)
        self.evidenceReserve = min(evidenceReserve, geometry.payloadCapacity / 2)
    }

    public var isEmpty: Bool { recordCount == 0 }
    public var dataCapacity: Int { geometry.payloadCapacity - evidenceReserve }
    /// Where data records stop: the capacity, or the fill limit when that is lower.
    public var dataLimit: Int { min(dataCapacity, fillLimit) }

    public static func encodedLength(sourceLength: Int, payloadLength: Int) -> Int {
        Layout.recordFixedSize + sourceLength + payloadLength
    }

    /// True when a record of these sizes still fits (data records leave the evidence reserve free).
    public func fits(sourceLength: Int, payloadLength: Int, evidence: Bool = false) -> Bool {
        let limit = evidence ? geometry.payloadCapacity : (recordCount == 0 ? dataCapacity : dataLimit)
        return self.payloadLength + Self.encodedLength(sourceLength: sourceLength, payloadLength: payloadLength) <= limit
    }

    /// Encodes one record. The caller has checked `fits`; mono must exceed every earlier one.
    /// Returns false (and writes nothing) if it does not fit after all.
    @discardableResult
    public func append(type: RecordType, rawType: UInt16? = nil, source: UnsafeRawBufferPointer, seq: UInt64, mono: UInt64,
                       time: CaptureTime, payload: UnsafeRawBufferPointer, evidence: Bool = false) -> Bool {
        let length = Self.encodedLength(sourceLength: source.count, payloadLength: payload.count)
        let limit = evidence ? geometry.payloadCapacity : dataCapacity
        guard payloadLength + length <= limit, source.count >= 1, source.count <= SourceName.maxLength else { return false }
        let o = Layout.segmentHeaderSize + payloadLength
        let b = buffer.bytes
        b.setLE(UInt32(length), at: o)
        b.setLE(rawType ?? type.rawValue, at: o + 4)
        b.setLE(time.flags.rawValue, at: o + 6)
        b.setLE(seq, at: o + 8)
        b.setLE(mono, at: o + 16)
        b.setLE(time.wallNs, at: o + 24)
        b.setLE(time.bootNs, at: o + 32)
        b.setLE(UInt16(source.count), at: o + 40)
        b.setLE(bootSeq, at: o + 42)
        b.setLE(time.maxErrorUs, at: o + 44)
        b.setLE(time.estErrorUs, at: o + 48)
        b.setLE(time.lastSyncNs, at: o + 52)
        b.setBytes(source, at: o + Layout.recordHeadSize)
        b.setBytes(payload, at: o + Layout.recordHeadSize + source.count)
        let crcAt = o + length - 8
        b.setLE(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[o..<crcAt])), at: crcAt)
        b.setLE(Layout.recordEndMagic, at: crcAt + 4)

        if recordCount == 0 {
            firstMono = mono
        }
        lastMono = mono
        recordCount += 1
        payloadLength += length
        if type == .data && rawType == nil { dataRecordCount += 1 }
        noteSeq(source: source, seq: seq)
        return true
    }

    /// Convenience for engine-written records whose source and payload are Swift strings/arrays.
    @discardableResult
    public func append(type: RecordType, source: String, seq: UInt64, mono: UInt64, time: CaptureTime,
                       payload: [UInt8], evidence: Bool) -> Bool {
        var source = source
        return source.withUTF8 { s in
            payload.withUnsafeBytes { p in
                append(type: type, source: UnsafeRawBufferPointer(s), seq: seq, mono: mono, time: time, payload: p, evidence: evidence)
            }
        }
    }

    public func addLost(_ n: UInt32) { lostRecords &+= n }
    public func addDropped(_ n: UInt32) { droppedRecords &+= n }

    private func noteSeq(source: UnsafeRawBufferPointer, seq: UInt64) {
        // Most records come from the source of the record before: compare raw bytes with it first.
        if recentIndex < sourceLastSeq.count, recentName.count == source.count,
           recentName.withUnsafeBytes({ $0.elementsEqual(source) }) {
            sourceLastSeq[recentIndex].last = seq
            sourceLastSeq[recentIndex].count += 1
            return
        }
        let name = String(decoding: source, as: UTF8.self)
        if let i = sourceLastSeq.firstIndex(where: { $0.name == name }) {
            sourceLastSeq[i].last = seq
            sourceLastSeq[i].count += 1
            recentIndex = i
        } else {
            sourceLastSeq.append((name, seq, seq, 1))
            recentIndex = sourceLastSeq.count - 1
        }
        recentName = Array(source)
    }

    private var recentIndex = Int.max
    private var recentName: [UInt8] = []

    /// Writes the header and the commit marker with its seal; returns the bytes to write (sector padded).
    public func seal(segmentID: UInt64, commitID: UInt64, slot: Int, wrapCount: UInt32, storeUUID: [UInt8],
                     prevCRC: UInt32, prevHash: [UInt8], rollbackCtr: UInt64, sealed: SealedState,
                     identity: SealIdentity) throws(SigningError) -> UnsafeRawBufferPointer {
        let b = buffer.bytes
        b.zero(0..<Layout.segmentHeaderSize)
        b.setLE(Layout.segmentMagic, at: 0)
        b.setLE(Layout.formatVersion, at: 8)
        b.setLE(UInt16(Layout.segmentHeaderSize), at: 10)
        storeUUID.withUnsafeBytes { b.setBytes($0, at: 16) }
        b.setLE(segmentID, at: 32)
        b.setLE(commitID, at: 40)
        b.setLE(UInt32(slot), at: 48)
        b.setLE(wrapCount, at: 52)
        b.setLE(UInt32(recordCount), at: 56)
        b.setLE(UInt32(payloadLength), at: 60)
        b.setLE(firstMono, at: 64)
        b.setLE(lastMono, at: 72)
        prevHash.withUnsafeBytes { b.setBytes(UnsafeRawBufferPointer(rebasing: $0.prefix(32)), at: 80) }
        b.setLE(lostRecords, at: 112)
        b.setLE(droppedRecords, at: 116)
        b.setLE(prevCRC, at: 120)
        b.setLE(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<124])), at: 124)

        let m = Layout.segmentHeaderSize + payloadLength
        let writeLength = geometry.writeLength(payloadLength: payloadLength)
        b.zero(m..<writeLength)
        b.setLE(Layout.markerMagic, at: m)
        b.setLE(segmentID, at: m + 8)
        b.setLE(commitID, at: m + 16)
        b.setLE(UInt32(recordCount), at: m + 24)
        b.setLE(UInt32(payloadLength), at: m + 28)
        let body = UnsafeRawBufferPointer(rebasing: b[0..<m])
        bodyCRC = CRC32C.checksum(body)
        b.setLE(bodyCRC, at: m + 32)
        segmentHash = SegmentHash.of(body)

        var statement = Statement()
        statement.deviceID = identity.deviceID
        statement.segmentID = segmentID
        statement.commitID = commitID
        statement.firstMono = firstMono
        statement.lastMono = lastMono
        statement.recordCount = UInt32(recordCount)
        statement.rollbackCtr = rollbackCtr
        statement.fwVerHash = identity.fwVerHash
        statement.prevHash = prevHash
        statement.segmentHash = segmentHash
        statement.sealed = sealed
        statement.sealed.storeUUID = storeUUID
        if let signer = identity.signer {
            statement.keyEpoch = signer.keyEpoch
            statement.keyID = signer.keyID
            statement.sigAlg = signer.algorithm.rawValue
            statement.keySrc = signer.keySource.rawValue
            statement.sigLen = UInt16(signer.algorithm.signatureLength)
        }
        let sealAt = m + Statement.markerOffset
        statement.encode(into: b, at: sealAt)
        if let signer = identity.signer {
            let signature = try signer.sign(UnsafeRawBufferPointer(rebasing: b[sealAt..<(sealAt + Statement.size)]))
            guard signature.count == signer.algorithm.signatureLength else {
                throw SigningError("the signer returned \(signature.count) bytes for \(signer.algorithm.name)")
            }
            signature.withUnsafeBytes { b.setBytes($0, at: sealAt + Statement.size) }
        }
        b.setLE(UInt32(Statement.size) + UInt32(statement.sigLen), at: m + 36)
        b.setLE(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[m..<(m + Layout.markerCRCOffset)])), at: m + Layout.markerCRCOffset)
        return buffer.readOnly(0..<writeLength)
    }

    /// Empties the builder for reuse.
    public func reset() {
        payloadLength = 0
        recordCount = 0
        dataRecordCount = 0
        firstMono = 0
        lastMono = 0
        lostRecords = 0
        droppedRecords = 0
        evidenceMono = 0
        evidenceMonoLimit = 0
        pendingDrops.removeAll(keepingCapacity: true)
        pendingEvidence.removeAll()
        closingEvidence = nil
        notedLostSegment = 0
        timeStats = nil
        sourceLastSeq.removeAll(keepingCapacity: true)
        recentIndex = Int.max
    }
}
