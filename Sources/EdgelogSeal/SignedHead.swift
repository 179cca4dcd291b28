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

    /// One line of JSON, keys in the documented order.
    public var json: String {
        let s = statement
        return "{\"format\":\"edgelog-head\",\"version\":1,\"device_id\":\"\(Hex.encode(s.deviceID))\",\"segment_id\":\(s.segmentID),"
            + "\"commit_id\":\(s.commitID),\"hash_head\":\"\(Hex.encode(s.segmentHash))\",\"rollback_ctr\":\(s.rollbackCtr),"
            + "\"key_epoch\":\(s.keyEpoch),\"key_id\":\"\(Hex.encode(s.keyID))\",\"sig_alg\":\"\(algorithm?.name ?? "unknown")\","
            + "\"statement\":\"\(Hex.encode(statementBytes))\",\"signature\":\"\(Hex.encode(signature))\"}"
    }

    public enum Problem: Error, Equatable, CustomStringConvertible, Sendable {
        /// Not a signed head: bad JSON, wrong sizes, fields that disagree with the statement.
        case malformed(String)
        public var description: String {
            switch self { case .malformed(let why): "not a valid signed head: \(why)" }
        }
    }

    /// Parses a signed head file strictly; every repeated field must equal the statement's.
    public static func parse(_ bytes: [UInt8]) throws(Problem) -> SignedHead {
        guard bytes.count <= 4096 else { throw .malformed("\(bytes.count) bytes is too long") }
        let members: [(key: String, value: FlatJSON.Value)]
        do { members = try FlatJSON.parse(bytes) } catch { throw .malformed("\(error)") }
        guard members.string("format") == "edgelog-head", members.integer("version") == 1 else {
            throw .malformed("format is not edgelog-head version 1")
        }
        guard let statementHex = members.string("statement"), let statementBytes = Hex.decode(statementHex),
              statementBytes.count == Statement.size else { throw .malformed("statement must be \(Statement.size) bytes in hex") }
        guard let statement = statementBytes.withUnsafeBytes({ Statement.decode($0, at: 0) }) else {
            throw .malformed("statement has no EDGESIG1 magic")
        }
        guard let signatureHex = members.string("signature") else { throw .malformed("no signature") }
        let signature = signatureHex.isEmpty ? [] : (Hex.decode(signatureHex) ?? [0xFF])
        guard signature.count == Int(statement.sigLen), signature.count <= Statement.maxSignatureLength,
              statement.algorithm.map({ $0.signatureLength == signature.count }) == true else {
            throw .malformed("signature is \(signature.count) bytes; the statement says \(statement.sigLen)")
        }
        let expected: [(String, FlatJSON.Value)] = [
            ("device_id", .string(Hex.encode(statement.deviceID))), ("segment_id", .integer(statement.segmentID)),
            ("commit_id", .integer(statement.commitID)), ("hash_head", .string(Hex.encode(statement.segmentHash))),
            ("rollback_ctr", .integer(statement.rollbackCtr)), ("key_epoch", .integer(UInt64(statement.keyEpoch))),
            ("key_id", .string(Hex.encode(statement.keyID))),
            ("sig_alg", .string(statement.algorithm?.name ?? "unknown")),
        ]
        for (key, value) in expected {
            guard let found = members.first(where: { $0.key == key })?.value else { throw .malformed("missing \(key)") }
            // Hex may come in either case from another tool; compare it lowercased.
            if case .string(let text) = found, case .string(let want) = value {
                guard text.lowercased() == want else { throw .malformed("\(key) disagrees with the statement") }
            } else if found != value {
                throw .malformed("\(key) disagrees with the statement")
            }
        }
        return SignedHead(seal: SealView(statement: statement, statementBytes: statementBytes, signature: signature))
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
