// The signed head (docs/FORMAT.md section 8): the newest commit's statement and signature, printed
// by `edgelog head`, kept by the collector and mirrored to the anchor file. Printing it needs no
// key; checking it needs a trusted key.

import EdgelogCore
import EdgelogStore

public struct SignedHead: Equatable, Sendable {
    public var statement: Statement
    public var statementBytes: [UInt8]
    public var signature: [UInt8]

    public init(seal: SealView) {
        statement = seal.statement
        statementBytes = seal.statementBytes
        signature = seal.signature
    }

    public var algorithm: SignatureAlgorithm? { statement.algorithm }

    /// One line of JSON, keys in the documented order (without the final newline).
    public var json: String {
        let s = statement
        return "{\"format\":\"edgelog-head\",\"version\":2,\"device_id\":\"\(Hex.encode(s.deviceID))\","
            + "\"store_uuid\":\"\(Hex.encode(s.sealed.storeUUID))\",\"segment_id\":\(s.segmentID),"
            + "\"commit_id\":\(s.commitID),\"hash_head\":\"\(Hex.encode(s.segmentHash))\",\"rollback_ctr\":\(s.rollbackCtr),"
            + "\"tail_segment_id\":\(s.sealed.tailSegmentID),"
            + "\"key_epoch\":\(s.keyEpoch),\"key_id\":\"\(Hex.encode(s.keyID))\",\"sig_alg\":\"\(algorithm?.name ?? "unknown")\","
            + "\"statement\":\"\(Hex.encode(statementBytes))\",\"signature\":\"\(Hex.encode(signature))\"}"
    }

    /// The exact bytes of a signed head file (FORMAT.md section 8): the line and its newline.
    public var fileBytes: [UInt8] { Array((json + "\n").utf8) }

    public enum Problem: Error, Equatable, CustomStringConvertible {
        /// Not a signed head: bad JSON, wrong sizes, fields that disagree with the statement.
        case malformed(String)
        public var description: String {
            switch self { case .malformed(let why): "not a valid signed head: \(why)" }
        }
    }

    /// Parses a signed head file exactly (FORMAT.md 8): the statement and signature are decoded,
    /// the head is printed again from them, and the file must be those bytes, newline included.
    /// No other key is interpreted on its own, so both verifiers read any file the same way.
    public static func parse(_ bytes: [UInt8]) throws(Problem) -> SignedHead {
        guard bytes.count <= 4096 else { throw .malformed("\(bytes.count) bytes is too long for one signed head") }
        let members: [(key: String, value: FlatJSON.Value)]
        let line = bytes.last == 0x0A ? Array(bytes.dropLast()) : bytes
        guard !line.contains(0x0A) else { throw .malformed("more than one line: an anchor file holds exactly one signed head") }
        do { members = try FlatJSON.parse(line) } catch { throw .malformed("\(error)") }
        guard let statementHex = members.string("statement"), let statementBytes = Hex.decode(statementHex),
              statementBytes.count == Statement.size else { throw .malformed("statement must be \(Statement.size) bytes in hex") }
        guard let statement = statementBytes.withUnsafeBytes({ Statement.decode($0, at: 0) }) else {
            throw .malformed("statement has no EDGESIG2 magic")
        }
        guard let algorithm = statement.algorithm, Int(statement.sigLen) == algorithm.signatureLength else {
            throw .malformed("statement has sig_alg \(statement.sigAlg) with sig_len \(statement.sigLen)")
        }
        guard let signatureHex = members.string("signature") else { throw .malformed("no signature") }
        let signature = signatureHex.isEmpty ? [] : (Hex.decode(signatureHex) ?? [0xFF])
        guard signature.count == Int(statement.sigLen) else {
            throw .malformed("signature is \(signature.count) bytes; the statement says \(statement.sigLen)")
        }
        let head = SignedHead(seal: SealView(statement: statement, statementBytes: statementBytes, signature: signature))
        guard head.fileBytes == bytes else {
            throw .malformed("the file is not exactly the signed head its statement prints (one line, keys in order, lowercase hex, a final newline)")
        }
        return head
    }

    /// True when a trusted key of the statement's key id and algorithm verifies the signature.
    public func verifies(with keys: [TrustedKey]) -> Bool {
        guard let algorithm, algorithm != .unsigned else { return false }
        return keys.contains { $0.algorithm == algorithm && $0.keyID == statement.keyID && $0.verifies(signature, of: statementBytes) }
    }
}

/// The 104 bytes a key rotation's endorsement signs (FORMAT.md section 4, type 8).
public enum Endorsement {
    public static let magic = magic64("EDGEROT1")
    public static let size = 104

    public static func bytes(deviceID: [UInt8], oldKeyID: [UInt8], oldEpoch: UInt32, newEpoch: UInt32,
                             newAlgorithm: SignatureAlgorithm, newKeyID: [UInt8], newPublicKeyDER: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        out.withUnsafeMutableBytes { b in
            b.setLE(magic, at: 0)
            deviceID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 8) }
            oldKeyID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 24) }
            b.setLE(oldEpoch, at: 40)
            b.setLE(newEpoch, at: 44)
            b.setLE(newAlgorithm.rawValue, at: 48)
            newKeyID.prefix(16).withUnsafeBytes { b.setBytes($0, at: 56) }
            if !newPublicKeyDER.isEmpty {
                newPublicKeyDER.withUnsafeBytes { SegmentHash.of($0).withUnsafeBytes { h in b.setBytes(h, at: 72) } }
            }
        }
        return out
    }
}
