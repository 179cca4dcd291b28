// What the commit pipeline needs of a store and of the buffer it fills, so that one pipeline
// (double buffering, drops, the safe-commit window) drives the format 5 store and the format 6
// evidence store alike while the product moves from one to the other (DESIGN.md section 13).

import EdgelogCore

/// One commit's records as the pipeline gathers them.
public protocol CommitBuffer: AnyObject {
    var isEmpty: Bool { get }
    var recordCount: Int { get }
    /// Bytes the records take by `encodedLength` (what `fits` measures against the capacity).
    var payloadLength: Int { get }
    /// Bytes data records may take in an empty buffer.
    var dataCapacity: Int { get }
    var fillLimit: Int { get set }
    var evidenceMono: UInt64 { get set }
    var evidenceMonoLimit: UInt64 { get set }
    var pendingDrops: [DropNote] { get set }
    var pendingEvidence: [(type: RecordType, json: EvidenceJSON)] { get set }
    var closingEvidence: (type: RecordType, json: EvidenceJSON)? { get set }
    var timeStats: TimeStats? { get set }
    static func encodedLength(sourceLength: Int, payloadLength: Int) -> Int
    func fits(sourceLength: Int, payloadLength: Int, evidence: Bool) -> Bool
    @discardableResult
    func append(type: RecordType, rawType: UInt16?, source: UnsafeRawBufferPointer, seq: UInt64, mono: UInt64,
                time: CaptureTime, payload: UnsafeRawBufferPointer, evidence: Bool) -> Bool
    func reset()
}

extension CommitBuffer {
    public func fits(sourceLength: Int, payloadLength: Int) -> Bool { fits(sourceLength: sourceLength, payloadLength: payloadLength, evidence: false) }

    @discardableResult
    public func append(type: RecordType, source: UnsafeRawBufferPointer, seq: UInt64, mono: UInt64, time: CaptureTime,
                       payload: UnsafeRawBufferPointer) -> Bool {
        append(type: type, rawType: nil, source: source, seq: seq, mono: mono, time: time, payload: payload, evidence: false)
    }
}

/// A store the pipeline commits to. Its type is used from the committer's own queue (the pipeline,
/// generic over it, is captured there), hence `SendableMetatype`.
public protocol CommitStore: AnyObject, SendableMetatype {
    associatedtype Buffer: CommitBuffer
    func makeCommitBuffer() -> Buffer
    func commit(_ buffer: Buffer, markClean: Bool) throws(StoreError) -> CommitReceipt?
    /// Evidence waits for room in a commit; close must not end before it is written.
    var hasCarriedEvidence: Bool { get }
    func markOpen() throws(StoreError)
    func close() throws(StoreError)
    /// Counts a brownout: the next commit seals bo_event + 1.
    func noteBrownout()
    /// bo_event as the last commit sealed it.
    var committedBoEvent: UInt32 { get }
    /// Numbers continue above everything committed: mono_hwm and each source's last seq.
    func makeSequencer() -> Sequencer
    /// Evidence records one commit may add at most (drop notes, one per source, and the engine's own).
    var evidenceBound: Int { get }
}

extension SegmentBuilder: CommitBuffer {}

extension EvidenceStore: CommitStore {
    public func makeCommitBuffer() -> SegmentBuilder { makeBuilder() }
    public var committedBoEvent: UInt32 { metadata.boEvent }
    public func makeSequencer() -> Sequencer { Sequencer(from: metadata) }
    public var evidenceBound: Int { Layout.maxSources + 4 }
}

extension FrameBuilder: CommitBuffer {}

extension PackedEvidenceStore: CommitStore {
    public func makeCommitBuffer() -> FrameBuilder { makeBuilder() }
    public var committedBoEvent: UInt32 { metadata.state.boEvent }
    public func makeSequencer() -> Sequencer {
        Sequencer(mono: metadata.state.monoHWM, lastSeq: Array(zip(metadata.state.tables.names, metadata.state.tables.lastSeqs)),
                  maxSources: PackedTables.maxSources)
    }
    public var evidenceBound: Int { PackedTables.maxSources + 4 }
}

/// The commit pipeline as its producers, the power path and the job see it, whatever store it drives.
public protocol RecordPipeline: AnyObject, Sendable {
    func maxPayload(sourceLength: Int) -> Int
    func append(source: String, type: RecordType, payload: UnsafeRawBufferPointer, time: CaptureTime) -> Pipeline.AppendResult
    func noteTime(_ stats: TimeStats)
    func flush() throws(StoreError)
    func close() throws(StoreError)
    var refusedCount: UInt64 { get }
    var counters: Pipeline.Counters { get }
    func addEvidence(_ type: RecordType, _ json: EvidenceJSON)
    var powerState: Pipeline.PowerState { get }
    func setFillLimit(_ bytes: Int)
    func powerFail(record: (Pipeline.PowerWindow) -> EvidenceJSON) throws(StoreError) -> Pipeline.PowerWindow?
    func resume(record: EvidenceJSON) throws(StoreError) -> Bool
    func observeCommits(_ observer: @escaping @Sendable (Int64, Int) -> Void)
    var bufferCapacity: Int { get }
}

extension RecordPipeline {
    /// A data record (or a time record the writer captures inline).
    public func append(source: String, payload: UnsafeRawBufferPointer, time: CaptureTime) -> Pipeline.AppendResult {
        append(source: source, type: .data, payload: payload, time: time)
    }
}

extension CommitPipeline: RecordPipeline {}
