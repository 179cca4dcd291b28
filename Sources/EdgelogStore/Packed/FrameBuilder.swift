// The records of one format 6 commit as they are gathered: what the commit pipeline fills while
// the previous frame is written. It holds records, not bytes: the frame's encoding depends on the
// segment it lands in (A.2's context), which is known only when the frame is prepared.

import EdgelogCore

public final class FrameBuilder: @unchecked Sendable {
    /// Bytes a record can take in a block at most besides its source name and payload (A.3: head,
    /// type, a source's first record storing its name length, seq whole, mono, wall and boot
    /// deltas of 10 bytes each, the five time-quality fields, the payload length).
    public static let recordBound = 1 + 3 + 1 + 10 + 10 + 10 + 10 + 26 + 5

    /// Record bytes (by `encodedLength`) a frame may hold, data and evidence together.
    public let capacity: Int
    /// Bytes kept free for the engine's evidence records (gap, drop, recovery), so they always fit.
    public let evidenceReserve: Int

    public private(set) var records: [PackedRecord] = []
    public private(set) var payloadLength = 0
    public private(set) var dataRecordCount = 0
    public private(set) var droppedRecords: UInt64 = 0
    /// The store's boot_seq (mod 65536) every record of this builder carries.
    public var bootSeq: UInt16 = 0
    /// The writer's time bookkeeping at hand-off; the commit folds it into the metadata.
    public var timeStats: TimeStats?
    /// Mono values reserved for evidence records the commit adds (Sequencer.reserveEvidence).
    public var evidenceMono: UInt64 = 0
    public var evidenceMonoLimit: UInt64 = 0
    /// Drops noted by the producer, written as drop records by the commit of this buffer.
    public var pendingDrops: [DropNote] = []
    /// Engine evidence the commit writes after the records (a resume, a budget).
    public var pendingEvidence: [(type: RecordType, json: EvidenceJSON)] = []
    /// Engine evidence that must be the frame's last record (the window's brownout record).
    public var closingEvidence: (type: RecordType, json: EvidenceJSON)?
    /// Payload bytes data records may fill before the buffer counts as full (the hold-up budget).
    public var fillLimit = Int.max
    /// Highest seq per source in this frame, in first-seen order.
    public private(set) var sourceLastSeq: [(name: String, first: UInt64, last: UInt64, count: Int)] = []

    public init(capacity: Int = 32 << 10, evidenceReserve: Int = 1024) {
        self.capacity = max(capacity, 4096)
        self.evidenceReserve = min(evidenceReserve, self.capacity / 2)
    }

    public var isEmpty: Bool { records.isEmpty }
    public var recordCount: Int { records.count }
    public var firstMono: UInt64 { records.first?.mono ?? 0 }
    public var lastMono: UInt64 { records.last?.mono ?? 0 }
    public var dataCapacity: Int { capacity - evidenceReserve }
    public var dataLimit: Int { min(dataCapacity, fillLimit) }

    public static func encodedLength(sourceLength: Int, payloadLength: Int) -> Int {
        recordBound + sourceLength + payloadLength
    }

    /// True when a record of these sizes still fits (data records leave the evidence reserve free).
    public func fits(sourceLength: Int, payloadLength: Int, evidence: Bool = false) -> Bool {
        let limit = evidence ? capacity : (records.isEmpty ? dataCapacity : dataLimit)
        return self.payloadLength + Self.encodedLength(sourceLength: sourceLength, payloadLength: payloadLength) <= limit
    }

    /// Adds one record; false (nothing added) when it does not fit or its source name is not one.
    /// mono must exceed every earlier one's.
    @discardableResult
    public func append(type: RecordType, rawType: UInt16? = nil, source: UnsafeRawBufferPointer, seq: UInt64, mono: UInt64,
                       time: CaptureTime, payload: UnsafeRawBufferPointer, evidence: Bool = false) -> Bool {
        let length = Self.encodedLength(sourceLength: source.count, payloadLength: payload.count)
        let limit = evidence ? capacity : dataCapacity
        guard payloadLength + length <= limit, SourceName.isValid(source), mono > (records.last?.mono ?? 0) else { return false }
        let name = String(decoding: source, as: UTF8.self)
        records.append(PackedRecord(rawType: rawType ?? type.rawValue, source: name, seq: seq, mono: mono, time: time, bootSeq: bootSeq,
                                    payload: Array(payload)))
        payloadLength += length
        if type == .data && rawType == nil { dataRecordCount += 1 }
        noteSeq(name, seq)
        return true
    }

    /// For engine-written records whose source and payload are a string and an array.
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

    public func addDropped(_ n: UInt64) { droppedRecords = droppedRecords &+ n }

    private func noteSeq(_ name: String, _ seq: UInt64) {
        if let last = sourceLastSeq.indices.last, sourceLastSeq[last].name == name {
            sourceLastSeq[last].last = seq
            sourceLastSeq[last].count += 1
        } else if let i = sourceLastSeq.firstIndex(where: { $0.name == name }) {
            sourceLastSeq[i].last = seq
            sourceLastSeq[i].count += 1
        } else {
            sourceLastSeq.append((name, seq, seq, 1))
        }
    }

    /// Empties the builder for reuse.
    public func reset() {
        records.removeAll(keepingCapacity: true)
        payloadLength = 0
        dataRecordCount = 0
        droppedRecords = 0
        evidenceMono = 0
        evidenceMonoLimit = 0
        pendingDrops.removeAll(keepingCapacity: true)
        pendingEvidence.removeAll()
        closingEvidence = nil
        timeStats = nil
        sourceLastSeq.removeAll(keepingCapacity: true)
    }
}
