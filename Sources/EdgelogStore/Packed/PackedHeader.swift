// Format 6's segment header and its tables (docs/FORMAT.md appendix A.5): what every frame of the
// segment signs without storing it again. Decoding treats every byte as hostile.

import Crypto
import EdgelogCore

/// Why a format 6 segment header or frame is not valid (the walk over a slot stops there).
public enum PackedProblem: Error, Equatable, CustomStringConvertible, Sendable {
    case blank
    case badMagic
    case badVersion(UInt16)
    case crcMismatch
    case badLength(String)
    case badTables(String)
    case badField(String)
    case foreignStore
    case badFlags(UInt8)
    case badRecordCount(String)
    case badBlockLength(String)
    case block(String)
    case state(String)
    /// A derived number that would pass its bound: "records_total", "tables", "frame_id".
    case overflow(String)
    case slotEnd

    /// The reason word of FORMAT.md's walk (and the Python decoder's `end` line).
    public var reason: String {
        switch self {
        case .blank: "blank"
        case .badMagic: "bad_magic"
        case .badVersion: "bad_version"
        case .crcMismatch: "crc_mismatch"
        case .badLength: "frame_len"
        case .badTables: "tables"
        case .badField: "field"
        case .foreignStore: "foreign_store"
        case .badFlags: "flags"
        case .badRecordCount: "record_count"
        case .badBlockLength: "block_len"
        case .block: "block"
        case .state: "state"
        case .overflow(let what): what
        case .slotEnd: "slot_end"
        }
    }

    public var description: String {
        switch self {
        case .blank: "blank sector"
        case .badMagic: "no magic"
        case .badVersion(let v): "format version \(v)"
        case .crcMismatch: "CRC mismatch"
        case .badLength(let why): "bad length (\(why))"
        case .badTables(let why): "bad tables (\(why))"
        case .badField(let why): "bad field (\(why))"
        case .foreignStore: "another store's segment"
        case .badFlags(let f): "reserved flag bits set (0x\(String(f, radix: 16)))"
        case .badRecordCount(let why): "bad record_count (\(why))"
        case .badBlockLength(let why): "bad block_len (\(why))"
        case .block(let why): "records do not decode (\(why))"
        case .state(let why): "bad state list (\(why))"
        case .overflow(let what): "\(what) passes its bound"
        case .slotEnd: "end of the slot"
        }
    }
}

/// The bad-slot list and the source table, as A.5 encodes them.
public struct PackedTables: Equatable, Sendable {
    public struct BadSlot: Equatable, Sendable {
        public var slot: UInt32
        public var reason: UInt8
        public var segmentID: UInt64
        public init(slot: UInt32, reason: UInt8, segmentID: UInt64) {
            self.slot = slot
            self.reason = reason
            self.segmentID = segmentID
        }
    }
    public static let maxBadSlots = 64
    /// 256 user sources and the engine's two.
    public static let maxSources = 258

    public var badSlots: [BadSlot] = []
    /// The sources in table order: their names, and each one's last_seq at the same index. Kept
    /// apart because every frame's state is a copy that changes only last_seqs: a copy of plain
    /// numbers, freed without a release per name (as pairs, the writer's thread spent about a
    /// microsecond a frame freeing the state a frame replaced, element by element).
    public private(set) var names: [String] = []
    public private(set) var lastSeqs: [UInt64] = []
    private var index: [String: Int] = [:]

    /// The table as name and last_seq pairs (a new array: for readers, not for each frame).
    public var sources: [(name: String, lastSeq: UInt64)] { zip(names, lastSeqs).map { (name: $0, lastSeq: $1) } }

    public init(badSlots: [BadSlot] = [], sources: [(name: String, lastSeq: UInt64)] = []) {
        self.badSlots = badSlots
        for s in sources { _ = setLastSeq(s.name, s.lastSeq) }
    }

    public static func == (a: PackedTables, b: PackedTables) -> Bool {
        a.badSlots == b.badSlots && a.names == b.names && a.lastSeqs == b.lastSeqs
    }

    public func lastSeq(_ name: String) -> UInt64? { index[name].map { lastSeqs[$0] } }

    /// Bad slots inside a ring of `ringSlots`, none twice, and at least two good slots left
    /// (FORMAT.md A.8): a table that marks every slot but one bad would make the next slot the head's.
    public func badSlotsFit(ringSlots: Int) -> Bool {
        let slots = Set(badSlots.map { Int($0.slot) })
        return slots.count == badSlots.count && slots.allSatisfy { $0 < ringSlots } && ringSlots - slots.count >= 2
    }

    /// Sets a source's last_seq, adding it at the end when new; false when the table is full.
    @discardableResult
    public mutating func setLastSeq(_ name: String, _ seq: UInt64) -> Bool {
        if let i = index[name] {
            lastSeqs[i] = seq
            return true
        }
        guard names.count < Self.maxSources else { return false }
        index[name] = names.count
        names.append(name)
        lastSeqs.append(seq)
        return true
    }

    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        Varint.append(UInt64(badSlots.count), to: &out)
        for b in badSlots {
            Varint.append(UInt64(b.slot), to: &out)
            out.append(b.reason)
            Varint.append(b.segmentID, to: &out)
        }
        Varint.append(UInt64(names.count), to: &out)
        for (name, lastSeq) in zip(names, lastSeqs) {
            let bytes = Array(name.utf8)
            out.append(UInt8(truncatingIfNeeded: bytes.count))
            out.append(contentsOf: bytes)
            Varint.append(lastSeq, to: &out)
        }
        return out
    }

    public var hash: [UInt8] { Array(SHA256.hash(data: encoded())) }

    public static func decode(_ b: UnsafeRawBufferPointer) throws(PackedProblem) -> PackedTables {
        var c = ByteCursor(b)
        var t = PackedTables()
        do {
            let bad = try c.varint()
            guard bad <= UInt64(maxBadSlots) else { throw PackedProblem.badTables("\(bad) bad slots") }
            for _ in 0..<Int(bad) {
                let slot = try c.varint(max: UInt64(UInt32.max))
                let reason = try c.byte()
                guard (1...3).contains(reason) else { throw PackedProblem.badTables("bad-slot reason \(reason)") }
                let segment = try c.varint()
                t.badSlots.append(BadSlot(slot: UInt32(slot), reason: reason, segmentID: segment))
            }
            let count = try c.varint()
            guard count <= UInt64(maxSources) else { throw PackedProblem.badTables("\(count) sources") }
            for _ in 0..<Int(count) {
                let len = Int(try c.byte())
                guard len >= 1, len <= SourceName.maxLength else { throw PackedProblem.badTables("source name length \(len)") }
                let name = try c.take(len)
                guard SourceName.isValid(name) else { throw PackedProblem.badTables("invalid source name") }
                let s = String(decoding: name, as: UTF8.self)
                guard t.lastSeq(s) == nil else { throw PackedProblem.badTables("source \(s) twice") }
                let seq = try c.varint()
                guard seq < RecordBlock.bound else { throw PackedProblem.badTables("last_seq of \(s) is 2^62 or more") }
                t.setLastSeq(s, seq)
            }
        } catch let p as PackedProblem {
            throw p
        } catch {
            throw .badTables("\(error)")
        }
        guard c.atEnd else { throw .badTables("\(c.remaining) bytes after the tables") }
        return t
    }
}

/// The sealed numbers of A.7 that a frame's statement carries after it.
public struct PackedState: Equatable, Sendable {
    public var monoHWM: UInt64 = 0
    public var recordsTotal: UInt64 = 0
    public var lostTotal: UInt64 = 0
    public var droppedTotal: UInt64 = 0
    public var uplinkCursor: UInt64 = 0
    public var boEvent: UInt32 = 0
    public var eccErrCnt: UInt32 = 0
    public var clockSteps: UInt32 = 0
    public var tables = PackedTables()

    public init() {}
}

/// A.5's header.
public struct PackedSegmentHeader: Equatable, Sendable {
    public static let magic = magic64("EDGELOGS")
    public static let formatVersion: UInt16 = 6
    public static let fixedSize = 248

    public var storeUUID = [UInt8](repeating: 0, count: 16)
    public var segmentID: UInt64 = 0
    public var firstFrameID: UInt64 = 0
    public var slotIndex: UInt32 = 0
    public var wrapCount: UInt32 = 0
    public var prevHash = [UInt8](repeating: 0, count: 32)
    public var deviceID = [UInt8](repeating: 0, count: 16)
    public var keyID = [UInt8](repeating: 0, count: 16)
    public var keyEpoch: UInt32 = 0
    public var sigAlg: SignatureAlgorithm = .unsigned
    public var keySrc: UInt8 = 0
    public var fwVerHash = [UInt8](repeating: 0, count: 32)
    public var rollbackCtr: UInt64 = 0
    public var tailSegmentID: UInt64 = 0
    public var tailSlot: UInt32 = 0
    public var ringSlots: UInt32 = 0
    public var unexpRst: UInt32 = 0
    public var bootSeq: UInt32 = 0
    /// The state before the segment's first frame.
    public var state = PackedState()

    public init() {}

    public var sigLen: Int { sigAlg.signatureLength }

    /// The header's bytes, padded to a whole number of sectors, with its CRC.
    public func encoded(sectorSize: Int) -> [UInt8] {
        let tables = state.tables.encoded()
        let length = (Self.fixedSize + tables.count + 4 + sectorSize - 1) / sectorSize * sectorSize
        var out = [UInt8](repeating: 0, count: length)
        out.withUnsafeMutableBytes { b in
            b.setLE(Self.magic, at: 0)
            b.setLE(Self.formatVersion, at: 8)
            b.setLE(UInt32(length), at: 12)
            storeUUID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 16) }
            b.setLE(segmentID, at: 32)
            b.setLE(firstFrameID, at: 40)
            b.setLE(slotIndex, at: 48)
            b.setLE(wrapCount, at: 52)
            prevHash.prefix(32).withUnsafeBytes { b.setBytes($0, at: 56) }
            deviceID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 88) }
            keyID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 104) }
            b.setLE(keyEpoch, at: 120)
            b.setLE(sigAlg.rawValue, at: 124)
            b.setLE(keySrc, at: 125)
            b.setLE(UInt16(sigLen), at: 126)
            fwVerHash.prefix(32).withUnsafeBytes { b.setBytes($0, at: 128) }
            b.setLE(rollbackCtr, at: 160)
            b.setLE(tailSegmentID, at: 168)
            b.setLE(tailSlot, at: 176)
            b.setLE(ringSlots, at: 180)
            b.setLE(state.monoHWM, at: 184)
            b.setLE(state.recordsTotal, at: 192)
            b.setLE(state.lostTotal, at: 200)
            b.setLE(state.droppedTotal, at: 208)
            b.setLE(state.uplinkCursor, at: 216)
            b.setLE(unexpRst, at: 224)
            b.setLE(state.boEvent, at: 228)
            b.setLE(state.eccErrCnt, at: 232)
            b.setLE(state.clockSteps, at: 236)
            b.setLE(bootSeq, at: 240)
            b.setLE(UInt32(tables.count), at: 244)
            tables.withUnsafeBytes { b.setBytes($0, at: 248) }
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<(length - 4)]))
            b.setLE(crc, at: length - 4)
        }
        return out
    }

    /// SHA-256 of the header's bytes before its CRC.
    public static func hash(_ encoded: UnsafeRawBufferPointer) -> [UInt8] {
        Array(SHA256.hash(data: UnsafeRawBufferPointer(rebasing: encoded[0..<(encoded.count - 4)])))
    }

    /// Reads and checks a header at the start of `slot`; returns it and its length.
    public static func decode(_ slot: UnsafeRawBufferPointer, sectorSize: Int, storeUUID: [UInt8]? = nil) throws(PackedProblem) -> (PackedSegmentHeader, length: Int) {
        guard slot.count >= Self.fixedSize + 4 else { throw .badLength("slot shorter than a header") }
        if slot.le(0, as: UInt64.self) != Self.magic {
            throw UnsafeRawBufferPointer(rebasing: slot[0..<min(slot.count, sectorSize)]).allSatisfy({ $0 == 0 }) ? .blank : .badMagic
        }
        let version: UInt16 = slot.le(8)
        guard version == Self.formatVersion else { throw .badVersion(version) }
        let length = Int(slot.le(12, as: UInt32.self))
        guard sectorSize > 0, length >= Self.fixedSize + 4, length % sectorSize == 0, length <= slot.count else {
            throw .badLength("header_len \(length)")
        }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slot[0..<(length - 4)])) == slot.le(length - 4, as: UInt32.self) else {
            throw .crcMismatch
        }
        var h = PackedSegmentHeader()
        h.storeUUID = Array(slot[16..<32])
        if let storeUUID, storeUUID != h.storeUUID { throw .foreignStore }
        h.segmentID = slot.le(32)
        h.firstFrameID = slot.le(40)
        h.slotIndex = slot.le(48)
        h.wrapCount = slot.le(52)
        h.prevHash = Array(slot[56..<88])
        h.deviceID = Array(slot[88..<104])
        h.keyID = Array(slot[104..<120])
        h.keyEpoch = slot.le(120)
        guard let alg = SignatureAlgorithm(rawValue: slot[124]) else { throw .badField("sig_alg \(slot[124])") }
        h.sigAlg = alg
        h.keySrc = slot[125]
        guard Int(slot.le(126, as: UInt16.self)) == alg.signatureLength else { throw .badField("sig_len") }
        h.fwVerHash = Array(slot[128..<160])
        h.rollbackCtr = slot.le(160)
        h.tailSegmentID = slot.le(168)
        h.tailSlot = slot.le(176)
        h.ringSlots = slot.le(180)
        h.state.monoHWM = slot.le(184)
        h.state.recordsTotal = slot.le(192)
        h.state.lostTotal = slot.le(200)
        h.state.droppedTotal = slot.le(208)
        h.state.uplinkCursor = slot.le(216)
        h.unexpRst = slot.le(224)
        h.state.boEvent = slot.le(228)
        h.state.eccErrCnt = slot.le(232)
        h.state.clockSteps = slot.le(236)
        h.bootSeq = slot.le(240)
        let tablesLength = Int(slot.le(244, as: UInt32.self))
        guard tablesLength <= length - 4 - Self.fixedSize else { throw .badTables("tables_len \(tablesLength)") }
        h.state.tables = try PackedTables.decode(UnsafeRawBufferPointer(rebasing: slot[Self.fixedSize..<(Self.fixedSize + tablesLength)]))
        return (h, length)
    }
}
