// The seal of a segment (docs/FORMAT.md section 3.5): its SHA-256, the statement that binds the
// hash to the device, the key and the firmware, and the signature over that statement. The store
// builds and checks the structure; who signs (a key file today, a secure element later) is behind
// SegmentSigner, implemented in EdgelogSeal.

import Crypto
import EdgelogCore

public enum SignatureAlgorithm: UInt8, CaseIterable, Sendable {
    case unsigned = 0
    case ed25519 = 1
    case ecdsaP256 = 2
    case hmacSHA256 = 3

    /// The name in key.json, the signed head and reports.
    public var name: String {
        switch self {
        case .unsigned: "unsigned"
        case .ed25519: "ed25519"
        case .ecdsaP256: "ecdsa-p256"
        case .hmacSHA256: "hmac-sha256"
        }
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    public var signatureLength: Int {
        switch self {
        case .unsigned: 0
        case .ed25519, .ecdsaP256: 64
        case .hmacSHA256: 32
        }
    }
}

/// Where the signing key lives (recorded so an auditor can weigh the signature).
public enum KeySource: UInt8, CaseIterable, Sendable {
    case none = 0
    case file = 1
    case secureElement = 2
    case pkcs11 = 3

    public var name: String {
        switch self {
        case .none: "none"
        case .file: "file"
        case .secureElement: "secure-element"
        case .pkcs11: "pkcs11"
        }
    }
}

public struct SigningError: Error, Equatable, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "signing failed: \(message)" }
}

/// Signs statements for the writer. A secure element or PKCS#11 token fits behind the same shape.
public protocol SegmentSigner: AnyObject, Sendable {
    var algorithm: SignatureAlgorithm { get }
    var keySource: KeySource { get }
    /// 16 bytes (FORMAT.md 3.5).
    var keyID: [UInt8] { get }
    var keyEpoch: UInt32 { get }
    /// The signature of `message` (signatureLength bytes of `algorithm`). A format 6 writer may call
    /// it from its staging thread (PackedLog.stage) as well as its own: one call at a time, unless
    /// `signsConcurrently`.
    func sign(_ message: UnsafeRawBufferPointer) throws(SigningError) -> [UInt8]
    /// Whether `sign` may run on two threads at once. A token or secure element on a bus takes one
    /// request at a time: false (the default), and the writer's calls wait for the staging
    /// thread's. A key in memory that signing only reads: true, so that a staging thread whose CPU
    /// is taken in the middle of a signature does not hold up the writer, which builds that frame
    /// itself when the thread is overdue with it (StagingThread.Handover).
    var signsConcurrently: Bool { get }
    /// True when `signature` is this key's signature of `message`: recovery adopts a segment the
    /// writer's own commit left behind only if it carries this key's signature (DESIGN.md 9c).
    func verifies(_ signature: [UInt8], of message: [UInt8]) -> Bool
}

extension SegmentSigner {
    public var signsConcurrently: Bool { false }
}

/// What every seal of a writer session repeats.
public struct SealIdentity: Sendable {
    public var deviceID: [UInt8]
    public var fwVerHash: [UInt8]
    public var signer: (any SegmentSigner)?
    /// Format 6: whether a signature over a statement is by a key this signer succeeds (a key it
    /// rotated from: key id, epoch, sig_alg, signature, statement). A signing writer continues
    /// only from a head frame its own key or such a predecessor signed.
    public var predecessorVerifies: (@Sendable ([UInt8], UInt32, UInt8, [UInt8], [UInt8]) -> Bool)?

    public init(deviceID: [UInt8], fwVerHash: [UInt8], signer: (any SegmentSigner)?) {
        self.deviceID = deviceID
        self.fwVerHash = fwVerHash
        self.signer = signer
    }

    /// For tests and tools that write unsigned stores.
    public static func unsigned(deviceID: [UInt8] = [UInt8](repeating: 0, count: 16)) -> SealIdentity {
        SealIdentity(deviceID: deviceID, fwVerHash: [UInt8](repeating: 0, count: 32), signer: nil)
    }
}

/// The evidence state a commit's metadata write carries, signed in its statement (FORMAT.md 3.5,
/// offsets 192..319): the numbers an auditor or the writer relies on, so that the unsigned metadata
/// slot is only believed where it agrees with its head segment's seal.
public struct SealedState: Equatable, Sendable {
    public var storeUUID = [UInt8](repeating: 0, count: 16)
    public var tailSegmentID: UInt64 = 0
    public var monoHWM: UInt64 = 0
    public var recordsTotal: UInt64 = 0
    public var lostTotal: UInt64 = 0
    public var droppedTotal: UInt64 = 0
    public var uplinkCursor: UInt64 = 0
    public var wrapCount: UInt32 = 0
    public var unexpRst: UInt32 = 0
    public var boEvent: UInt32 = 0
    public var eccErrCnt: UInt32 = 0
    public var clockSteps: UInt32 = 0
    public var bootSeq: UInt32 = 0
    /// SHA-256 of the bad-block and source tables as the metadata holds them (Metadata.tablesHash).
    public var tablesHash = [UInt8](repeating: 0, count: 32)
    /// Where the oldest retained segment sits, and the ring's size: what makes the ring full.
    public var tailSlot: UInt32 = 0
    public var ringSlots: UInt32 = 0

    public init() {}
}

/// The 320 signed bytes of a seal, as fields.
public struct Statement: Equatable, Sendable {
    public static let size = 320
    public static let magic = magic64("EDGESIG2")
    /// Where the seal starts inside the commit marker.
    public static let markerOffset = 40
    public static let maxSignatureLength = 64

    public var deviceID = [UInt8](repeating: 0, count: 16)
    public var segmentID: UInt64 = 0
    public var commitID: UInt64 = 0
    public var firstMono: UInt64 = 0
    public var lastMono: UInt64 = 0
    public var recordCount: UInt32 = 0
    public var keyEpoch: UInt32 = 0
    public var keyID = [UInt8](repeating: 0, count: 16)
    public var rollbackCtr: UInt64 = 0
    public var fwVerHash = [UInt8](repeating: 0, count: 32)
    public var prevHash = [UInt8](repeating: 0, count: 32)
    public var segmentHash = [UInt8](repeating: 0, count: 32)
    public var sigAlg: UInt8 = 0
    public var keySrc: UInt8 = 0
    public var sigLen: UInt16 = 0
    public var sealed = SealedState()

    public init() {}

    /// Writes the 320 bytes at `o` of `b`.
    public func encode(into b: UnsafeMutableRawBufferPointer, at o: Int) {
        b.zero(o..<(o + Self.size))
        b.setLE(Self.magic, at: o)
        deviceID.withUnsafeBytes { b.setBytes($0, at: o + 8) }
        b.setLE(segmentID, at: o + 24)
        b.setLE(commitID, at: o + 32)
        b.setLE(firstMono, at: o + 40)
        b.setLE(lastMono, at: o + 48)
        b.setLE(recordCount, at: o + 56)
        b.setLE(keyEpoch, at: o + 60)
        keyID.withUnsafeBytes { b.setBytes($0, at: o + 64) }
        b.setLE(rollbackCtr, at: o + 80)
        fwVerHash.withUnsafeBytes { b.setBytes($0, at: o + 88) }
        prevHash.withUnsafeBytes { b.setBytes($0, at: o + 120) }
        segmentHash.withUnsafeBytes { b.setBytes($0, at: o + 152) }
        b.setLE(sigAlg, at: o + 184)
        b.setLE(keySrc, at: o + 185)
        b.setLE(sigLen, at: o + 186)
        let t = sealed
        t.storeUUID.prefix(16).withUnsafeBytes { b.setBytes($0, at: o + 192) }
        b.setLE(t.tailSegmentID, at: o + 208)
        b.setLE(t.monoHWM, at: o + 216)
        b.setLE(t.recordsTotal, at: o + 224)
        b.setLE(t.lostTotal, at: o + 232)
        b.setLE(t.droppedTotal, at: o + 240)
        b.setLE(t.uplinkCursor, at: o + 248)
        b.setLE(t.wrapCount, at: o + 256)
        b.setLE(t.unexpRst, at: o + 260)
        b.setLE(t.boEvent, at: o + 264)
        b.setLE(t.eccErrCnt, at: o + 268)
        b.setLE(t.clockSteps, at: o + 272)
        b.setLE(t.bootSeq, at: o + 276)
        t.tablesHash.prefix(32).withUnsafeBytes { b.setBytes($0, at: o + 280) }
        b.setLE(t.tailSlot, at: o + 312)
        b.setLE(t.ringSlots, at: o + 316)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        out.withUnsafeMutableBytes { encode(into: $0, at: 0) }
        return out
    }

    /// Parses 320 bytes at `o`; nil when the magic is not there.
    public static func decode(_ b: UnsafeRawBufferPointer, at o: Int) -> Statement? {
        guard o >= 0, b.count - o >= size, b.le(o, as: UInt64.self) == magic else { return nil }
        var s = Statement()
        s.deviceID = Array(b[(o + 8)..<(o + 24)])
        s.segmentID = b.le(o + 24)
        s.commitID = b.le(o + 32)
        s.firstMono = b.le(o + 40)
        s.lastMono = b.le(o + 48)
        s.recordCount = b.le(o + 56)
        s.keyEpoch = b.le(o + 60)
        s.keyID = Array(b[(o + 64)..<(o + 80)])
        s.rollbackCtr = b.le(o + 80)
        s.fwVerHash = Array(b[(o + 88)..<(o + 120)])
        s.prevHash = Array(b[(o + 120)..<(o + 152)])
        s.segmentHash = Array(b[(o + 152)..<(o + 184)])
        s.sigAlg = b[o + 184]
        s.keySrc = b[o + 185]
        s.sigLen = b.le(o + 186)
        s.sealed.storeUUID = Array(b[(o + 192)..<(o + 208)])
        s.sealed.tailSegmentID = b.le(o + 208)
        s.sealed.monoHWM = b.le(o + 216)
        s.sealed.recordsTotal = b.le(o + 224)
        s.sealed.lostTotal = b.le(o + 232)
        s.sealed.droppedTotal = b.le(o + 240)
        s.sealed.uplinkCursor = b.le(o + 248)
        s.sealed.wrapCount = b.le(o + 256)
        s.sealed.unexpRst = b.le(o + 260)
        s.sealed.boEvent = b.le(o + 264)
        s.sealed.eccErrCnt = b.le(o + 268)
        s.sealed.clockSteps = b.le(o + 272)
        s.sealed.bootSeq = b.le(o + 276)
        s.sealed.tablesHash = Array(b[(o + 280)..<(o + 312)])
        s.sealed.tailSlot = b.le(o + 312)
        s.sealed.ringSlots = b.le(o + 316)
        return s
    }

    public var algorithm: SignatureAlgorithm? { SignatureAlgorithm(rawValue: sigAlg) }
}

/// A seal read back from a commit marker.
public struct SealView: Equatable, Sendable {
    public var statement: Statement
    public var statementBytes: [UInt8]
    public var signature: [UInt8]

    public init(statement: Statement, statementBytes: [UInt8], signature: [UInt8]) {
        self.statement = statement
        self.statementBytes = statementBytes
        self.signature = signature
    }
}

public enum SegmentHash {
    public static let zero = [UInt8](repeating: 0, count: 32)

    /// SHA-256 of the bytes (header and records of a segment).
    public static func of(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bufferPointer: bytes)
        return Array(hasher.finalize())
    }
}
