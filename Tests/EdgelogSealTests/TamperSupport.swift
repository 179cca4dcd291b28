// Building signed stores in memory and forging them the way an attacker would: edit bytes, then
// fix whatever CRCs, hashes or signatures the attacker can fix.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit

let storeUUID: [UInt8] = Array(1...16)
let deviceID: [UInt8] = Array(101...116)
let firmware: [UInt8] = Array(repeating: 0xF1, count: 32)
let segmentSize = 4096

/// A signed store built in memory, with every intermediate image kept for replay attacks.
struct SignedStore {
    var device: MemoryBlockDevice
    var signer: FileSigner
    var trusted: TrustedKey { signer.key.trusted }
    var snapshots: [[UInt8]] = []
    var seals: [SealView] = []

    init(key: PrivateSigningKey = .hmacSHA256(Array(repeating: 0x42, count: 32)), slots: Int = 12, uuid: [UInt8] = storeUUID,
         device id: [UInt8] = deviceID) throws {
        device = MemoryBlockDevice(size: 8192 + slots * segmentSize)
        try EvidenceStore.format(device: device, segmentSize: segmentSize, storeUUID: uuid, deviceID: id, wallNs: 0, force: false)
        signer = FileSigner(key: key, epoch: 1)
    }

    var identity: SealIdentity { SealIdentity(deviceID: deviceID, fwVerHash: firmware, signer: signer) }

    /// One writer session: opens (rollback_ctr + 1), commits `segments` segments of `perSegment` records, closes.
    mutating func session(segments: Int, perSegment: Int = 5, payloads: ((Int) -> [UInt8])? = nil) throws {
        let (store, _) = try EvidenceStore.open(device: device, identity: identity, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        for s in 0..<segments {
            for r in 0..<perSegment {
                let n = s * perSegment + r
                _ = try driver.append(source: "sensor", payload: payloads?(n) ?? Array("{\"n\":\(n)}".utf8))
            }
            if let receipt = try driver.commit(), let seal = receipt.seal { seals.append(seal) }
            snapshots.append(device.bytes)
        }
        try store.close()
    }

    func verify(_ image: [UInt8]? = nil, trusted: [TrustedKey]? = nil, anchor: SealView? = nil, anchorBytes: [UInt8]? = nil,
                firmware allowed: [[UInt8]]? = nil) -> VerifyReport {
        let options = VerifyOptions(trusted: trusted ?? [self.trusted],
                                    anchor: anchorBytes ?? anchor.map { SignedHead(seal: $0).fileBytes },
                                    allowedFirmware: allowed)
        return Verifier.verify(device: MemoryBlockDevice(image: image ?? device.bytes), options: options)
    }
}

/// Byte surgery on a store image, with the repairs an attacker can make.
struct Forge {
    var image: [UInt8]

    static func slotOffset(_ slot: Int) -> Int { 8192 + slot * segmentSize }

    func u32(_ at: Int) -> UInt32 { image.withUnsafeBytes { $0.le(at) } }
    mutating func setU32(_ v: UInt32, at: Int) { image.withUnsafeMutableBytes { $0.setLE(v, at: at) } }
    mutating func setU64(_ v: UInt64, at: Int) { image.withUnsafeMutableBytes { $0.setLE(v, at: at) } }

    func crc(_ range: Range<Int>) -> UInt32 { image.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[range])) } }

    func payloadLength(slot: Int) -> Int { Int(u32(Self.slotOffset(slot) + 60)) }
    func markerOffset(slot: Int) -> Int { Self.slotOffset(slot) + 128 + payloadLength(slot: slot) }

    /// Offsets (absolute) of each record in the segment at `slot`.
    func records(slot: Int) -> [Int] {
        var out: [Int] = []
        var o = Self.slotOffset(slot) + 128
        let end = markerOffset(slot: slot)
        while o < end {
            out.append(o)
            o += Int(u32(o))
        }
        return out
    }

    mutating func fixRecordCRC(at o: Int) {
        let length = Int(u32(o))
        setU32(crc(o..<(o + length - 8)), at: o + length - 8)
    }

    mutating func fixHeaderCRC(slot: Int) {
        let s = Self.slotOffset(slot)
        setU32(crc(s..<(s + 124)), at: s + 124)
    }

    /// body_crc and marker_crc, as an attacker who knows the format recomputes them.
    mutating func fixBodyAndMarker(slot: Int) {
        let s = Self.slotOffset(slot), m = markerOffset(slot: slot)
        setU32(crc(s..<m), at: m + 32)
        setU32(crc(m..<(m + Layout.markerCRCOffset)), at: m + Layout.markerCRCOffset)
    }

    /// Writes the true hash of the (edited) segment into its seal: the signature then no longer matches.
    mutating func resealHash(slot: Int) {
        let s = Self.slotOffset(slot), m = markerOffset(slot: slot)
        let hash = image.withUnsafeBytes { SegmentHash.of(UnsafeRawBufferPointer(rebasing: $0[s..<m])) }
        image.replaceSubrange((m + 40 + 152)..<(m + 40 + 184), with: hash)
        setU32(crc(m..<(m + Layout.markerCRCOffset)), at: m + Layout.markerCRCOffset)
    }

    /// Signs the segment's statement again with `signer` (an attacker holding some key).
    mutating func resign(slot: Int, with signer: FileSigner, epoch: UInt32? = nil) throws {
        let m = markerOffset(slot: slot), st = m + 40
        image.replaceSubrange((st + 64)..<(st + 80), with: signer.keyID)
        image.withUnsafeMutableBytes { $0.setLE(epoch ?? signer.keyEpoch, at: st + 60) }
        image[st + 184] = signer.algorithm.rawValue
        image.withUnsafeMutableBytes { $0.setLE(UInt16(signer.algorithm.signatureLength), at: st + 186) }
        let size = Statement.size
        let statement = Array(image[st..<(st + size)])
        let signature = try statement.withUnsafeBytes { b throws(SigningError) in try signer.sign(b) }
        image.replaceSubrange((st + size)..<(st + size + 64), with: signature + Array(repeating: 0, count: 64 - signature.count))
        setU32(UInt32(size + signature.count), at: m + 36)
        setU32(crc(m..<(m + Layout.markerCRCOffset)), at: m + Layout.markerCRCOffset)
    }

    mutating func fixMetadataCRC(slot: Int) {
        let s = slot * 4096
        setU32(crc(s..<(s + 4092)), at: s + 4092)
    }

    mutating func zeroSlot(_ slot: Int) {
        let s = Self.slotOffset(slot)
        image.replaceSubrange(s..<(s + segmentSize), with: Array(repeating: 0, count: segmentSize))
    }
}

extension VerifyReport {
    var reasonsBySegment: [UInt64: String] {
        Dictionary(uniqueKeysWithValues: segments.map { ($0.segmentID, $0.reason?.rawValue ?? "PASS") })
    }
    var findingReasons: [String] { findings.map(\.reason.rawValue) }
}

/// The key_rotation record (FORMAT.md 4, type 8) by which `old` endorses `next` at epoch 2;
/// `tamper` flips a byte of the endorsed message, as a forger would have to.
func rotationRecord(old: FileSigner, next: PrivateSigningKey, tamper: Bool = false) throws -> EvidenceJSON {
    let der = next.algorithm == .hmacSHA256 ? [] : next.trusted.spkiDER
    var message = Endorsement.bytes(deviceID: deviceID, oldKeyID: old.keyID, oldEpoch: 1, newEpoch: 2,
                                    newAlgorithm: next.algorithm, newKeyID: next.trusted.keyID, newPublicKeyDER: der)
    if tamper { message[50] ^= 1 }
    let endorsement = try message.withUnsafeBytes { b throws(SigningError) in try old.sign(b) }
    var json = EvidenceJSON()
    json.add("old_key_id", .word(Hex.encode(old.keyID)))
    json.add("old_epoch", .uint(1))
    json.add("new_key_id", .word(Hex.encode(next.trusted.keyID)))
    json.add("new_epoch", .uint(2))
    json.add("new_alg", .word(next.algorithm.name))
    json.add("new_public_key", .word(Hex.encode(der)))
    json.add("endorsement", .word(Hex.encode(endorsement)))
    return json
}
