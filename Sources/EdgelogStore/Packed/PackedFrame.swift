// Format 6's frames (docs/FORMAT.md appendix A.6, A.7): one commit appended to the open segment,
// starting on a fresh sector, sealed by a signature over a statement that is rebuilt rather than
// stored. The writer side builds a frame's bytes; the reader side walks a slot's frames from hostile
// bytes and stops at the first position that does not hold one (the end of what was committed).

import Crypto
import EdgelogCore

/// The sealed numbers a frame's state list may set (A.6).
public enum FrameStateField: UInt8, CaseIterable, Sendable {
    case lostTotal = 1, droppedTotal = 2, uplinkCursor = 3, boEvent = 4, eccErrCnt = 5, clockSteps = 6

    func value(_ s: PackedState) -> UInt64 {
        switch self {
        case .lostTotal: s.lostTotal
        case .droppedTotal: s.droppedTotal
        case .uplinkCursor: s.uplinkCursor
        case .boEvent: UInt64(s.boEvent)
        case .eccErrCnt: UInt64(s.eccErrCnt)
        case .clockSteps: UInt64(s.clockSteps)
        }
    }

    /// Sets the field; false when the value does not fit it.
    func set(_ v: UInt64, in s: inout PackedState) -> Bool {
        switch self {
        case .lostTotal: s.lostTotal = v
        case .droppedTotal: s.droppedTotal = v
        case .uplinkCursor: s.uplinkCursor = v
        case .boEvent, .eccErrCnt, .clockSteps:
            guard let n = UInt32(exactly: v) else { return false }
            switch self {
            case .boEvent: s.boEvent = n
            case .eccErrCnt: s.eccErrCnt = n
            default: s.clockSteps = n
            }
        }
        return true
    }
}

/// A.7: the 352 bytes a frame's signature covers.
public enum FrameStatement {
    public static let size = 352
    public static let magic = magic64("EDGESIG3")

    public static func bytes(header h: PackedSegmentHeader, headerHash: [UInt8], frameID: UInt64, firstMono: UInt64, lastMono: UInt64,
                             recordCount: Int, prevHash: [UInt8], frameHash: [UInt8], state s: PackedState) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        out.withUnsafeMutableBytes { b in
            b.setLE(magic, at: 0)
            h.deviceID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 8) }
            b.setLE(h.segmentID, at: 24)
            b.setLE(frameID, at: 32)
            b.setLE(firstMono, at: 40)
            b.setLE(lastMono, at: 48)
            b.setLE(UInt32(truncatingIfNeeded: recordCount), at: 56)
            b.setLE(h.keyEpoch, at: 60)
            h.keyID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 64) }
            b.setLE(h.rollbackCtr, at: 80)
            h.fwVerHash.prefix(32).withUnsafeBytes { b.setBytes($0, at: 88) }
            prevHash.prefix(32).withUnsafeBytes { b.setBytes($0, at: 120) }
            frameHash.prefix(32).withUnsafeBytes { b.setBytes($0, at: 152) }
            b.setLE(h.sigAlg.rawValue, at: 184)
            b.setLE(h.keySrc, at: 185)
            b.setLE(UInt16(h.sigLen), at: 186)
            h.storeUUID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 192) }
            b.setLE(h.tailSegmentID, at: 208)
            b.setLE(s.monoHWM, at: 216)
            b.setLE(s.recordsTotal, at: 224)
            b.setLE(s.lostTotal, at: 232)
            b.setLE(s.droppedTotal, at: 240)
            b.setLE(s.uplinkCursor, at: 248)
            b.setLE(h.wrapCount, at: 256)
            b.setLE(h.unexpRst, at: 260)
            b.setLE(s.boEvent, at: 264)
            b.setLE(s.eccErrCnt, at: 268)
            b.setLE(s.clockSteps, at: 272)
            b.setLE(h.bootSeq, at: 276)
            s.tables.hash.withUnsafeBytes { b.setBytes($0, at: 280) }
            b.setLE(h.tailSlot, at: 312)
            b.setLE(h.ringSlots, at: 316)
            headerHash.prefix(32).withUnsafeBytes { b.setBytes($0, at: 320) }
        }
        return out
    }

    /// The first and last mono_ctr a statement names (0 without records).
    public static func firstMono(_ statement: [UInt8]) -> UInt64 { field(statement, at: 40) }
    public static func lastMono(_ statement: [UInt8]) -> UInt64 { field(statement, at: 48) }

    private static func field(_ statement: [UInt8], at offset: Int) -> UInt64 {
        guard statement.count == size else { return 0 }
        return statement.withUnsafeBytes { $0.le(offset) }
    }
}

/// One frame as read back.
public struct PackedFrameInfo: Sendable {
    public var frameID: UInt64
    public var segmentID: UInt64
    public var offset: Int
    public var frameLength: Int
    public var deflate: Bool
    public var recordCount: Int
    public var blockLength: Int
    public var stateChanges: [(FrameStateField, UInt64)]
    public var frameHash: [UInt8]
    public var frameCRC: UInt32
    public var statement: [UInt8]
    public var signature: [UInt8]
    public var records: [PackedRecord]
    public var stateAfter: PackedState
}

enum FrameLayout {
    static let magic: [UInt8] = Array("EF".utf8)
    static let deflateFlag: UInt8 = 1
    static let stateFlag: UInt8 = 2
    static let maxBlockLength = 16 << 20
    static let minRecordLength = 7
    static let maxStateEntries = 6

    /// A.6's block budget: the record block bytes a segment's frames hold together (what a reader
    /// that keeps a segment's records may have to hold, however well a crafted slot deflates).
    static func blockBudget(segmentSize: Int) -> Int { 8 * segmentSize }

    /// frame_crc's seed: the store and the segment (A.6).
    static func crcSeed(storeUUID: [UInt8], segmentID: UInt64) -> UInt32 {
        var seed = Array(storeUUID.prefix(16))
        withUnsafeBytes(of: segmentID.littleEndian) { seed.append(contentsOf: $0) }
        return CRC32C.checksum(seed)
    }

    /// `advance` for a writer that has just encoded the records: `named` holds each source they name
    /// once, in the order first named, with its last seq in the frame, and `dataRecords` counts the
    /// data records. The same state as record by record, with one table lookup a source instead of
    /// one a record.
    static func advance(_ state: inout PackedState, records: [PackedRecord], named: [(String, UInt64)], dataRecords: Int) -> String? {
        guard UInt64.max - state.recordsTotal >= UInt64(dataRecords) else { return "records_total" }
        state.recordsTotal += UInt64(dataRecords)
        for (name, seq) in named {
            guard state.tables.setLastSeq(name, seq) else { return "tables" }
        }
        if let last = records.last { state.monoHWM = last.mono }
        return nil
    }

    /// Moves `state` on by the frame's records (A.6); the overflow's reason word when a number
    /// would pass its bound.
    static func advance(_ state: inout PackedState, records: some Collection<PackedRecord>) -> String? {
        for r in records {
            if r.rawType == RecordType.data.rawValue {
                guard state.recordsTotal < UInt64.max else { return "records_total" }
                state.recordsTotal += 1
            }
            guard state.tables.setLastSeq(r.source, r.seq) else { return "tables" }
        }
        for r in records { state.monoHWM = r.mono }
        return nil
    }
}

/// Why a frame cannot be written into the open segment.
public enum PackedWriteProblem: Error, Equatable, Sendable {
    /// The frame does not fit in what is left of the slot: open a new segment.
    case segmentFull(need: Int, left: Int)
    case encode(RecordBlock.EncodeProblem)
    case stateGoesBack(FrameStateField)
    /// records_total or the source table would pass its bound.
    case overflow(String)
    case signing(String)
}

/// Builds one segment's bytes frame by frame (the writer side of A.5 to A.7). A copy of a writer
/// may build frames on another thread (PackedLog.stage), with a compressor of its own.
public struct PackedSegmentWriter {
    public let header: PackedSegmentHeader
    public let headerBytes: [UInt8]
    public let headerHash: [UInt8]
    public let sectorSize: Int
    public let segmentSize: Int
    public private(set) var nextOffset: Int
    public private(set) var frames = 0
    public private(set) var prevHash: [UInt8]
    /// The last frame appended: where it starts in the slot and its CRC (its hash is prevHash).
    public private(set) var lastFrameOffset = 0
    public private(set) var lastFrameCRC: UInt32 = 0
    /// The last frame's statement (A.7) and signature: its seal, for acknowledgements and anchors.
    public private(set) var lastStatement: [UInt8] = []
    public private(set) var lastSignature: [UInt8] = []
    /// What the next frame is encoded against: the state after the last frame sealed.
    public private(set) var encoding: Encoding
    public var state: PackedState { encoding.state }
    /// The record block bytes of the frames appended so far, against A.6's block budget.
    public var blockBytes: Int { encoding.blockBytes }
    private let crcSeed: UInt32
    /// How blocks are deflated; nil: `Deflate.method(forBlockOf:)` (zlib 9 up to 4 KiB, igzip 1 above).
    public var method: Deflate.Method?
    /// Kept from frame to frame (zlib's set-up costs more than a small frame), and from segment to
    /// segment when the caller gives one (`PackedLog` does); nil when zlib could not start, and then
    /// frames are stored.
    private let compressor: Deflate.Compressor?

    /// What a frame's records are encoded against, and what encoding them leaves for the next frame:
    /// the record context (A.2), the block before (the deflate dictionary, A.4), the frame state and
    /// the block budget spent (A.6).
    public struct Encoding: Sendable {
        var context = RecordBlockContext()
        var previousBlock: [UInt8] = []
        var state: PackedState
        var blockBytes = 0
    }

    /// A frame's records encoded, not yet deflated or sealed.
    private struct EncodedFrame {
        let records: [PackedRecord]
        /// The state changes, sorted by field.
        let changes: [(FrameStateField, UInt64)]
        /// The record block (A.2) and how it deflates: against the block before it, by `method`.
        let block: [UInt8]
        let dictionary: [UInt8]
        let method: Deflate.Method
        /// What the frame after it is encoded against.
        let after: Encoding
    }

    /// `compressor`: the one this writer's frames are deflated with unless `append` is given one;
    /// a writer per segment each with its own set up zlib and igzip anew, about 400 KiB of state
    /// touched for the first time (on the bench's VM the frame that opened a segment took 390 µs
    /// to build under (b) against about 100).
    public init(header: PackedSegmentHeader, sectorSize: Int, segmentSize: Int, compressor: Deflate.Compressor? = Deflate.Compressor()) {
        self.header = header
        self.compressor = compressor
        self.sectorSize = sectorSize
        self.segmentSize = segmentSize
        headerBytes = header.encoded(sectorSize: sectorSize)
        headerHash = headerBytes.withUnsafeBytes { PackedSegmentHeader.hash($0) }
        nextOffset = headerBytes.count
        encoding = Encoding(state: header.state)
        prevHash = header.prevHash
        crcSeed = FrameLayout.crcSeed(storeUUID: header.storeUUID, segmentID: header.segmentID)
    }

    public var nextFrameID: UInt64 { header.firstFrameID &+ UInt64(frames) }

    /// What the next frame follows: the segment and its last frame's hash (unique to the chain up
    /// to it). A frame built by a copy of a writer goes only after a writer at the same tip.
    public typealias Tip = (segmentID: UInt64, prevHash: [UInt8])
    public var tip: Tip { (header.segmentID, prevHash) }

    /// Encodes a frame of `records` (and the state changes), deflates it (by `compressor`, else the
    /// writer's own) and moves the writer past it. Returns where to write and what: the header and
    /// the frame for the segment's first frame, else the frame, padded to whole sectors. Nothing
    /// moves when it throws.
    public mutating func append(_ records: [PackedRecord], changes: [(FrameStateField, UInt64)] = [],
                                sign: (([UInt8]) throws -> [UInt8])? = nil,
                                compressor: Deflate.Compressor? = nil) throws(PackedWriteProblem) -> (offset: Int, bytes: [UInt8]) {
        let e = try encode(records, changes: changes)
        let deflated = e.block.isEmpty ? nil : (compressor ?? self.compressor)?.compress(e.block, dictionary: e.dictionary, method: e.method)
        return try seal(e, deflated: deflated, sign: sign)
    }

    /// Encodes a frame of `records` against the writer's encoding. Moves nothing. Throws
    /// `segmentFull` when the block passes what is left of the block budget (A.6); whether the frame
    /// fits the slot is known only once it is deflated.
    private func encode(_ records: [PackedRecord], changes: [(FrameStateField, UInt64)]) throws(PackedWriteProblem) -> EncodedFrame {
        let base = encoding
        var ctx = base.context
        let block: [UInt8], named: [Int], dataRecords: Int
        do {
            (block, named, dataRecords) = try RecordBlock.encodeFrame(records, context: &ctx, payloadLimit: FrameLayout.maxBlockLength)
        } catch .blockTooLong {
            // Payloads alone past what a reader takes (A.6): refused before a block is sized for them.
            throw .overflow("block_len")
        } catch {
            throw .encode(error)
        }
        // What a reader accepts (FORMAT.md A.6): a frame beyond it would be acknowledged and never read.
        guard block.count <= FrameLayout.maxBlockLength, records.count <= Int(UInt32.max) else {
            throw .overflow("block_len")
        }
        // Past the block budget the segment is full, however much of its slot is left (A.6).
        let budget = FrameLayout.blockBudget(segmentSize: segmentSize)
        guard block.count <= budget - base.blockBytes else {
            throw .segmentFull(need: block.count, left: budget - base.blockBytes)
        }
        var after = base.state
        if let what = FrameLayout.advance(&after, records: records, named: named.map { (ctx.sources[$0], ctx.lastSeq[$0]) },
                                          dataRecords: dataRecords) { throw .overflow(what) }
        let sorted = changes.sorted { $0.0.rawValue < $1.0.rawValue }
        for (field, value) in sorted {
            guard value >= field.value(after), field.set(value, in: &after) else { throw .stateGoesBack(field) }
        }
        let next = Encoding(context: ctx, previousBlock: block, state: after, blockBytes: base.blockBytes + block.count)
        return EncodedFrame(records: records, changes: sorted, block: block, dictionary: base.previousBlock,
                            method: method ?? Deflate.method(forBlockOf: block.count), after: next)
    }

    /// Seals `encoded` (encoded against the writer's encoding) with its block `deflated` (nil: stored)
    /// and moves the writer past it; returns what `append` returns. Nothing moves when it throws.
    private mutating func seal(_ encoded: EncodedFrame, deflated: [UInt8]?,
                               sign: (([UInt8]) throws -> [UInt8])?) throws(PackedWriteProblem) -> (offset: Int, bytes: [UInt8]) {
        let block = encoded.block, sorted = encoded.changes, after = encoded.after.state
        var stored = block
        var flags: UInt8 = 0
        if let packed = deflated, packed.count < block.count {
            stored = packed
            flags |= FrameLayout.deflateFlag
        }
        var middle: [UInt8] = []
        Varint.append(UInt64(encoded.records.count), to: &middle)
        Varint.append(UInt64(block.count), to: &middle)
        if !sorted.isEmpty {
            flags |= FrameLayout.stateFlag
            Varint.append(UInt64(sorted.count), to: &middle)
            for (field, value) in sorted {
                middle.append(field.rawValue)
                Varint.append(value, to: &middle)
            }
        }
        // frame_len counts its own varint: the smallest length that holds it.
        let rest = middle.count + stored.count + header.sigLen + 4
        var frameLength = 3 + 1 + rest
        while 3 + Varint.length(UInt64(frameLength)) + rest != frameLength { frameLength = 3 + Varint.length(UInt64(frameLength)) + rest }
        let left = segmentSize - nextOffset
        guard frameLength <= left else { throw .segmentFull(need: frameLength, left: left) }

        var frame: [UInt8] = FrameLayout.magic + [flags]
        frame.reserveCapacity((frameLength + sectorSize - 1) / sectorSize * sectorSize)
        Varint.append(UInt64(frameLength), to: &frame)
        frame.append(contentsOf: middle)
        frame.append(contentsOf: stored)
        let frameHash = Array(SHA256.hash(data: frame))
        let statement = FrameStatement.bytes(header: header, headerHash: headerHash, frameID: nextFrameID, firstMono: encoded.records.first?.mono ?? 0,
                                             lastMono: encoded.records.last?.mono ?? 0, recordCount: encoded.records.count, prevHash: prevHash,
                                             frameHash: frameHash, state: after)
        var signature: [UInt8] = []
        if header.sigLen > 0 {
            guard let sign else { throw .signing("the segment names a key but no signer was given") }
            do { signature = try sign(statement) } catch { throw .signing("\(error)") }
            guard signature.count == header.sigLen else { throw .signing("signature of \(signature.count) bytes") }
            frame.append(contentsOf: signature)
        }
        let crc = CRC32C.checksum(frame, seed: crcSeed)
        withUnsafeBytes(of: crc.littleEndian) { frame.append(contentsOf: $0) }
        let padded = (frame.count + sectorSize - 1) / sectorSize * sectorSize
        frame.append(contentsOf: [UInt8](repeating: 0, count: padded - frame.count))

        let offset = nextOffset
        lastFrameOffset = offset
        lastFrameCRC = crc
        lastStatement = statement
        lastSignature = signature
        encoding = encoded.after
        prevHash = frameHash
        frames += 1
        nextOffset = offset + padded
        return frames == 1 ? (0, headerBytes + frame) : (offset, frame)
    }
}

/// Reads a slot's segment (the reader side of A.5 to A.7).
public enum PackedSegmentReader {
    public struct Walk: Sendable {
        public var header: PackedSegmentHeader
        public var headerLength: Int
        public var headerHash: [UInt8]
        public var frames: [PackedFrameInfo]
        /// Where the walk stopped and why (the end of what is committed in the slot).
        public var endOffset: Int
        public var end: PackedProblem
    }

    /// `keepRecords` false: each frame's records are decoded and checked but not kept (recovery).
    public static func walk(_ slot: UnsafeRawBufferPointer, sectorSize: Int, storeUUID: [UInt8]? = nil, keepRecords: Bool = true) throws(PackedProblem) -> Walk {
        let (header, headerLength) = try PackedSegmentHeader.decode(slot, sectorSize: sectorSize, storeUUID: storeUUID)
        let headerHash = PackedSegmentHeader.hash(UnsafeRawBufferPointer(rebasing: slot[0..<headerLength]))
        var walk = Walk(header: header, headerLength: headerLength, headerHash: headerHash, frames: [], endOffset: headerLength, end: .slotEnd)
        let seed = FrameLayout.crcSeed(storeUUID: header.storeUUID, segmentID: header.segmentID)
        var offset = headerLength
        var ctx = RecordBlockContext()
        var previousBlock: [UInt8] = []
        var prevHash = header.prevHash
        var state = header.state
        var budgetLeft = FrameLayout.blockBudget(segmentSize: slot.count)
        while true {
            walk.endOffset = offset
            do {
                let info = try frame(slot, at: offset, sectorSize: sectorSize, header: header, headerHash: headerHash, seed: seed,
                                     index: walk.frames.count, context: &ctx, previousBlock: &previousBlock,
                                     prevHash: prevHash, state: state, blockBudgetLeft: budgetLeft, keepRecords: keepRecords)
                budgetLeft -= info.blockLength
                walk.frames.append(info)
                prevHash = info.frameHash
                state = info.stateAfter
                offset += (info.frameLength + sectorSize - 1) / sectorSize * sectorSize
            } catch {
                walk.end = error
                return walk
            }
        }
    }

    /// The first sector boundary at or after `start` holding a frame whose magic, flags, frame_len
    /// and frame_crc check under `header` (A.6), whatever its contents; nil otherwise. What a verifier
    /// looks for past the end of a walk: a frame written whole where the history says nothing was.
    /// Linear in the slot however the frame_len claims overlap (one pass of prefix CRC registers,
    /// CRC32CShift.swift), where a CRC at every boundary would checksum up to the whole slot per
    /// boundary of a crafted card.
    public static func firstFrameWithCheckingCRC(_ slot: UnsafeRawBufferPointer, from start: Int, sectorSize: Int,
                                                 header: PackedSegmentHeader) -> Int? {
        guard start >= 0, sectorSize > 0 else { return nil }
        var candidates: [(offset: Int, crcAt: Int)] = []
        var o = start
        while o + sectorSize <= slot.count {
            if let length = claimedLength(slot, at: o, sectorSize: sectorSize, header: header) { candidates.append((o, o + length - 4)) }
            o += sectorSize
        }
        guard !candidates.isEmpty else { return nil }
        let prefix = CRC32C.PrefixRegisters(slot, origin: start, stride: sectorSize)
        let seed = FrameLayout.crcSeed(storeUUID: header.storeUUID, segmentID: header.segmentID)
        for c in candidates {
            if let crc = CRC32C.checksum(of: slot, from: c.offset, to: c.crcAt, seed: seed, prefix: prefix), crc == slot.le(c.crcAt, as: UInt32.self) {
                return c.offset
            }
        }
        return nil
    }

    /// The frame_len at `o` when the magic, the flags and the length itself are well formed and the
    /// frame ends inside the slot (A.6); nil otherwise.
    private static func claimedLength(_ slot: UnsafeRawBufferPointer, at o: Int, sectorSize: Int, header: PackedSegmentHeader) -> Int? {
        guard o >= 0, o + sectorSize <= slot.count, slot[o] == FrameLayout.magic[0], slot[o + 1] == FrameLayout.magic[1],
              slot[o + 2] & ~(FrameLayout.deflateFlag | FrameLayout.stateFlag) == 0 else { return nil }
        var c = ByteCursor(UnsafeRawBufferPointer(rebasing: slot[o..<slot.count]), offset: 3)
        guard let v = try? c.varint(), v <= UInt64(slot.count - o), Int(v) >= c.offset + 4 + header.sigLen else { return nil }
        return Int(v)
    }

    static func frame(_ slot: UnsafeRawBufferPointer, at o: Int, sectorSize: Int, header: PackedSegmentHeader, headerHash: [UInt8], seed: UInt32,
                      index: Int, context: inout RecordBlockContext, previousBlock: inout [UInt8], prevHash: [UInt8],
                      state: PackedState, blockBudgetLeft: Int, keepRecords: Bool) throws(PackedProblem) -> PackedFrameInfo {
        guard o + sectorSize <= slot.count else { throw .slotEnd }
        guard slot[o] == FrameLayout.magic[0], slot[o + 1] == FrameLayout.magic[1] else {
            throw UnsafeRawBufferPointer(rebasing: slot[o..<(o + sectorSize)]).allSatisfy({ $0 == 0 }) ? .blank : .badMagic
        }
        let flags = slot[o + 2]
        guard flags & ~(FrameLayout.deflateFlag | FrameLayout.stateFlag) == 0 else { throw .badFlags(flags) }
        var c = ByteCursor(UnsafeRawBufferPointer(rebasing: slot[o..<slot.count]), offset: 3)
        let frameLength: Int
        do {
            let v = try c.varint()
            guard v <= UInt64(slot.count - o), Int(v) >= c.offset + 4 + header.sigLen else { throw PackedProblem.badLength("frame_len \(v)") }
            frameLength = Int(v)
        } catch let p as PackedProblem { throw p } catch { throw .badLength("frame_len: \(error)") }
        let frame = UnsafeRawBufferPointer(rebasing: slot[o..<(o + frameLength)])
        let crcAt = frameLength - 4
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: frame[0..<crcAt]), seed: seed) == frame.le(crcAt, as: UInt32.self) else {
            throw .crcMismatch
        }
        // The fields and the stored bytes end where the signature starts.
        let sigAt = crcAt - header.sigLen
        c = ByteCursor(UnsafeRawBufferPointer(rebasing: frame[0..<sigAt]), offset: c.offset)
        var after = state
        var changes: [(FrameStateField, UInt64)] = []
        let recordCount: Int, blockLength: Int
        do {
            let rc: UInt64
            do { rc = try c.varint(max: UInt64(UInt32.max)) } catch { throw PackedProblem.badRecordCount("\(error)") }
            let bl: UInt64
            do { bl = try c.varint() } catch { throw PackedProblem.badBlockLength("\(error)") }
            guard bl <= UInt64(FrameLayout.maxBlockLength), rc <= bl / UInt64(FrameLayout.minRecordLength) else {
                throw PackedProblem.badBlockLength("record_count \(rc), block_len \(bl)")
            }
            // Checked before anything inflates: the budget bounds what a crafted slot costs a reader.
            guard bl <= UInt64(max(0, blockBudgetLeft)) else {
                throw PackedProblem.badBlockLength("block_len \(bl) passes the segment's block budget (\(max(0, blockBudgetLeft)) bytes left)")
            }
            recordCount = Int(rc)
            blockLength = Int(bl)
            if flags & FrameLayout.stateFlag != 0 {
                do {
                    let n = try c.varint()
                    guard n >= 1, n <= UInt64(FrameLayout.maxStateEntries) else { throw PackedProblem.state("\(n) entries") }
                    var last: UInt8 = 0
                    for _ in 0..<Int(n) {
                        let id = try c.byte()
                        guard id > last, let field = FrameStateField(rawValue: id) else { throw PackedProblem.state("field id \(id)") }
                        last = id
                        let value = try c.varint()
                        guard value >= field.value(after) else { throw PackedProblem.state("\(field) \(value) goes back") }
                        guard field.set(value, in: &after) else { throw PackedProblem.state("\(field) \(value) does not fit") }
                        changes.append((field, value))
                    }
                } catch let p as PackedProblem { throw p } catch { throw PackedProblem.state("\(error)") }
            }
        } catch let p as PackedProblem { throw p } catch { throw .badLength("\(error)") }
        let storedStart = c.offset
        let storedLength = sigAt - storedStart
        let stored = UnsafeRawBufferPointer(rebasing: frame[storedStart..<sigAt])
        let deflated = flags & FrameLayout.deflateFlag != 0
        guard deflated || storedLength == blockLength else { throw .badBlockLength("stored \(storedLength) bytes, block_len \(blockLength)") }
        let (frameID, overflow) = header.firstFrameID.addingReportingOverflow(UInt64(index))
        guard !overflow else { throw .overflow("frame_id") }
        let block: [UInt8]
        if deflated {
            do { block = try Deflate.inflate(stored, dictionary: previousBlock, length: blockLength) } catch { throw .block("\(error)") }
        } else {
            block = Array(stored)
        }
        var ctx = context
        var records: [PackedRecord] = []
        var firstMono: UInt64 = 0, lastMono: UInt64 = 0
        var overflowed: String?
        // The state moves record by record; the records are kept only when the caller asked (a
        // recovery walk needs the state, not a slot's worth of records in memory).
        do {
            try block.withUnsafeBytes {
                try RecordBlock.decode($0, count: recordCount, context: &ctx) { r in
                    if firstMono == 0 { firstMono = r.mono }
                    lastMono = r.mono
                    if overflowed == nil { overflowed = FrameLayout.advance(&after, records: CollectionOfOne(r)) }
                    if keepRecords { records.append(r) }
                }
            }
        } catch { throw .block("\(error)") }
        if let overflowed { throw .overflow(overflowed) }
        let frameHash = Array(SHA256.hash(data: UnsafeRawBufferPointer(rebasing: frame[0..<(storedStart + storedLength)])))
        let statement = FrameStatement.bytes(header: header, headerHash: headerHash, frameID: frameID, firstMono: firstMono,
                                             lastMono: lastMono, recordCount: recordCount, prevHash: prevHash,
                                             frameHash: frameHash, state: after)
        let signature = Array(frame[sigAt..<crcAt])
        context = ctx
        previousBlock = block
        return PackedFrameInfo(frameID: frameID, segmentID: header.segmentID, offset: o, frameLength: frameLength, deflate: flags & FrameLayout.deflateFlag != 0,
                               recordCount: recordCount, blockLength: blockLength, stateChanges: changes, frameHash: frameHash,
                               frameCRC: frame.le(crcAt, as: UInt32.self),
                               statement: statement, signature: signature, records: records, stateAfter: after)
    }
}
