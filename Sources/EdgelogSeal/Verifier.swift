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
    case sequenceRegression = "sequence_regression"
    case metadataMismatch = "metadata_mismatch"
    case anchorMalformed = "anchor_malformed"
    case anchorBadSignature = "anchor_bad_signature"
    case anchorNotRetained = "anchor_not_retained"
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
    /// True when at least one segment passed and every one that passed had a signature that verified.
    public var signed: Bool { passedSigned > 0 && passedSigned == segments.count - failedSegments }
    var passedSigned = 0

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
        let chosenOffset = Layout.metadataSlotOffsets[analysis.chosenSlot]

        // 1. Metadata slots. A torn metadata write is what a power cut leaves until the next open; a
        // wiped slot is not one, and neither can be told from an edit of the unsigned slot.
        for (slot, problem) in analysis.slotProblems {
            let offset = Layout.metadataSlotOffsets[slot]
            if analysis.uncleanShutdown && !slotIsBlank(device, at: offset) {
                report.notes.append(Note(note: "torn_metadata_write", segmentID: 0,
                                         detail: "metadata slot \(Layout.slotName(slot)) is invalid (\(problem)); the store was not closed, so a cut metadata write may explain it (not verified: the slot is not signed, so an edit looks the same)"))
            } else {
                report.findings.append(Finding(reason: .crcMismatch, offset: offset,
                                               detail: "metadata slot \(Layout.slotName(slot)) is invalid: \(problem)"))
            }
        }

        // 2. The range: from the oldest segment the head's seal says is retained (FORMAT.md 9 item 2),
        // so a metadata tail moved forward cannot hide deleted history.
        var walk = Walk(active: options.trusted.map { ($0, options.epochs[$0.keyID] ?? 1) })
        walk.everTrusted = walk.active
        // The anchor is parsed once. A signed anchor that verifies with a given key proves the store
        // was signed: an unsigned segment is then a downgrade even with --allow-unsigned.
        let anchor = options.anchor.map { bytes in Result { () throws(SignedHead.Problem) in try SignedHead.parse(bytes) } }
        if case .success(let head)? = anchor, head.statement.sigAlg != 0, verifies(head, with: walk.active) {
            walk.signedSeen = true
        }
        let head = state.headSegmentID
        var start = state.tailSegmentID
        var ids: [(id: UInt64, slot: Int?)] = []
        if !state.ringIsEmpty {
            // The head segment's own seal, read from its slot whether or not the metadata's head_crc
            // names it (an edited head_crc must not take the sealed tail out of the check).
            if let sealedTail = (analysis.headSeal ?? StoreHead.seal(of: head, state: state, device: device))?.statement.sealed.tailSegmentID {
                let givenUp = UInt64(analysis.tailLost.count)
                start = givenUp > 0 && sealedTail < Layout.idLimit && state.tailSegmentID == sealedTail + givenUp ? state.tailSegmentID : sealedTail
                start = min(max(start, 1), head)
            }
            let good = UInt64(geometry.ringSlots - state.badBlocks.count)
            if head - start + 1 > good {
                report.findings.append(Finding(reason: .metadataMismatch, offset: chosenOffset + 104,
                                               detail: "the head's seal says segments \(start) to \(head) are retained, more than the \(good) good slots hold"))
                start = head - good + 1
            }
            // Segment `head` sits in head_slot and each earlier one in the good slot before it.
            var slot: Int? = state.headSlot
            var id = head
            while true {
                ids.append((id, slot))
                if id == start { break }
                slot = slot.flatMap { state.previousSlot(before: $0) }
                id -= 1
            }
            ids.reverse()
        }
        if start > 1 && !state.ringIsEmpty {
            report.notes.append(Note(note: "not_retained", segmentID: start - 1,
                                     detail: "the head segment's seal says segments 1 to \(start - 1) are no longer retained; the gap records of the retained segments name those reclaimed since"))
        }

        // 3. Each segment of the range.
        let buffer = AlignedBuffer(count: geometry.segmentSize)
        var walked = Set<Int>()
        var headStatement: Statement?
        for (done, entry) in ids.enumerated() {
            let expected = entry.id
            guard let slot = entry.slot else {
                report.segments.append(SegmentVerdict(segmentID: expected, slot: 0, offset: 0, reason: .gap, keyEpoch: 0,
                                                      detail: "no ring slot is left for segment \(expected)"))
                walk.previousHash = nil
                continue
            }
            walked.insert(slot)
            let offset = geometry.slotOffset(slot)
            var verdict = SegmentVerdict(segmentID: expected, slot: slot, offset: offset, reason: nil, keyEpoch: 0, detail: "")
            var checked = Checked()
            do {
                try device.read(at: offset, into: buffer.bytes)
                checked = check(UnsafeRawBufferPointer(buffer.bytes), slot: slot, expected: expected, state: state, options: options,
                                walk: &walk, verdict: &verdict, report: &report)
            } catch {
                verdict.reason = .crcMismatch
                verdict.detail = "unreadable: \(error)"
            }
            report.segments.append(verdict)
            // The hash of every segment readable in its slot, passing or not: what an anchor is compared with.
            if let computed = checked.computed { walk.readHashes[expected] = computed }
            if verdict.passed, let computed = checked.computed {
                walk.verifiedHashes[expected] = computed
                walk.previousHash = computed
                if expected == start { walk.startPrevHash = checked.prevHash }
            } else {
                // One damaged segment fails once: the next is chained to what this one claimed.
                walk.previousHash = checked.claimed
            }
            if expected == head && verdict.passed { headStatement = walk.lastPassed }
            progress?(UInt64(done + 1), UInt64(ids.count))
        }

        // 4. The head and the metadata against the head's sealed state.
        if analysis.headMissing {
            report.findings.append(Finding(reason: .truncatedTail, offset: geometry.slotOffset(state.headSlot),
                                           detail: "the metadata names segment \(state.headSegmentID) as committed but neither slot's head segment is there"))
        } else if let chosenHead = walk.verifiedHashes[analysis.chosen.headSegmentID], chosenHead != analysis.chosen.hashHead {
            // The slot's own head (before any adoption): hash_head must be that segment's hash.
            report.findings.append(Finding(reason: .hashMismatch, offset: chosenOffset + 192,
                                           detail: "hash_head of metadata slot \(Layout.slotName(analysis.chosenSlot)) is not the hash of its head segment \(analysis.chosen.headSegmentID)"))
        }
        if let headStatement {
            for m in state.mismatches(against: headStatement, tailGivenUp: analysis.tailLost.count) {
                report.findings.append(Finding(reason: .metadataMismatch, offset: chosenOffset + UInt64(m.offset),
                                               detail: "metadata slot \(Layout.slotName(analysis.chosenSlot)): \(m) of head segment \(head)"))
            }
        }

        // 5. Beyond the head: committed segments the metadata no longer shows. (An empty ring has
        // head 0: FORMAT.md 2.)
        let sector = AlignedBuffer(count: geometry.sectorSize)
        for slot in 0..<geometry.ringSlots where !walked.contains(slot) {
            guard let id = committedSegment(device, slot: slot, above: head, state: state, options: options, keys: walk.everTrusted,
                                            sector: sector, buffer: buffer) else { continue }
            report.findings.append(Finding(reason: .truncatedTail, offset: geometry.slotOffset(slot),
                                           detail: "slot \(slot) holds committed segment \(id), beyond segment \(head) where the store now ends: its newest history was cut away"))
        }

        // 6. Power cuts.
        if let torn = analysis.torn {
            if analysis.uncleanShutdown {
                report.notes.append(Note(note: "torn_tail_power_cut", segmentID: torn.segmentID,
                                         detail: "segment \(torn.segmentID) in slot \(torn.slot) was being written when the power went (\(torn.reason)); it was never committed"))
            } else {
                report.findings.append(Finding(reason: .truncatedTail, offset: geometry.slotOffset(torn.slot),
                                               detail: "segment \(torn.segmentID) in slot \(torn.slot) is torn (\(torn.reason)) after a cleanly closed head: no commit was in flight, so the store's end was cut"))
            }
        }

        // 7. The anchor.
        if let anchor {
            checkAnchor(anchor, state: state, start: start, walk: walk, allowUnsigned: options.allowUnsigned, report: &report)
        } else if head > 0 {
            report.notes.append(Note(note: "truncation_not_excluded", segmentID: head,
                                     detail: "no anchor given: a shorter copy of this history (an older image, or one whose newest segments were erased and the metadata rewritten) cannot be excluded; verify with --anchor and a signed head kept off the device"))
        }
        return report
    }

    /// What the walk carries from one segment to the next.
    private struct Walk {
        /// Keys trusted now: the given ones at their epochs, then those rotations endorse.
        var active: [(key: TrustedKey, epoch: UInt32)]
        /// Every key trusted at any point of the walk (anchors and segments beyond the head).
        var everTrusted: [(key: TrustedKey, epoch: UInt32)] = []
        var previousHash: [UInt8]?
        /// The statement of every segment that passed, in order.
        var passedStatements: [Statement] = []
        var lastPassed: Statement? { passedStatements.last }
        /// The newest rollback_ctr of a passing segment (they never decrease among passing ones).
        var newestCtr: UInt64 { passedStatements.last?.rollbackCtr ?? 0 }
        /// Highest seq per source over the segments that passed.
        var sourceSeq: [String: UInt64] = [:]
        var signedSeen = false
        var verifiedHashes: [UInt64: [UInt8]] = [:]
        /// The computed hash of each segment of the range that was readable for its id and slot.
        var readHashes: [UInt64: [UInt8]] = [:]
        /// prev_hash of the first segment of the range, when it passed.
        var startPrevHash: [UInt8]?
    }

    private struct Checked {
        var claimed: [UInt8]?
        var computed: [UInt8]?
        var prevHash: [UInt8]?
    }

    /// Classifies one slot's segment (FORMAT.md 9 item 3); the first reason that applies wins.
    private static func check(_ image: UnsafeRawBufferPointer, slot: Int, expected: UInt64, state: Metadata, options: VerifyOptions,
                              walk: inout Walk, verdict: inout SegmentVerdict, report: inout VerifyReport) -> Checked {
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
        let computed = SegmentReader.computedHash(image, info: info)
        guard let seal = info.seal else {
            // Parsed again only to say what is wrong with it.
            var why = "malformed seal"
            do { _ = try SegmentReader.seal(image, markerAt: markerAt, info: info) } catch { why = "\(error)" }
            fail(.sealMismatch, why, at: offset + UInt64(markerAt))
            return Checked(computed: computed)
        }
        let statement = seal.statement
        verdict.keyEpoch = statement.keyEpoch
        let result = Checked(claimed: statement.segmentHash, computed: computed, prevHash: info.prevHash)
        let markerOffset = offset + UInt64(markerAt)
        if statement.deviceID != state.deviceID {
            fail(.foreignSegment, "sealed for device \(Hex.encode(statement.deviceID)), not \(Hex.encode(state.deviceID))", at: markerOffset)
            return result
        }
        if result.computed != statement.segmentHash {
            fail(.hashMismatch, "the header and records do not hash to the sealed segment_hash")
            return result
        }
        if expected == 1 ? info.prevHash != SegmentHash.zero : (walk.previousHash.map { $0 != info.prevHash } ?? false) {
            fail(.chainBreak, "prev_hash is not the hash of segment \(expected - 1)")
            return result
        }
        var signedHere = false
        if statement.sigAlg == SignatureAlgorithm.unsigned.rawValue {
            if !options.allowUnsigned || walk.signedSeen {
                fail(.unsigned, walk.signedSeen ? "the segment is not signed, after segments that were: a downgrade"
                                                : "the segment is not signed (hash chain only)", at: markerOffset)
                return result
            }
        } else {
            guard let entry = walk.active.first(where: { $0.key.keyID == statement.keyID }), entry.epoch == statement.keyEpoch else {
                fail(.unknownKey, "signed by key \(Hex.encode(statement.keyID)) epoch \(statement.keyEpoch), which no trusted key or endorsed rotation names", at: markerOffset)
                return result
            }
            guard entry.key.algorithm.rawValue == statement.sigAlg, entry.key.verifies(seal.signature, of: seal.statementBytes) else {
                fail(.badSignature, "the signature does not verify with key \(Hex.encode(statement.keyID))", at: markerOffset)
                return result
            }
            signedHere = true
            // The summary names the last signature that verified, whatever fails after it; and once
            // one has, an unsigned segment after it is a downgrade.
            report.sigAlg = SignatureAlgorithm(rawValue: statement.sigAlg) ?? .unsigned
            walk.signedSeen = true
        }
        if let allowed = options.allowedFirmware, !allowed.contains(statement.fwVerHash) {
            fail(.fwNotAllowed, "written by firmware \(Hex.encode(statement.fwVerHash)), not in the allowed list", at: markerOffset)
            return result
        }
        if let previous = walk.lastPassed, statement.rollbackCtr < previous.rollbackCtr {
            fail(.rollback, "rollback_ctr \(statement.rollbackCtr) is below the previous segment's \(previous.rollbackCtr)", at: markerOffset)
            return result
        }
        if let why = regression(statement, expected: expected, previous: walk.lastPassed) {
            fail(.sequenceRegression, why, at: markerOffset)
            return result
        }
        // Records: seqs never repeat per source; rotations take effect after this segment; the
        // evidence records become notes. All of it counts only if the segment passes.
        var seqs = walk.sourceSeq
        var repeated: String?
        var rotationFailed: String?
        var active = walk.active
        var added: [(key: TrustedKey, epoch: UInt32)] = []
        var notes: [Note] = []
        SegmentReader.forEachRecord(image, info: info) { record in
            guard repeated == nil else { return }
            let source = record.sourceName
            if let last = seqs[source], record.seq <= last {
                repeated = "source \(source) repeats seq \(record.seq) (already at \(last)): its sequence state was lowered"
                return
            }
            seqs[source] = record.seq
            switch record.type {
            case .keyRotation:
                switch applyRotation(record, statement: statement, state: state, options: options, active: &active) {
                case .failure(let why): rotationFailed = why.text
                case .success(let key): if let key { added.append(key) }
                }
            case .incomplete, .recovery:
                // Recovery's own account of a power cut or an unclean stop (FORMAT.md 9 item 6).
                notes.append(Note(note: "power_cut_explained", segmentID: expected, detail: String(decoding: record.payload, as: UTF8.self)))
            case .gap:
                // Named by its reason; a gap record of another reason is no note (FORMAT.md 9 item 6).
                if let reason = (try? FlatJSON.parse(Array(record.payload)))?.string("reason"),
                   ["ring_overwrite", "uplink_acked", "tail_unreadable"].contains(reason) {
                    notes.append(Note(note: reason, segmentID: expected, detail: String(decoding: record.payload, as: UTF8.self)))
                }
            default:
                break
            }
        }
        if let repeated {
            fail(.sequenceRegression, repeated, at: markerOffset)
            return result
        }
        if let rotationFailed {
            fail(.badSignature, rotationFailed, at: markerOffset)
            return result
        }
        walk.active = active
        walk.everTrusted += added
        walk.sourceSeq = seqs
        walk.passedStatements.append(statement)
        if signedHere { report.passedSigned += 1 }
        report.notes += notes
        return result
    }

    /// Why a segment's sealed state goes backward against the last segment that passed (FORMAT.md
    /// 9 item 3, sequence_regression), or nil.
    private static func regression(_ s: Statement, expected: UInt64, previous: Statement?) -> String? {
        let t = s.sealed
        if s.recordCount > 0 && t.monoHWM < s.lastMono { return "sealed mono_hwm \(t.monoHWM) is below the segment's last mono_ctr \(s.lastMono)" }
        if t.tailSegmentID > expected { return "sealed tail_segment_id \(t.tailSegmentID) is above the segment itself" }
        guard let previous else { return nil }
        let p = previous.sealed
        if s.recordCount > 0 && s.firstMono <= p.monoHWM {
            return "first mono_ctr \(s.firstMono) is not above the previous segment's mono_hwm \(p.monoHWM): orders repeat"
        }
        if t.ringSlots != p.ringSlots { return "sealed ring_slots \(t.ringSlots) differs from the previous segment's \(p.ringSlots)" }
        let pairs: [(String, UInt64, UInt64)] = [
            ("mono_hwm", t.monoHWM, p.monoHWM), ("records_total", t.recordsTotal, p.recordsTotal), ("lost_total", t.lostTotal, p.lostTotal),
            ("dropped_total", t.droppedTotal, p.droppedTotal), ("uplink_cursor", t.uplinkCursor, p.uplinkCursor),
            ("tail_segment_id", t.tailSegmentID, p.tailSegmentID), ("wrap_count", UInt64(t.wrapCount), UInt64(p.wrapCount)),
            ("unexp_rst", UInt64(t.unexpRst), UInt64(p.unexpRst)), ("bo_event", UInt64(t.boEvent), UInt64(p.boEvent)),
            ("ecc_err_cnt", UInt64(t.eccErrCnt), UInt64(p.eccErrCnt)), ("clock_steps", UInt64(t.clockSteps), UInt64(p.clockSteps)),
            ("boot_seq", UInt64(t.bootSeq), UInt64(p.bootSeq)),
        ]
        for (name, now, before) in pairs where now < before {
            return "sealed \(name) \(now) is below the previous segment's \(before)"
        }
        return nil
    }

    /// The id of the committed segment in `slot` if it lies beyond `head` (FORMAT.md 9 item 5): valid
    /// for its own id and slot, of this store, hashing to its seal, signed by a trusted key.
    private static func committedSegment(_ device: BlockDevice, slot: Int, above head: UInt64, state: Metadata, options: VerifyOptions,
                                         keys: [(key: TrustedKey, epoch: UInt32)], sector: AlignedBuffer, buffer: AlignedBuffer) -> UInt64? {
        // The first sector tells whether the slot can matter; only then is the segment read whole.
        let offset = state.geometry.slotOffset(slot)
        guard (try? device.read(at: offset, into: sector.bytes)) != nil,
              let header = try? SegmentReader.header(UnsafeRawBufferPointer(sector.bytes), geometry: state.geometry, storeUUID: state.storeUUID),
              // One cut or retried commit can leave a valid copy of head + 1 that was never
              // acknowledged; two segments beyond the head cannot come from a power cut.
              header.segmentID > head &+ 1, header.segmentID < Layout.idLimit,
              (try? device.read(at: offset, into: buffer.bytes)) != nil
        else { return nil }
        let image = UnsafeRawBufferPointer(buffer.bytes)
        guard let info = try? SegmentReader.validate(image, slot: slot, expectedID: header.segmentID, geometry: state.geometry,
                                                     storeUUID: state.storeUUID),
              let seal = info.seal, SegmentReader.computedHash(image, info: info) == seal.statement.segmentHash
        else { return nil }
        let statement = seal.statement
        guard statement.deviceID == state.deviceID else { return nil }
        if statement.sigAlg == SignatureAlgorithm.unsigned.rawValue { return options.allowUnsigned ? info.segmentID : nil }
        return verifies(SignedHead(seal: seal), with: keys) ? info.segmentID : nil
    }

    /// True when one of `keys`, at the statement's key id, epoch and algorithm, verifies its signature.
    private static func verifies(_ head: SignedHead, with keys: [(key: TrustedKey, epoch: UInt32)]) -> Bool {
        let s = head.statement
        return keys.contains {
            $0.key.keyID == s.keyID && $0.epoch == s.keyEpoch && $0.key.algorithm.rawValue == s.sigAlg
                && $0.key.verifies(head.signature, of: head.statementBytes)
        }
    }

    struct RotationProblem: Error { let text: String }

    /// Adds the key a rotation record endorses (nil: an HMAC key the verifier was not given, endorsed
    /// but unknown to it) and retires the old one; the reason it does not, if it does not.
    private static func applyRotation(_ record: RecordView, statement: Statement, state: Metadata, options: VerifyOptions,
                                      active: inout [(key: TrustedKey, epoch: UInt32)]) -> Result<(key: TrustedKey, epoch: UInt32)?, RotationProblem> {
        applyRotation(payload: Array(record.payload), keyID: statement.keyID, keyEpoch: statement.keyEpoch, deviceID: state.deviceID,
                      options: options, active: &active)
    }

    /// The rotation record `payload` in a frame or segment signed by key `keyID` at `keyEpoch`
    /// (FORMAT.md section 4, type 8): the key it endorses, `active` updated (the old key retired).
    static func applyRotation(payload: [UInt8], keyID: [UInt8], keyEpoch: UInt32, deviceID: [UInt8], options: VerifyOptions,
                              active: inout [(key: TrustedKey, epoch: UInt32)]) -> Result<(key: TrustedKey, epoch: UInt32)?, RotationProblem> {
        let members: [(key: String, value: FlatJSON.Value)]
        do { members = try FlatJSON.parse(payload) } catch { return .failure(RotationProblem(text: "key rotation record is malformed: \(error)")) }
        guard let oldID = members.string("old_key_id").flatMap(Hex.decode), let oldEpoch = members.integer("old_epoch"),
              let newID = members.string("new_key_id").flatMap(Hex.decode), let newEpoch = members.integer("new_epoch"),
              let algName = members.string("new_alg"), let newAlg = SignatureAlgorithm(name: algName), newAlg != .unsigned,
              let publicHex = members.string("new_public_key"), let endorsement = members.string("endorsement").flatMap(Hex.decode),
              oldEpoch <= UInt64(UInt32.max), newEpoch <= UInt64(UInt32.max)
        else { return .failure(RotationProblem(text: "key rotation record lacks a field")) }
        guard oldID == keyID, UInt32(oldEpoch) == keyEpoch, newEpoch == oldEpoch + 1 else {
            return .failure(RotationProblem(text: "key rotation record is not from the key that signed its segment"))
        }
        guard let signer = active.first(where: { $0.key.keyID == oldID })?.key else { return .failure(RotationProblem(text: "key rotation from an unknown key")) }
        let newKey: TrustedKey?
        if newAlg == .hmacSHA256 {
            // A new HMAC secret cannot be published: the endorsement still verifies (it signs the key
            // id), but segments of that key are unknown_key unless the secret was given with --trust.
            newKey = options.trusted.first(where: { $0.keyID == newID && $0.algorithm == .hmacSHA256 })
        } else {
            guard let der = Hex.decode(publicHex),
                  let parsed = try? TrustedKey.parse(PEM.encode(type: "PUBLIC KEY", der: der), what: "rotation key"),
                  parsed.algorithm == newAlg, parsed.keyID == newID else { return .failure(RotationProblem(text: "key rotation names a public key that does not match its key id")) }
            newKey = parsed
        }
        let message = Endorsement.bytes(deviceID: deviceID, oldKeyID: oldID, oldEpoch: UInt32(oldEpoch),
                                        newEpoch: UInt32(newEpoch), newAlgorithm: newAlg, newKeyID: newID,
                                        newPublicKeyDER: newAlg == .hmacSHA256 ? [] : newKey?.spkiDER ?? [])
        guard signer.verifies(endorsement, of: message) else { return .failure(RotationProblem(text: "key rotation endorsement does not verify")) }
        // The old key signs nothing after its rotation: a retired key may be the compromised one.
        active.removeAll { $0.key.keyID == newID || $0.key.keyID == oldID }
        guard let newKey else { return .success(nil) }
        active.append((newKey, UInt32(newEpoch)))
        return .success((newKey, UInt32(newEpoch)))
    }

    private static func checkAnchor(_ parsed: Result<SignedHead, SignedHead.Problem>, state: Metadata, start: UInt64, walk: Walk,
                                    allowUnsigned: Bool, report: inout VerifyReport) {
        let head: SignedHead
        switch parsed {
        case .success(let parsed): head = parsed
        case .failure(let error):
            report.findings.append(Finding(reason: .anchorMalformed, offset: 0, detail: error.description))
            return
        }
        let a = head.statement
        // An unsigned store's head has nothing to verify; it is accepted only where unsigned segments are.
        // A signed one verifies with a key trusted at its epoch at any point of the walk: an anchor
        // taken before a rotation is signed by the key the rotation retired.
        let verified = a.sigAlg != SignatureAlgorithm.unsigned.rawValue && verifies(head, with: walk.everTrusted)
        guard verified || (allowUnsigned && a.sigAlg == SignatureAlgorithm.unsigned.rawValue) else {
            report.findings.append(Finding(reason: .anchorBadSignature, offset: 0,
                                           detail: "the anchor's signature does not verify with a key trusted at its epoch \(a.keyEpoch)"))
            return
        }
        let ended = state.ringIsEmpty ? 0 : state.headSegmentID
        func find(_ reason: VerifyReason, _ detail: String) {
            report.findings.append(Finding(reason: reason, offset: 0, detail: detail))
        }
        if a.deviceID != state.deviceID {
            return find(.foreignSegment, "the anchor is for device \(Hex.encode(a.deviceID))")
        }
        if a.sealed.storeUUID != state.storeUUID {
            return find(.foreignSegment, "the anchor is for store \(Hex.encode(a.sealed.storeUUID)), not this store \(Hex.encode(state.storeUUID))")
        }
        if walk.lastPassed != nil && walk.newestCtr < a.rollbackCtr {
            return find(.rollback, "the newest passing segment's rollback_ctr \(walk.newestCtr) is below the anchor's \(a.rollbackCtr): an older history")
        }
        if ended < a.segmentID {
            return find(.truncatedTail, "the store ends at segment \(ended); the anchor proves segment \(a.segmentID) was committed")
        }
        if a.segmentID >= start {
            // An unreadable anchor segment already fails as itself (gap, crc_mismatch): no hash to compare.
            if let stored = walk.readHashes[a.segmentID], stored != a.segmentHash {
                return find(.fork, "segment \(a.segmentID) differs from the one the anchor signed: the history was rewritten")
            }
        } else if a.segmentID &+ 1 == start {
            if let link = walk.startPrevHash, link != a.segmentHash {
                return find(.fork, "segment \(start) does not follow the segment \(a.segmentID) the anchor signed: the history was rewritten")
            }
        } else {
            return find(.anchorNotRetained, "the anchor's segment \(a.segmentID) is older than the oldest retained segment \(start): nothing here proves this store continues the anchored history; verify against a newer signed head")
        }
        // The history after the anchored segment continues its sealed state: the first segment
        // after it that passed must not go backward against the anchor (a writer steered after the
        // anchor was taken would).
        if let next = walk.passedStatements.first(where: { $0.segmentID > a.segmentID }),
           let why = regression(next, expected: next.segmentID, previous: a) {
            find(.sequenceRegression, "segment \(next.segmentID) against the anchor's segment \(a.segmentID): \(why)")
        }
    }

    /// True when the metadata slot at `offset` reads back as all zero bytes (or cannot be read).
    private static func slotIsBlank(_ device: BlockDevice, at offset: UInt64) -> Bool {
        let buffer = AlignedBuffer(count: Layout.metadataSlotSize)
        guard offset + UInt64(Layout.metadataSlotSize) <= device.byteCount,
              (try? device.read(at: offset, into: buffer.bytes)) != nil else { return true }
        return UnsafeRawBufferPointer(buffer.bytes).allSatisfy { $0 == 0 }
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

    /// Slot-relative offset of the first byte range that fails its check (FORMAT.md 9 item 3): the
    /// payload_len field when it overruns the segment, else the first record that does not parse
    /// or whose mono_ctr is not above the one before it (or is 2^62 or more, as is its seq), else
    /// the commit marker (it, body_crc or the header's counts and mono range disagree).
    static func firstBadByte(_ image: UnsafeRawBufferPointer, geometry: Geometry) -> Int {
        let payloadLength = Int(image.le(60, as: UInt32.self))
        guard payloadLength <= geometry.payloadCapacity else { return 60 }
        let end = Layout.segmentHeaderSize + payloadLength
        var offset = Layout.segmentHeaderSize
        var previous: UInt64?
        while offset < end {
            guard let record = try? SegmentReader.parseRecord(image, at: offset, end: end),
                  record.mono < Layout.idLimit, record.seq < Layout.idLimit, previous.map({ record.mono > $0 }) ?? true
            else { return offset }
            previous = record.mono
            offset += record.bytes.count
        }
        return end
    }
}
