// The verifier (docs/FORMAT.md section 9): a verdict per committed segment that says whether it is
// intact, chained, signed by a trusted key and current, and if not, exactly what is wrong, plus the
// store-level findings (metadata, head, anchor) and the notes that explain power cuts and overwrites.
// Read-only: it never writes the device.

import EdgelogCore
import EdgelogStore

public enum VerifyReason: String, CaseIterable, Sendable {
    case crcMismatch = "crc_mismatch"
    case hashMismatch = "hash_mismatch"
    case chainBreak = "chain_break"
    case badSignature = "bad_signature"
    case unknownKey = "unknown_key"
    case rollback
    case fork
    case fwNotAllowed = "fw_not_allowed"
    case truncatedTail = "truncated_tail"
    case gap
    case reordered
    case foreignSegment = "foreign_segment"
    case sealMismatch = "seal_mismatch"
    case unsigned
    case anchorMalformed = "anchor_malformed"
    case anchorBadSignature = "anchor_bad_signature"
    case notAStore = "not_a_store"
}

public struct SegmentVerdict: Equatable, Sendable {
    public var segmentID: UInt64
    public var slot: Int
    public var offset: UInt64
    public var reason: VerifyReason?
    public var keyEpoch: UInt32
    public var detail: String
    public var passed: Bool { reason == nil }
}

public struct Finding: Equatable, Sendable {
    public var reason: VerifyReason
    public var offset: UInt64
    public var detail: String
}

public struct Note: Equatable, Sendable {
    public var note: String
    public var segmentID: UInt64
    public var detail: String
}

public struct VerifyReport: Sendable {
    public var segments: [SegmentVerdict] = []
    public var findings: [Finding] = []
    public var notes: [Note] = []
    /// The algorithm of the newest signed segment ("unsigned" when none is signed).
    public var sigAlg: SignatureAlgorithm = .unsigned

    public var failedSegments: Int { segments.filter { !$0.passed }.count }
    public var reasons: [String] {
        Array(Set(segments.compactMap { $0.reason?.rawValue } + findings.map(\.reason.rawValue))).sorted()
    }
    public var passed: Bool { failedSegments == 0 && findings.isEmpty }
}

public struct VerifyOptions: Sendable {
    public var trusted: [TrustedKey]
    /// Epochs of trusted keys given with one (a key directory's key.json); the others are epoch 1.
    public var epochs: [[UInt8]: UInt32] = [:]
    /// The anchor file's bytes, if one was given.
    public var anchor: [UInt8]?
    /// SHA-256 hashes of the allowed executables; nil allows any.
    public var allowedFirmware: [[UInt8]]?
    public var allowUnsigned: Bool

    public init(trusted: [TrustedKey], anchor: [UInt8]? = nil, allowedFirmware: [[UInt8]]? = nil, allowUnsigned: Bool = false) {
        self.trusted = trusted
        self.anchor = anchor
        self.allowedFirmware = allowedFirmware
        self.allowUnsigned = allowUnsigned
    }
}

public enum Verifier {
    /// Verifies the store on `device`. `progress` is called with (segments done, segments in all).
    public static func verify(device: BlockDevice, options: VerifyOptions,
                              progress: ((UInt64, UInt64) -> Void)? = nil) -> VerifyReport {
        var report = VerifyReport()
        let analysis: StoreAnalysis
        do { analysis = try EvidenceStore.analyze(device: device) } catch {
            // Each invalid slot is a finding as in a readable store (FORMAT.md 9 item 1), then the verdict.
            switch error {
            case .notAStore, .truncated: report.findings += invalidSlots(device)
            default: break
            }
            report.findings.append(Finding(reason: .notAStore, offset: 0, detail: error.description))
            return report
        }
        let state = analysis.state
        let geometry = state.geometry

        // 1. Metadata slots. A torn metadata write is what a power cut leaves until the next open.
        for (slot, problem) in analysis.slotProblems {
            let offset = Layout.metadataSlotOffsets[slot]
            if analysis.uncleanShutdown {
                report.notes.append(Note(note: "torn_metadata_write", segmentID: 0,
                                         detail: "metadata slot \(Layout.slotName(slot)) is invalid (\(problem)); the store was not closed, so a cut metadata write may explain it"))
            } else {
                report.findings.append(Finding(reason: .crcMismatch, offset: offset,
                                               detail: "metadata slot \(Layout.slotName(slot)) is invalid: \(problem)"))
            }
        }

        // Keys active so far: every trusted key at its given epoch (1 unless a key directory says
        // otherwise); rotations add the keys they endorse and retire the old ones.
        var active: [(key: TrustedKey, epoch: UInt32)] = options.trusted.map { ($0, options.epochs[$0.keyID] ?? 1) }
        let buffer = AlignedBuffer(count: geometry.segmentSize)
        var previousHash: [UInt8]?
        var previousCtr: UInt64?
        var newestCtr: UInt64 = 0
        var verifiedHashes: [UInt64: [UInt8]] = [:]
        var headHashChecked: [UInt8]?

        if state.tailSegmentID > 1 && !state.ringIsEmpty {
            report.notes.append(Note(note: "not_retained", segmentID: state.tailSegmentID - 1,
                                     detail: "segments 1 to \(state.tailSegmentID - 1) are no longer in the ring; gap records name the overwritten ones"))
        }

        let total = state.segmentCount
        var slot = state.tailSlot
        var expected = state.tailSegmentID
        var done: UInt64 = 0
        while !state.ringIsEmpty && expected <= state.headSegmentID {
            let offset = geometry.slotOffset(slot)
            var verdict = SegmentVerdict(segmentID: expected, slot: slot, offset: offset, reason: nil, keyEpoch: 0, detail: "")
            var claimedHash: [UInt8]?
            var computed: [UInt8]?
            do {
                try device.read(at: offset, into: buffer.bytes)
                let image = UnsafeRawBufferPointer(buffer.bytes)
                let checked = check(image, slot: slot, expected: expected, state: state, options: options, active: &active,
                                    previousHash: previousHash, previousCtr: previousCtr, verdict: &verdict, report: &report)
                claimedHash = checked.claimed
                computed = checked.computed
                if let ctr = checked.rollbackCtr {
                    previousCtr = ctr
                    newestCtr = max(newestCtr, ctr)
                }
            } catch {
                verdict.reason = .crcMismatch
                verdict.detail = "unreadable: \(error)"
            }
            report.segments.append(verdict)
            if verdict.passed, let computed {
                verifiedHashes[expected] = computed
                previousHash = computed
            } else {
                // One damaged segment fails once: the next is chained to what this one claimed.
                previousHash = claimedHash
            }
            if expected == state.headSegmentID { headHashChecked = verdict.reason == .hashMismatch ? nil : computed }
            done += 1
            progress?(done, total)
            expected += 1
            guard let next = state.nextSlot(after: slot) else { break }
            slot = next
        }

        // 3. The head.
        if analysis.headMissing {
            report.findings.append(Finding(reason: .truncatedTail, offset: geometry.slotOffset(state.headSlot),
                                           detail: "the metadata names segment \(state.headSegmentID) as committed but neither slot's head segment is there"))
        } else if let head = headHashChecked, head != state.hashHead {
            report.findings.append(Finding(reason: .hashMismatch, offset: Layout.metadataSlotOffsets[analysis.chosenSlot] + 192,
                                           detail: "hash_head of metadata slot \(Layout.slotName(analysis.chosenSlot)) is not the hash of head segment \(state.headSegmentID)"))
        }
        // 4. Power cuts.
        if let torn = analysis.torn {
            report.notes.append(Note(note: "torn_tail_power_cut", segmentID: torn.segmentID,
                                     detail: "segment \(torn.segmentID) in slot \(torn.slot) was being written when the power went (\(torn.reason)); it was never committed"))
        }

        // 5. The anchor.
        if let anchorBytes = options.anchor {
            // The metadata's counter counts too: a store whose newest segments were cut away still
            // says which session it is in (the anchor check then names the truncation, not a rollback).
            checkAnchor(anchorBytes, state: state, newestCtr: max(newestCtr, state.rollbackCtr), verifiedHashes: verifiedHashes,
                        device: device, trusted: active.map(\.key), allowUnsigned: options.allowUnsigned,
                        report: &report)
        }
        return report
    }

    private struct Checked {
        var claimed: [UInt8]?
        var computed: [UInt8]?
        var rollbackCtr: UInt64?
    }

    /// Classifies one slot's segment (FORMAT.md 9.2); the first reason that applies wins.
    private static func check(_ image: UnsafeRawBufferPointer, slot: Int, expected: UInt64, state: Metadata, options: VerifyOptions,
                              active: inout [(key: TrustedKey, epoch: UInt32)], previousHash: [UInt8]?, previousCtr: UInt64?,
                              verdict: inout SegmentVerdict, report: inout VerifyReport) -> Checked {
        let geometry = state.geometry
        let offset = geometry.slotOffset(slot)
        func fail(_ reason: VerifyReason, _ detail: String, at: UInt64? = nil) {
            verdict.reason = reason
            verdict.detail = detail
            if let at { verdict.offset = at }
        }
        guard image.le(0, as: UInt64.self) == Layout.segmentMagic else {
            fail(.gap, "no segment in slot \(slot): segment \(expected) is missing")
            return Checked()
        }
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: image[0..<124])) == image.le(124, as: UInt32.self),
              image.le(8, as: UInt16.self) == Layout.formatVersion,
              image.le(10, as: UInt16.self) == UInt16(Layout.segmentHeaderSize) else {
            fail(.crcMismatch, "segment header in slot \(slot) does not check")
            return Checked()
        }
        let headerID: UInt64 = image.le(32)
        let headerSlot = Int(image.le(48, as: UInt32.self))
        // Structure before identity (FORMAT.md 9): the segment is checked against its own header's
        // id, slot and store first, so a broken segment is crc_mismatch wherever it sits.
        let info: SegmentInfo
        do {
            info = try SegmentReader.validate(image, slot: headerSlot, expectedID: headerID, geometry: geometry,
                                              storeUUID: Array(image[16..<32]), sealRequired: false)
        } catch {
            fail(.crcMismatch, "\(error)", at: offset + UInt64(firstBadByte(image, geometry: geometry)))
            return Checked()
        }
        guard image[16..<32].elementsEqual(state.storeUUID) else {
            fail(.foreignSegment, "slot \(slot) holds a segment of another store")
            return Checked()
        }
        if headerSlot != slot {
            fail(.reordered, "slot \(slot) holds segment \(headerID), written for slot \(headerSlot)")
            return Checked()
        }
        if headerID != expected {
            fail(headerID > expected ? .gap : .chainBreak,
                 headerID > expected ? "segment \(expected) is missing: slot \(slot) holds segment \(headerID)"
                                     : "slot \(slot) holds older segment \(headerID) where \(expected) belongs")
            return Checked()
        }
        let markerAt = Layout.segmentHeaderSize + info.payloadLength
        guard let seal = info.seal else {
            // Parsed again only to say what is wrong with it.
            var why = "malformed seal"
            do { _ = try SegmentReader.seal(image, markerAt: markerAt, info: info) } catch { why = "\(error)" }
            fail(.sealMismatch, why, at: offset + UInt64(markerAt))
            return Checked()
        }
        let statement = seal.statement
        verdict.keyEpoch = statement.keyEpoch
        let result = Checked(claimed: statement.segmentHash, computed: SegmentReader.computedHash(image, info: info),
                             rollbackCtr: statement.rollbackCtr)
        let markerOffset = offset + UInt64(Layout.segmentHeaderSize + info.payloadLength)
        if statement.deviceID != state.deviceID {
            fail(.foreignSegment, "sealed for device \(Hex.encode(statement.deviceID)), not \(Hex.encode(state.deviceID))", at: markerOffset)
            return result
        }
        if result.computed != statement.segmentHash {
            fail(.hashMismatch, "the header and records do not hash to the sealed segment_hash")
            return result
        }
        if expected == 1 ? info.prevHash != SegmentHash.zero : (previousHash.map { $0 != info.prevHash } ?? false) {
            fail(.chainBreak, "prev_hash is not the hash of segment \(expected - 1)")
            return result
        }
        if statement.sigAlg == SignatureAlgorithm.unsigned.rawValue {
            if !options.allowUnsigned {
                fail(.unsigned, "the segment is not signed (hash chain only)", at: markerOffset)
                return result
            }
        } else {
            guard let entry = active.first(where: { $0.key.keyID == statement.keyID }), entry.epoch == statement.keyEpoch else {
                fail(.unknownKey, "signed by key \(Hex.encode(statement.keyID)) epoch \(statement.keyEpoch), which no trusted key or endorsed rotation names", at: markerOffset)
                return result
            }
            guard entry.key.algorithm.rawValue == statement.sigAlg, entry.key.verifies(seal.signature, of: seal.statementBytes) else {
                fail(.badSignature, "the signature does not verify with key \(Hex.encode(statement.keyID))", at: markerOffset)
                return result
            }
            report.sigAlg = entry.key.algorithm
        }
        if let allowed = options.allowedFirmware, !allowed.contains(statement.fwVerHash) {
            fail(.fwNotAllowed, "written by firmware \(Hex.encode(statement.fwVerHash)), not in the allowed list", at: markerOffset)
            return result
        }
        if let previousCtr, statement.rollbackCtr < previousCtr {
            fail(.rollback, "rollback_ctr \(statement.rollbackCtr) is below the previous segment's \(previousCtr)", at: markerOffset)
            return result
        }
        // Evidence records: rotations take effect after this segment; the rest become notes.
        var rotationFailed: String?
        SegmentReader.forEachRecord(image, info: info) { record in
            switch record.type {
            case .keyRotation:
                if let why = applyRotation(record, statement: statement, state: state, options: options, active: &active) {
                    rotationFailed = why
                }
            case .incomplete, .recovery:
                // Recovery's own account of a power cut or an unclean stop (FORMAT.md 9 item 4).
                report.notes.append(Note(note: "power_cut_explained", segmentID: expected,
                                         detail: String(decoding: record.payload, as: UTF8.self)))
            case .gap:
                let payload = String(decoding: record.payload, as: UTF8.self)
                report.notes.append(Note(note: payload.contains("\"tail_unreadable\"") ? "tail_unreadable" : "ring_overwrite",
                                         segmentID: expected, detail: payload))
            default:
                break
            }
        }
        if let rotationFailed {
            fail(.badSignature, rotationFailed, at: markerOffset)
        }
        return result
    }

    /// Adds the key a rotation record endorses; the reason it does not, if it does not.
    private static func applyRotation(_ record: RecordView, statement: Statement, state: Metadata, options: VerifyOptions,
                                      active: inout [(key: TrustedKey, epoch: UInt32)]) -> String? {
        let members: [(key: String, value: FlatJSON.Value)]
        do { members = try FlatJSON.parse(Array(record.payload)) } catch { return "key rotation record is malformed: \(error)" }
        guard let oldID = members.string("old_key_id").flatMap(Hex.decode), let oldEpoch = members.integer("old_epoch"),
              let newID = members.string("new_key_id").flatMap(Hex.decode), let newEpoch = members.integer("new_epoch"),
              let algName = members.string("new_alg"), let newAlg = SignatureAlgorithm(name: algName), newAlg != .unsigned,
              let publicHex = members.string("new_public_key"), let endorsement = members.string("endorsement").flatMap(Hex.decode),
              oldEpoch <= UInt64(UInt32.max), newEpoch <= UInt64(UInt32.max)
        else { return "key rotation record lacks a field" }
        guard oldID == statement.keyID, UInt32(oldEpoch) == statement.keyEpoch, newEpoch == oldEpoch + 1 else {
            return "key rotation record is not from the key that signed its segment"
        }
        guard let signer = active.first(where: { $0.key.keyID == oldID })?.key else { return "key rotation from an unknown key" }
        let newKey: TrustedKey
        if newAlg == .hmacSHA256 {
            // A new HMAC secret cannot be published: the verifier must have been given it.
            guard let given = options.trusted.first(where: { $0.keyID == newID }) else {
                return "key rotation endorses HMAC key \(Hex.encode(newID)), which was not given with --trust"
            }
            newKey = given
        } else {
            guard let der = Hex.decode(publicHex),
                  let parsed = try? TrustedKey.parse(PEM.encode(type: "PUBLIC KEY", der: der), what: "rotation key"),
                  parsed.algorithm == newAlg, parsed.keyID == newID else { return "key rotation names a public key that does not match its key id" }
            newKey = parsed
        }
        let message = Endorsement.bytes(deviceID: state.deviceID, oldKeyID: oldID, oldEpoch: UInt32(oldEpoch),
                                        newEpoch: UInt32(newEpoch), newAlgorithm: newAlg, newKeyID: newID,
                                        newPublicKeyDER: newAlg == .hmacSHA256 ? [] : newKey.spkiDER)
        guard signer.verifies(endorsement, of: message) else { return "key rotation endorsement does not verify" }
        // The old key signs nothing after its rotation: a retired key may be the compromised one.
        active.removeAll { $0.key.keyID == newID || $0.key.keyID == oldID }
        active.append((newKey, UInt32(newEpoch)))
        return nil
    }

    private static func checkAnchor(_ bytes: [UInt8], state: Metadata, newestCtr: UInt64, verifiedHashes: [UInt64: [UInt8]],
                                    device: BlockDevice, trusted: [TrustedKey], allowUnsigned: Bool,
                                    report: inout VerifyReport) {
        let head: SignedHead
        do { head = try SignedHead.parse(bytes) } catch {
            report.findings.append(Finding(reason: .anchorMalformed, offset: 0, detail: error.description))
            return
        }
        // An unsigned store's head has nothing to verify; it is accepted only where unsigned segments are.
        let unsignedAccepted = allowUnsigned && head.algorithm == .unsigned
        guard unsignedAccepted || head.verifies(with: trusted) else {
            report.findings.append(Finding(reason: .anchorBadSignature, offset: 0,
                                           detail: "the anchor's signature does not verify with a trusted key"))
            return
        }
        let a = head.statement
        if a.deviceID != state.deviceID {
            report.findings.append(Finding(reason: .foreignSegment, offset: 0, detail: "the anchor is for device \(Hex.encode(a.deviceID))"))
        } else if newestCtr < a.rollbackCtr {
            report.findings.append(Finding(reason: .rollback, offset: 0,
                                           detail: "the store's rollback_ctr \(newestCtr) is below the anchor's \(a.rollbackCtr): an older history"))
        } else if state.ringIsEmpty || state.headSegmentID < a.segmentID {
            report.findings.append(Finding(reason: .truncatedTail, offset: 0,
                                           detail: "the store ends at segment \(state.ringIsEmpty ? 0 : state.headSegmentID); the anchor proves segment \(a.segmentID) was committed"))
        } else if a.segmentID >= state.tailSegmentID {
            // An unreadable anchor segment already fails as itself (gap, crc_mismatch): no hash to compare.
            if let stored = verifiedHashes[a.segmentID] ?? StoreHead.seal(of: a.segmentID, state: state, device: device)?.statement.segmentHash,
               stored != a.segmentHash {
                report.findings.append(Finding(reason: .fork, offset: 0,
                                               detail: "segment \(a.segmentID) differs from the one the anchor signed: the history was rewritten"))
            }
        }
    }

    /// The metadata slots of a device that holds no readable store, as crc_mismatch findings.
    private static func invalidSlots(_ device: BlockDevice) -> [Finding] {
        let buffer = AlignedBuffer(count: Layout.metadataSlotSize)
        return Layout.metadataSlotOffsets.enumerated().compactMap { index, offset in
            slotProblem(device, at: offset, buffer: buffer).map {
                Finding(reason: .crcMismatch, offset: offset, detail: "metadata slot \(Layout.slotName(index)) is invalid: \($0)")
            }
        }
    }

    /// Why the slot at `offset` is not valid on this device, or nil.
    private static func slotProblem(_ device: BlockDevice, at offset: UInt64, buffer: AlignedBuffer) -> String? {
        guard offset + UInt64(Layout.metadataSlotSize) <= device.byteCount else {
            return "the device ends at byte \(device.byteCount), before the slot does"
        }
        do {
            try device.read(at: offset, into: buffer.bytes)
            let meta = try Metadata.decode(UnsafeRawBufferPointer(buffer.bytes))
            guard meta.geometry.storeSize <= device.byteCount else {
                return "describes \(meta.geometry.storeSize) bytes but the device has \(device.byteCount)"
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Slot-relative offset of the first byte range that fails its check: a record or the marker.
    static func firstBadByte(_ image: UnsafeRawBufferPointer, geometry: Geometry) -> Int {
        let payloadLength = Int(image.le(60, as: UInt32.self))
        guard payloadLength <= geometry.payloadCapacity else { return 60 }
        let end = Layout.segmentHeaderSize + payloadLength
        var offset = Layout.segmentHeaderSize
        while offset < end {
            guard let record = try? SegmentReader.parseRecord(image, at: offset, end: end) else { return offset }
            offset += record.bytes.count
        }
        return end
    }
}
