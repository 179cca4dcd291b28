// The signed head of a format 6 store (docs/FORMAT.md A.11.1): the head frame's rebuilt EDGESIG3
// statement and its stored signature, printed as one line of JSON (version 3), kept by the
// collector and as the anchor file. Printing it needs no key; checking it needs a trusted key.

import EdgelogCore
import EdgelogStore

/// The fields of a 352-byte EDGESIG3 statement (A.7).
public struct FrameStatementView: Equatable, Sendable {
    public let bytes: [UInt8]

    public init?(_ bytes: [UInt8]) {
        guard bytes.count == FrameStatement.size, bytes.withUnsafeBytes({ $0.le(0, as: UInt64.self) }) == FrameStatement.magic else { return nil }
        self.bytes = bytes
    }

    private func u64(_ o: Int) -> UInt64 { bytes.withUnsafeBytes { $0.le(o) } }
    private func u32(_ o: Int) -> UInt32 { bytes.withUnsafeBytes { $0.le(o) } }
    private func range(_ o: Int, _ n: Int) -> [UInt8] { Array(bytes[o..<(o + n)]) }

    public var deviceID: [UInt8] { range(8, 16) }
    public var segmentID: UInt64 { u64(24) }
    public var frameID: UInt64 { u64(32) }
    public var firstMono: UInt64 { u64(40) }
    public var lastMono: UInt64 { u64(48) }
    public var recordCount: UInt32 { u32(56) }
    public var keyEpoch: UInt32 { u32(60) }
    public var keyID: [UInt8] { range(64, 16) }
    public var rollbackCtr: UInt64 { u64(80) }
    public var fwVerHash: [UInt8] { range(88, 32) }
    public var prevHash: [UInt8] { range(120, 32) }
    public var frameHash: [UInt8] { range(152, 32) }
    public var sigAlg: UInt8 { bytes[184] }
    public var sigLen: Int { Int(bytes.withUnsafeBytes { $0.le(186, as: UInt16.self) }) }
    public var reservedZero: Bool { bytes[188..<192].allSatisfy { $0 == 0 } }
    public var storeUUID: [UInt8] { range(192, 16) }
    public var tailSegmentID: UInt64 { u64(208) }
    public var wrapCount: UInt32 { u32(256) }
    public var unexpRst: UInt32 { u32(260) }
    public var bootSeq: UInt32 { u32(276) }
    public var tablesHash: [UInt8] { range(280, 32) }
    public var tailSlot: UInt32 { u32(312) }
    public var ringSlots: UInt32 { u32(316) }
    /// The sealed numbers after the frame (its tables only as their hash).
    public var state: PackedState {
        var s = PackedState()
        s.monoHWM = u64(216)
        s.recordsTotal = u64(224)
        s.lostTotal = u64(232)
        s.droppedTotal = u64(240)
        s.uplinkCursor = u64(248)
        s.boEvent = u32(264)
        s.eccErrCnt = u32(268)
        s.clockSteps = u32(272)
        return s
    }
    public var algorithm: SignatureAlgorithm? { SignatureAlgorithm(rawValue: sigAlg) }
}

/// A format 6 signed head (A.11.1).
public struct FrameHead: Equatable, Sendable {
    public let statement: FrameStatementView
    public let signature: [UInt8]

    public init?(statement: [UInt8], signature: [UInt8]) {
        guard let view = FrameStatementView(statement) else { return nil }
        self.statement = view
        self.signature = signature
    }

    /// The head frame of the store on `device` (A.9 steps 1 and 2), or nil when nothing is committed
    /// or the head is missing.
    public static func of(device: BlockDevice) throws(PackedLogError) -> FrameHead? {
        let history = try PackedHistory.analyze(device: device)
        guard let head = history.headFrame else { return nil }
        return FrameHead(statement: head.frame.statement, signature: head.frame.signature)
    }

    /// One line of JSON, keys in the documented order (without the final newline).
    public var json: String {
        let s = statement
        return "{\"format\":\"edgelog-head\",\"version\":3,\"device_id\":\"\(Hex.encode(s.deviceID))\","
            + "\"store_uuid\":\"\(Hex.encode(s.storeUUID))\",\"segment_id\":\(s.segmentID),\"frame_id\":\(s.frameID),"
            + "\"hash_head\":\"\(Hex.encode(s.frameHash))\",\"rollback_ctr\":\(s.rollbackCtr),\"tail_segment_id\":\(s.tailSegmentID),"
            + "\"key_epoch\":\(s.keyEpoch),\"key_id\":\"\(Hex.encode(s.keyID))\",\"sig_alg\":\"\(s.algorithm?.name ?? "unknown")\","
            + "\"statement\":\"\(Hex.encode(s.bytes))\",\"signature\":\"\(Hex.encode(signature))\"}"
    }

    public var fileBytes: [UInt8] { Array((json + "\n").utf8) }

    /// Parses a version 3 head file exactly: the statement and signature are decoded, the head is
    /// printed again from them, and the file must be those bytes, newline included.
    public static func parse(_ bytes: [UInt8]) throws(SignedHead.Problem) -> FrameHead {
        guard bytes.count <= 4096 else { throw .malformed("\(bytes.count) bytes is too long for one signed head") }
        let line = bytes.last == 0x0A ? Array(bytes.dropLast()) : bytes
        guard !line.contains(0x0A) else { throw .malformed("more than one line: an anchor file holds exactly one signed head") }
        let members: [(key: String, value: FlatJSON.Value)]
        do { members = try FlatJSON.parse(line) } catch { throw .malformed("\(error)") }
        guard let hex = members.string("statement"), let statement = Hex.decode(hex), statement.count == FrameStatement.size,
              let view = FrameStatementView(statement) else {
            throw .malformed("statement must be \(FrameStatement.size) bytes in hex with the EDGESIG3 magic")
        }
        guard let algorithm = view.algorithm, view.sigLen == algorithm.signatureLength, view.reservedZero else {
            throw .malformed("statement has sig_alg \(view.sigAlg) with sig_len \(view.sigLen), or reserved bytes set")
        }
        guard let signatureHex = members.string("signature") else { throw .malformed("no signature") }
        let signature = signatureHex.isEmpty ? [] : (Hex.decode(signatureHex) ?? [0xFF])
        guard signature.count == view.sigLen else { throw .malformed("signature is \(signature.count) bytes; the statement says \(view.sigLen)") }
        guard let head = FrameHead(statement: statement, signature: signature), head.fileBytes == bytes else {
            throw .malformed("the file is not exactly the signed head its statement prints (one line, keys in order, lowercase hex, a final newline)")
        }
        return head
    }

    /// True when one of `keys`, at the statement's key id, epoch and algorithm, verifies the signature.
    public func verifies(with keys: [(key: TrustedKey, epoch: UInt32)]) -> Bool {
        let s = statement
        return s.sigAlg != 0 && keys.contains {
            $0.key.keyID == s.keyID && $0.epoch == s.keyEpoch && $0.key.algorithm.rawValue == s.sigAlg && $0.key.verifies(signature, of: s.bytes)
        }
    }
}

extension FrameHead {
    /// True when the last frame the old key (`oldKey` at `oldEpoch`) signed holds a key_rotation
    /// record endorsing `keyID` (how an interrupted `keys rotate` tells whether its record was
    /// committed, FORMAT.md A.11). Only frames that key signed count: bytes written without it
    /// cannot make a rotation look finished. (Damage to the rotation frame can make it look
    /// unfinished; the pending key is then set aside and that frame's endorsement is never used.)
    public static func endorses(keyID: [UInt8], device: BlockDevice, oldKey: TrustedKey, oldEpoch: UInt32) -> Bool {
        var identity = PackedLog.PackedIdentity(deviceID: [UInt8](repeating: 0, count: 16))
        identity.keyID = oldKey.keyID
        identity.keyEpoch = oldEpoch
        identity.sigAlg = oldKey.algorithm
        identity.verify = { signature, message in oldKey.verifies(signature, of: message) }
        guard let history = try? PackedHistory.analyze(device: device, adopts: PackedLog.adoption(identity)), history.headFrameID > 0,
              let head = history.frame(device: device, id: history.headFrameID),
              head.header.keyID == oldKey.keyID, head.header.keyEpoch == oldEpoch, head.header.sigAlg == oldKey.algorithm,
              oldKey.verifies(head.frame.signature, of: head.frame.statement) else { return false }
        return holdsEndorsement(of: keyID, head.frame.records)
    }

    /// True when the history's head frame holds a key_rotation record endorsing `keyID`: the only
    /// head a writer of that key continues when the head was signed by the key before it. The
    /// caller checks who signed the frame.
    public static func headEndorses(keyID: [UInt8], history: PackedHistory, device: BlockDevice) -> Bool {
        guard history.headFrameID > 0, let head = history.frame(device: device, id: history.headFrameID) else { return false }
        return holdsEndorsement(of: keyID, head.frame.records)
    }

    private static func holdsEndorsement(of keyID: [UInt8], _ records: [PackedRecord]) -> Bool {
        records.contains { record in
            record.type == .keyRotation && record.source == SourceName.engine
                && (try? FlatJSON.parse(record.payload))?.string("new_key_id").flatMap(Hex.decode) == keyID
        }
    }
}

/// A format 6 writer's comparison of a store with its anchor, before it writes anything (A.11.1).
public enum FrameAnchorCheck {
    /// Why the store must not be opened (reason code, detail), or nil when it continues the anchor's history.
    public static func refusal(anchor: FrameHead, history: PackedHistory, device: BlockDevice) -> (reason: String, detail: String)? {
        let a = anchor.statement
        let m = history.metadata
        if a.deviceID != m.deviceID || a.storeUUID != m.storeUUID {
            return ("anchor_mismatch", "the anchor is for device \(Hex.encode(a.deviceID)) store \(Hex.encode(a.storeUUID)), this is device \(Hex.encode(m.deviceID)) store \(Hex.encode(m.storeUUID))")
        }
        let rollbackCtr = max(m.rollbackCtr, history.headFrame?.header.rollbackCtr ?? 0)
        if history.headFrameID < a.frameID || rollbackCtr < a.rollbackCtr {
            return ("rollback", "the store ends at frame \(history.headFrameID) with rollback_ctr \(rollbackCtr); the anchor saw frame \(a.frameID) with rollback_ctr \(a.rollbackCtr): this is an older history")
        }
        if let held = history.frame(device: device, id: a.frameID), held.header.segmentID != a.segmentID || held.frame.statement != a.bytes {
            return ("fork", "frame \(a.frameID) is not the one the anchor saw: the history was rewritten")
        }
        return nil
    }
}
