// The verifier of a format 6 store (docs/FORMAT.md A.11): section 9 frame by frame. Every committed
// segment gets a verdict, every frame is counted and each failing frame is named with its offset;
// then the store-level findings (metadata, what lies outside the history, the anchor) and the notes
// that explain power cuts and overwrites. Read-only.

import EdgelogCore
import EdgelogStore

public struct PackedSegmentVerdict: Equatable, Sendable {
    public var segmentID: UInt64
    public var slot: Int
    public var offset: UInt64
    /// The header's first_frame_id and history frames (nil: the header was not read).
    public var firstFrameID: UInt64?
    public var frames: Int?
    public var passedFrames = 0
    public var reason: VerifyReason?
    public var keyEpoch: UInt32 = 0
    public var detail = ""
    public var passed: Bool { reason == nil }
}

/// A frame (or a run of missing frames) that failed on its own.
public struct PackedFrameVerdict: Equatable, Sendable {
    public var segmentID: UInt64
    public var frameID: UInt64
    public var frames: Int
    public var offset: UInt64
    public var reason: VerifyReason
    public var keyEpoch: UInt32
    public var detail: String
}

public struct PackedNote: Equatable, Sendable {
    public var note: String
    public var segmentID: UInt64
    public var frameID: UInt64
    public var detail: String
}

public struct PackedVerifyReport: Sendable {
    public var segments: [PackedSegmentVerdict] = []
    public var frameFailures: [PackedFrameVerdict] = []
    public var findings: [Finding] = []
    public var notes: [PackedNote] = []
    public var sigAlg: SignatureAlgorithm = .unsigned
    public var framesPassed = 0
    var signedPassed = 0

    public var frames: Int { segments.reduce(0) { $0 + ($1.frames ?? 0) } }
    public var failedSegments: Int { segments.filter { !$0.passed }.count }
    public var signed: Bool { framesPassed > 0 && signedPassed == framesPassed }
    public var reasons: [String] {
        Array(Set(segments.compactMap { $0.reason?.rawValue } + frameFailures.map(\.reason.rawValue) + findings.map(\.reason.rawValue))).sorted()
    }
    public var passed: Bool { failedSegments == 0 && findings.isEmpty }
}

public enum PackedVerifier {
    /// What the last passing frame sealed (P of A.11): its state and its header's fields.
    struct Passed {
        var state: PackedState
        /// nil for an anchor (it holds the tables only as their hash).
        var tables: PackedTables?
        var rollbackCtr: UInt64
        var wrapCount: UInt32
        var unexpRst: UInt32
        var bootSeq: UInt32
        var tailSegmentID: UInt64
        var ringSlots: UInt32

        init(state: PackedState, header h: PackedSegmentHeader) {
            self.state = state
            tables = state.tables
            rollbackCtr = h.rollbackCtr
            wrapCount = h.wrapCount
            unexpRst = h.unexpRst
            bootSeq = h.bootSeq
            tailSegmentID = h.tailSegmentID
            ringSlots = h.ringSlots
        }

        init(anchor s: FrameStatementView) {
            state = s.state
            tables = nil
            rollbackCtr = s.rollbackCtr
            wrapCount = s.wrapCount
            unexpRst = s.unexpRst
            bootSeq = s.bootSeq
            tailSegmentID = s.tailSegmentID
            ringSlots = s.ringSlots
        }
    }

    /// One segment of the range as read: its walk when the header got past S1 to S5, else why not.
    struct Read {
        var slot: Int?
        var walk: PackedSegmentReader.Walk?
        var reason: VerifyReason?
        var detail = ""
        var offset: UInt64 = 0
        /// Header read (past S4): first_frame_id and the walk may be used by its neighbours.
        var headerRead: Bool { walk != nil && reason == nil }
    }

    public static func verify(device: BlockDevice, options: VerifyOptions, progress: ((UInt64, UInt64) -> Void)? = nil) -> PackedVerifyReport {
        var r = PackedVerifyReport()
        let slotSize = PackedGeometry.metadataSlotSize
        // 1. Metadata slots.
        var raw: [[UInt8]] = []
        var decoded: [PackedMetadata?] = []
        for i in 0..<2 {
            let buffer = AlignedBuffer(count: slotSize)
            let offset = UInt64(i * slotSize)
            if offset + UInt64(slotSize) <= device.byteCount, (try? device.read(at: offset, into: buffer.bytes)) != nil {
                raw.append(Array(UnsafeRawBufferPointer(buffer.bytes)))
                decoded.append(PackedMetadata.decode(UnsafeRawBufferPointer(buffer.bytes), deviceSize: device.byteCount))
            } else {
                raw.append([])
                decoded.append(nil)
            }
        }
        let history: PackedHistory
        do { history = try PackedHistory.analyze(device: device) } catch {
            for i in 0..<2 where decoded[i] == nil {
                r.findings.append(Finding(reason: .crcMismatch, offset: UInt64(i * slotSize), detail: "metadata slot \(Layout.slotName(i)) is invalid"))
            }
            r.findings.append(Finding(reason: .notAStore, offset: 0, detail: "\(error)"))
            return r
        }
        let chosenIndex = history.recovery.metadataSlot
        guard let m = decoded[chosenIndex] else {
            // The slot read differently here than for the analysis (a live device, a flaky card).
            r.findings.append(Finding(reason: .crcMismatch, offset: UInt64(chosenIndex * slotSize),
                                      detail: "metadata slot \(Layout.slotName(chosenIndex)) did not read the same twice: verify a copied image"))
            return r
        }
        let chosenOffset = UInt64(chosenIndex * slotSize)
        let geometry = m.geometry
        for i in 0..<2 where decoded[i] == nil {
            let blank = raw[i].allSatisfy { $0 == 0 }
            // Formatting clears B, then writes A (generation 0, nothing committed).
            if i == 1 && blank && decoded[0].map({ $0.generation == 0 && $0.headFrameID == 0 }) == true { continue }
            // The write that marks a clean store open again (at open, after a safe-commit window)
            // lands beside a chosen slot still saying clean: a cut one is a note whatever clean_flag says.
            if !blank {
                r.notes.append(PackedNote(note: "torn_metadata_write", segmentID: 0, frameID: 0,
                                          detail: "metadata slot \(Layout.slotName(i)) is invalid; a cut metadata write may explain it (not verified: the slot is not signed, so an edit looks the same)"))
            } else {
                r.findings.append(Finding(reason: .crcMismatch, offset: UInt64(i * slotSize), detail: "metadata slot \(Layout.slotName(i)) is invalid"))
            }
        }

        // 2. The range.
        var context = Context(device: device, geometry: geometry, store: m, options: options)
        context.active = options.trusted.map { ($0, options.epochs[$0.keyID] ?? 1) }
        context.everTrusted = context.active
        let anchor = options.anchor.map { bytes in Result { () throws(SignedHead.Problem) in try FrameHead.parse(bytes) } }
        if case .success(let head)? = anchor {
            // Only what the anchor check needs is kept of the passing frames: memory follows two
            // segments, not the card.
            context.anchorFrameID = head.statement.frameID
            if head.statement.sigAlg != 0, head.verifies(with: context.active) { context.signedSeen = true }
        }
        var H = history.headSegmentID, FH = history.headFrameID, sH = history.headSlot
        if history.recovery.headMissing {
            H = m.headSegmentID
            sH = m.headSlot
            FH = context.walk(slot: sH).flatMap { w in w.header.segmentID == H ? w.frames.last(where: { $0.frameID <= m.headFrameID })?.frameID : nil } ?? 0
        }
        let headWalk = H > 0 ? context.walk(slot: sH) : nil
        let headHeader = headWalk.flatMap { $0.header.segmentID == H && context.fits($0.header, slot: sH) ? $0.header : nil }
        context.bad = Set((headHeader?.state.tables ?? m.state.tables).badSlots.map { Int($0.slot) })
        let good = UInt64(geometry.ringSlots - context.bad.count)
        let T = headHeader?.tailSegmentID ?? m.tailSegmentID
        let givenUp = history.recovery.tailsGivenUp == 1 && history.tailSegmentID == T &+ 1
        var start = givenUp ? T + 1 : T
        var ids: [(id: UInt64, slot: Int?)] = []
        if H > 0 {
            start = min(max(start, 1), H)
            if H - start + 1 > good {
                if headHeader == nil {
                    r.findings.append(Finding(reason: .metadataMismatch, offset: chosenOffset + 128,
                                              detail: "tail_segment_id \(T) names segments \(start) to \(H), more than the \(good) good slots hold"))
                }
                start = H - good + 1
            }
            var slot: Int? = sH
            var id = H
            while true {
                ids.append((id, slot))
                if id == start { break }
                slot = slot.flatMap { context.prev($0) }
                id -= 1
            }
            ids.reverse()
        }

        // 3. Each segment of the range, with the next one's header read ahead.
        context.startSegment = start
        var reads: [Read] = ids.isEmpty ? [] : [context.read(ids[0].id, slot: ids[0].slot)]
        var previous: Read?
        var chainPoint: (passed: Bool, hash: [UInt8], state: PackedState)?
        let walked = Set(ids.compactMap(\.slot))
        for (k, entry) in ids.enumerated() {
            let e = entry.id
            if k + 1 < ids.count { reads.append(context.read(ids[k + 1].id, slot: ids[k + 1].slot)) }
            let current = reads[k]
            let next = k + 1 < ids.count ? reads[k + 1] : nil
            let outcome = context.judge(e, current, previous: previous, next: next, chainPoint: chainPoint, isHead: e == H, headFrame: FH,
                                        namedFrame: m.headFrameID, report: &r)
            chainPoint = outcome.chainPointForNext
            previous = current
            reads[k] = Read()    // the walk is no longer needed: memory follows two segments
            progress?(UInt64(k + 1), UInt64(ids.count))
        }

        if H > 0 && start > 1 {
            r.notes.append(PackedNote(note: "not_retained", segmentID: start - 1, frameID: context.startFirstFrameID.map { $0 &- 1 } ?? 0,
                                      detail: "the head segment's header says segments 1 to \(start - 1) are no longer retained; the gap records of the retained frames name those reclaimed since"))
        }
        if H > 0 && givenUp {
            // A reclaim a power cut stopped, or an erasure: nothing signed tells them apart.
            r.notes.append(PackedNote(note: "tail_given_up", segmentID: T, frameID: 0,
                                      detail: "segment \(T) is given up: its slot no longer holds it in a store left open with a full ring, as a reclaim cut by a power cut leaves it; an erasure of the oldest segment looks the same (not verified)"))
        }

        // 4. The head and the metadata.
        if history.recovery.headMissing && m.headFrameID != 0 {
            r.findings.append(Finding(reason: .truncatedTail, offset: geometry.slotOffset(m.headSlot),
                                      detail: "the metadata names frame \(m.headFrameID) of segment \(m.headSegmentID) as committed but neither slot's head frame is there"))
        } else if let other = decoded[1 - chosenIndex], other.generation > m.generation {
            r.findings.append(Finding(reason: .hashMismatch, offset: UInt64((1 - chosenIndex) * slotSize) + 88,
                                      detail: "metadata slot \(Layout.slotName(1 - chosenIndex)) is newer but names a head frame (\(other.headFrameID)) the ring does not hold"))
        }
        if let named = context.named {
            let ctx = context
            for mm in m.mismatches(against: named.state, header: named.header, tailGivenUp: givenUp, nextSlot: { ctx.next($0) }) {
                r.findings.append(Finding(reason: .metadataMismatch, offset: chosenOffset + UInt64(mm.offset),
                                          detail: "metadata slot \(Layout.slotName(chosenIndex)): " + (mm.field == "tables"
                                            ? "the tables differ from those frame \(m.headFrameID) sealed" : "\(mm.field) is \(mm.value), frame \(m.headFrameID) sealed \(mm.sealed)")))
            }
        }

        // 5. Outside the history, in offset order: committed segments beyond the head, a frame past
        // the end of the head segment's walk.
        var outside: [Finding] = []
        for slot in 0..<geometry.ringSlots where !walked.contains(slot) {
            if let id = context.committedBeyond(slot: slot, head: H) {
                outside.append(Finding(reason: .truncatedTail, offset: geometry.slotOffset(slot),
                                       detail: "slot \(slot) holds committed segment \(id), beyond segment \(H) where the store now ends: its newest history was cut away"))
            }
        }
        var frameAfterEnd = false
        if let w = headWalk, let header = headHeader, let found = context.frameAfterWalk(w, header: header) {
            frameAfterEnd = true
            outside.append(Finding(reason: .truncatedTail, offset: geometry.slotOffset(sH) + UInt64(found),
                                   detail: "segment \(H) holds a frame written whole at slot offset \(found), after the end of its history: frames were cut away"))
        }
        if let w = headWalk, headHeader != nil, let found = context.undecodableEnd(w) {
            outside.append(Finding(reason: found.regression ? .sequenceRegression : .crcMismatch, offset: geometry.slotOffset(sH) + UInt64(w.endOffset),
                                   detail: "segment \(H): a frame written whole past the head does not decode (\(found.why))"))
        }
        r.findings += outside.sorted { $0.offset < $1.offset } + context.outsideFindings
        r.notes += context.recordNotes

        // 6. Power cuts.
        let tornInHead = headWalk.map { [.badMagic, .crcMismatch].contains($0.end) || isFlagsOrLength($0.end) } ?? false
        var tornNext: Int?
        if H > 0, let nextSlot = context.next(sH), let w = context.walk(slot: nextSlot), w.header.segmentID == H + 1,
           context.fits(w.header, slot: nextSlot), w.frames.isEmpty, w.header.firstFrameID == FH + 1,
           let headHash = headWalk?.frames.first(where: { $0.frameID == FH })?.frameHash, w.header.prevHash == headHash {
            tornNext = nextSlot
        }
        if !m.clean {
            if (tornInHead || tornNext != nil) && !frameAfterEnd {
                let segment = tornNext != nil ? H + 1 : H
                r.notes.append(PackedNote(note: "torn_tail_power_cut", segmentID: segment, frameID: FH + 1,
                                          detail: "frame \(FH + 1) was being written when the power went (or sectors an older lap left after the segment's last frame); neither was acknowledged"))
            }
        } else if let slot = tornNext {
            r.findings.append(Finding(reason: .truncatedTail, offset: geometry.slotOffset(slot),
                                      detail: "segment \(H + 1) in slot \(slot) has a header and no committed frame after a cleanly closed head: no commit was in flight, so the store's end was cut"))
        }

        // 7. The anchor.
        if let anchor {
            context.checkAnchor(anchor, head: H, headFrame: FH, start: start, report: &r)
        } else {
            // An empty history too: a store wiped back to nothing looks the same (A.11.2 item 2).
            r.notes.append(PackedNote(note: "truncation_not_excluded", segmentID: H, frameID: FH,
                                      detail: "no anchor given: a shorter copy of this history (an older image, or one whose newest frames were erased and the metadata rewritten) cannot be excluded; verify with --anchor and a signed head kept off the device"))
        }
        return r
    }

    static func isFlagsOrLength(_ p: PackedProblem) -> Bool {
        switch p {
        case .badFlags, .badLength: true
        default: false
        }
    }

    /// A walk that ended after the frame's CRC checked: a frame written whole that does not decode.
    static func endedAfterCRC(_ p: PackedProblem) -> Bool {
        switch p {
        case .badRecordCount, .badBlockLength, .block, .state, .overflow: true
        default: false
        }
    }

    /// What the walk over the range carries.
    struct Context {
        let device: BlockDevice
        let geometry: PackedGeometry
        let store: PackedMetadata
        let options: VerifyOptions
        var active: [(key: TrustedKey, epoch: UInt32)] = []
        var everTrusted: [(key: TrustedKey, epoch: UInt32)] = []
        var signedSeen = false
        /// Sealed bad slots (the head segment header's).
        var bad = Set<Int>()
        var last: Passed?
        /// Highest seq per source over the passing frames.
        var sourceSeq: [String: UInt64] = [:]
        /// The frame the chosen slot names, when it passed: its state and its header.
        var named: (state: PackedState, header: PackedSegmentHeader)?
        /// The anchor's frame id, and its frame's rebuilt statement and segment when it passed.
        var anchorFrameID: UInt64?
        var statements: [UInt64: (segment: UInt64, statement: [UInt8])] = [:]
        var firstPassedAbove: [(frameID: UInt64, passed: Passed, firstMono: UInt64?)] = []
        var startPrevHash: [UInt8]?
        var startFirstPassed = false
        /// first_frame_id and prev_hash of the range's first segment, when its header was read.
        var startFirstFrameID: UInt64?
        var rangeStarted = false
        var startSegment: UInt64 = 0
        var recordNotes: [PackedNote] = []
        var outsideFindings: [Finding] = []
        let buffer: AlignedBuffer

        init(device: BlockDevice, geometry: PackedGeometry, store: PackedMetadata, options: VerifyOptions) {
            self.device = device
            self.geometry = geometry
            self.store = store
            self.options = options
            buffer = AlignedBuffer(count: geometry.segmentSize)
        }

        func next(_ s: Int) -> Int? {
            var x = s
            for _ in 0..<geometry.ringSlots {
                x = (x + 1) % geometry.ringSlots
                if !bad.contains(x) { return x }
            }
            return nil
        }

        func prev(_ s: Int) -> Int? {
            var x = s
            for _ in 0..<geometry.ringSlots {
                x = (x + geometry.ringSlots - 1) % geometry.ringSlots
                if !bad.contains(x) { return x }
            }
            return nil
        }

        /// The slot's walk (records kept), whatever its header says; nil when no header decodes.
        func walk(slot: Int) -> PackedSegmentReader.Walk? {
            guard (try? device.read(at: geometry.slotOffset(slot), into: buffer.bytes)) != nil else { return nil }
            return try? PackedSegmentReader.walk(UnsafeRawBufferPointer(buffer.bytes), sectorSize: geometry.sectorSize)
        }

        /// A.9's bounds on a header (S2), ring_slots aside.
        func fits(_ h: PackedSegmentHeader, slot: Int) -> Bool {
            Int(h.slotIndex) == slot && h.segmentID < RecordBlock.bound && h.firstFrameID < RecordBlock.bound && h.rollbackCtr < RecordBlock.bound
                && h.state.monoHWM < RecordBlock.bound
                && h.unexpRst < 1 << 31 && h.bootSeq < 1 << 31 && h.tailSegmentID >= 1 && Int(h.tailSlot) < geometry.ringSlots
                && h.state.tables.badSlotsFit(ringSlots: geometry.ringSlots)
        }

        /// S1 to S5 for segment `e` in `slot`.
        func read(_ e: UInt64, slot: Int?) -> Read {
            guard let slot else { return Read(slot: nil, reason: .gap, detail: "no ring slot is left for segment \(e)") }
            let offset = geometry.slotOffset(slot)
            var out = Read(slot: slot, offset: offset)
            guard (try? device.read(at: offset, into: buffer.bytes)) != nil else {
                out.reason = .crcMismatch
                out.detail = "slot \(slot) does not read"
                return out
            }
            let image = UnsafeRawBufferPointer(buffer.bytes)
            guard image.le(0, as: UInt64.self) == PackedSegmentHeader.magic else {
                out.reason = .gap
                out.detail = "no segment in slot \(slot): segment \(e) is missing"
                return out
            }
            let w: PackedSegmentReader.Walk
            do { w = try PackedSegmentReader.walk(image, sectorSize: geometry.sectorSize) } catch {
                if case .badField = error {
                    out.reason = .sealMismatch
                    out.offset = offset + 124
                    out.detail = "segment header in slot \(slot): \(error)"
                } else {
                    out.reason = .crcMismatch
                    out.detail = "segment header in slot \(slot) does not check: \(error)"
                }
                return out
            }
            let h = w.header
            out.walk = w
            guard h.segmentID < RecordBlock.bound, h.firstFrameID < RecordBlock.bound, h.rollbackCtr < RecordBlock.bound,
                  h.state.monoHWM < RecordBlock.bound, h.unexpRst < 1 << 31,
                  h.bootSeq < 1 << 31, h.tailSegmentID >= 1, Int(h.tailSlot) < geometry.ringSlots,
                  h.state.tables.badSlotsFit(ringSlots: geometry.ringSlots) else {
                out.reason = .crcMismatch
                out.detail = "segment header in slot \(slot) is outside the store's bounds"
                return out
            }
            if h.storeUUID != store.storeUUID || h.deviceID != store.deviceID {
                out.reason = .foreignSegment
                out.detail = "slot \(slot) holds a segment of another store or device"
                return out
            }
            if Int(h.slotIndex) != slot {
                out.reason = .reordered
                out.detail = "slot \(slot) holds segment \(h.segmentID), written for slot \(h.slotIndex)"
                return out
            }
            if h.segmentID != e {
                out.reason = h.segmentID > e ? .gap : .chainBreak
                out.detail = h.segmentID > e ? "segment \(e) is missing: slot \(slot) holds segment \(h.segmentID)"
                    : "slot \(slot) holds older segment \(h.segmentID) where \(e) belongs"
                return out
            }
            return out
        }

        struct Outcome {
            var chainPointForNext: (passed: Bool, hash: [UInt8], state: PackedState)?
        }

        /// S6 to S9 and the frames of segment `e` (A.11.2 item 3), its verdicts into `r`.
        mutating func judge(_ e: UInt64, _ cur: Read, previous: Read?, next: Read?, chainPoint: (passed: Bool, hash: [UInt8], state: PackedState)?,
                            isHead: Bool, headFrame FH: UInt64, namedFrame: UInt64, report r: inout PackedVerifyReport) -> Outcome {
            var v = PackedSegmentVerdict(segmentID: e, slot: cur.slot ?? 0, offset: cur.slot.map { geometry.slotOffset($0) } ?? 0)
            var outcome = Outcome()
            defer { rangeStarted = true }
            guard let w = cur.walk, cur.reason == nil else {
                v.reason = cur.reason
                v.detail = cur.detail
                v.offset = cur.slot == nil ? 0 : cur.offset
                if let w = cur.walk { v.keyEpoch = w.header.keyEpoch }
                r.segments.append(v)
                return outcome
            }
            let h = w.header
            v.firstFrameID = h.firstFrameID
            v.keyEpoch = h.keyEpoch
            if !rangeStarted { startFirstFrameID = h.firstFrameID; startPrevHash = h.prevHash }
            rangeStarted = true
            // The history frames: up to the next segment's chain point, or the walk's (the head's up to FH).
            var endID: UInt64    // one past the last history frame id
            if isHead {
                endID = FH &+ 1
            } else if let next, next.headerRead, let nw = next.walk, chainsOnto(nw.header, w) == nil {
                endID = nw.header.firstFrameID
            } else {
                endID = h.firstFrameID &+ UInt64(w.frames.count)
            }
            if endID < h.firstFrameID { endID = h.firstFrameID }
            let historyCount = Int(min(endID - h.firstFrameID, UInt64(Int32.max)))
            v.frames = historyCount
            func failSegment(_ reason: VerifyReason, _ detail: String, at offset: UInt64? = nil) {
                v.reason = reason
                v.detail = detail
                if let offset { v.offset = offset }
            }
            // S6: the chain into the segment.
            if e == 1 && (h.firstFrameID != 1 || h.prevHash != [UInt8](repeating: 0, count: 32)) {
                failSegment(.chainBreak, "segment 1 must start at frame 1 with a zero prev_hash")
            } else if let previous, previous.headerRead, let pw = previous.walk, let why = chainsOnto(h, pw) {
                failSegment(.chainBreak, why)
            } else if let cp = chainPoint, cp.passed, cp.hash != h.prevHash {
                failSegment(.chainBreak, "prev_hash is not the frame_hash of frame \(h.firstFrameID &- 1), which segment \(e - 1) holds")
            } else if h.sigAlg == .unsigned {
                // S7
                if !options.allowUnsigned || signedSeen {
                    failSegment(.unsigned, signedSeen ? "the segment is not signed, after frames that were: a downgrade" : "the segment is not signed (hash chain only)")
                }
            } else if !active.contains(where: { $0.key.keyID == h.keyID && $0.epoch == h.keyEpoch && $0.key.algorithm == h.sigAlg }) {
                // S8
                failSegment(.unknownKey, "signed by key \(Hex.encode(h.keyID)) epoch \(h.keyEpoch), which no trusted key or endorsed rotation names")
            }
            if v.reason != nil {
                r.segments.append(v)
                outcome.chainPointForNext = nil
                notePastChainPoint(w, from: endID, e: e, keyOK: false)
                return outcome
            }
            let key = active.first { $0.key.keyID == h.keyID && $0.epoch == h.keyEpoch }?.key
            var retired = false
            var headerChecked = false
            var segmentFailed: (VerifyReason, String, UInt64)?
            // The last history frame so far: what the next segment's chain point is.
            var tip: (passed: Bool, hash: [UInt8], state: PackedState)?
            for f in w.frames where f.frameID < endID {
                let offset = geometry.slotOffset(cur.slot ?? 0) + UInt64(f.offset)
                // The anchored frame, whatever its verdict (A.11.2 item 7 compares it byte for byte).
                if f.frameID == anchorFrameID { statements[f.frameID] = (e, f.statement) }
                func failFrame(_ reason: VerifyReason, _ detail: String) {
                    r.frameFailures.append(PackedFrameVerdict(segmentID: e, frameID: f.frameID, frames: 1, offset: offset, reason: reason,
                                                              keyEpoch: h.keyEpoch, detail: detail))
                    tip = (false, f.frameHash, f.stateAfter)
                }
                if segmentFailed != nil {
                    // Counted with the segment's reason, not listed.
                    tip = (false, f.frameHash, f.stateAfter)
                    continue
                }
                // F2, F3.
                if retired { failFrame(.unknownKey, "the segment's key was retired by a rotation in an earlier frame"); continue }
                var signedHere = false
                if h.sigAlg != .unsigned {
                    guard let key, key.verifies(f.signature, of: f.statement) else {
                        failFrame(.badSignature, "the signature does not verify with key \(Hex.encode(h.keyID))")
                        continue
                    }
                    signedHere = true
                    // A.11.3: the summary names the algorithm of the last signature that verified,
                    // whatever later checks the frame fails.
                    r.sigAlg = h.sigAlg
                }
                // A rotation in this frame: its endorsement must verify with the segment's key.
                var rotationAdded: [(key: TrustedKey, epoch: UInt32)] = []
                var rotationFailed: String?
                var keys = active
                for rec in f.records where rec.type == .keyRotation && rec.source == SourceName.engine {
                    switch Verifier.applyRotation(payload: rec.payload, keyID: h.keyID, keyEpoch: h.keyEpoch, deviceID: store.deviceID,
                                                  options: options, active: &keys) {
                    case .failure(let why): rotationFailed = why.text
                    case .success(let k): if let k { rotationAdded.append(k) }
                    }
                }
                if let rotationFailed { failFrame(.badSignature, rotationFailed); continue }
                // S9, once the header is authenticated by this frame.
                if !headerChecked {
                    headerChecked = true
                    if let why = headerProblem(h, e: e, chainPoint: chainPoint) {
                        // An S-reason: the segment line keeps the slot's start (A.11.3).
                        let slotStart = geometry.slotOffset(cur.slot ?? 0)
                        segmentFailed = (why.0, why.1, slotStart)
                        failSegment(why.0, why.1, at: slotStart)
                        tip = (false, f.frameHash, f.stateAfter)
                        continue
                    }
                }
                // F6.
                if let why = regression(f, header: h) { failFrame(.sequenceRegression, why); continue }
                // Passes.
                if signedHere {
                    signedSeen = true
                    r.signedPassed += 1
                }
                r.framesPassed += 1
                v.passedFrames += 1
                self.last = Passed(state: f.stateAfter, header: h)
                for rec in f.records { sourceSeq[rec.source] = max(sourceSeq[rec.source] ?? 0, rec.seq) }
                if let a = anchorFrameID {
                    if f.frameID > a && firstPassedAbove.isEmpty {
                        firstPassedAbove.append((f.frameID, Passed(state: f.stateAfter, header: h), f.records.first?.mono))
                    }
                }
                if f.frameID == namedFrame { named = (f.stateAfter, h) }
                if f.frameID == h.firstFrameID && startFirstFrameID == h.firstFrameID && e == startSegment { startFirstPassed = true }
                noteRecords(f, e: e)
                if f.records.contains(where: { $0.type == .keyRotation && $0.source == SourceName.engine }) {
                    // The old key signs nothing after its rotation (a later frame of this segment
                    // fails F2, a later segment naming it S8); the new one signs from the next segment.
                    retired = true
                    active = keys
                    everTrusted += rotationAdded
                }
                tip = (true, f.frameHash, f.stateAfter)
            }
            // F1: history frames the walk does not hold.
            let held = w.frames.filter { $0.frameID < endID }.count
            if held < historyCount && segmentFailed == nil && !isHead {
                let missing = historyCount - held
                let reason: VerifyReason
                switch w.end {
                case .blank: reason = .gap
                case .state(let why) where why.hasSuffix("goes back"): reason = .sequenceRegression
                default: reason = .crcMismatch
                }
                r.frameFailures.append(PackedFrameVerdict(segmentID: e, frameID: h.firstFrameID &+ UInt64(held), frames: missing,
                                                          offset: geometry.slotOffset(cur.slot ?? 0) + UInt64(w.endOffset), reason: reason,
                                                          keyEpoch: h.keyEpoch, detail: "frames missing from here: the walk ended (\(w.end.reason))"))
                tip = nil
            }
            if v.reason == nil {
                let failed = r.frameFailures.last(where: { $0.segmentID == e })
                if historyCount == 0 {
                    failSegment(.crcMismatch, "segment \(e) holds no committed frame", at: geometry.slotOffset(cur.slot ?? 0) + UInt64(w.endOffset))
                } else if v.passedFrames < historyCount, let failed {
                    failSegment(failed.reason, failed.detail, at: failed.offset)
                }
            }
            r.segments.append(v)
            // The frame the next segment continues: the last history frame.
            outcome.chainPointForNext = tip
            if !isHead { notePastChainPoint(w, from: endID, e: e, keyOK: key != nil || h.sigAlg == .unsigned, key: key) }
            return outcome
        }

        /// Why `h` does not chain onto the previous segment's walk by ids (S6), or nil.
        func chainsOnto(_ h: PackedSegmentHeader, _ previous: PackedSegmentReader.Walk) -> String? {
            let p = previous.header
            let capacity = UInt64((geometry.segmentSize - previous.headerLength) / geometry.sectorSize)
            guard h.firstFrameID > p.firstFrameID, h.firstFrameID - p.firstFrameID <= capacity else {
                return "first_frame_id \(h.firstFrameID) does not follow segment \(p.segmentID)'s \(p.firstFrameID)"
            }
            if previous.end == .slotEnd && p.firstFrameID &+ UInt64(previous.frames.count) < h.firstFrameID {
                return "segment \(p.segmentID) ends before frame \(h.firstFrameID - 1), which this one continues"
            }
            return nil
        }

        /// S9: the header's sealed fields against the last passing frame and the chain point.
        func headerProblem(_ h: PackedSegmentHeader, e: UInt64, chainPoint: (passed: Bool, hash: [UInt8], state: PackedState)?) -> (VerifyReason, String)? {
            if let allowed = options.allowedFirmware, !allowed.contains(h.fwVerHash) {
                return (.fwNotAllowed, "written by firmware \(Hex.encode(h.fwVerHash)), not in the allowed list")
            }
            if let p = last, h.rollbackCtr < p.rollbackCtr {
                return (.rollback, "rollback_ctr \(h.rollbackCtr) is below the previous frame's \(p.rollbackCtr)")
            }
            let good = geometry.ringSlots - h.state.tables.badSlots.count
            if h.tailSegmentID > e || e - h.tailSegmentID + 1 > UInt64(max(good, 0)) {
                return (.sequenceRegression, "tail_segment_id \(h.tailSegmentID) is above the segment or further back than the ring holds")
            }
            if let p = last {
                let pairs: [(String, UInt64, UInt64)] = [
                    ("wrap_count", UInt64(h.wrapCount), UInt64(p.wrapCount)), ("unexp_rst", UInt64(h.unexpRst), UInt64(p.unexpRst)),
                    ("boot_seq", UInt64(h.bootSeq), UInt64(p.bootSeq)), ("tail_segment_id", h.tailSegmentID, p.tailSegmentID),
                    ("mono_hwm", h.state.monoHWM, p.state.monoHWM), ("records_total", h.state.recordsTotal, p.state.recordsTotal),
                    ("lost_total", h.state.lostTotal, p.state.lostTotal), ("dropped_total", h.state.droppedTotal, p.state.droppedTotal),
                    ("uplink_cursor", h.state.uplinkCursor, p.state.uplinkCursor), ("bo_event", UInt64(h.state.boEvent), UInt64(p.state.boEvent)),
                    ("ecc_err_cnt", UInt64(h.state.eccErrCnt), UInt64(p.state.eccErrCnt)), ("clock_steps", UInt64(h.state.clockSteps), UInt64(p.state.clockSteps)),
                ]
                for (name, now, before) in pairs where now < before {
                    return (.sequenceRegression, "the header's \(name) \(now) is below the previous frame's \(before)")
                }
                if h.ringSlots != p.ringSlots { return (.sequenceRegression, "ring_slots \(h.ringSlots) differs from the previous frame's \(p.ringSlots)") }
                if let tables = p.tables {
                    for source in tables.sources where (h.state.tables.lastSeq(source.name) ?? 0) < source.lastSeq {
                        return (.sequenceRegression, "the header's table lowers or drops source \(source.name)")
                    }
                }
            }
            if let cp = chainPoint, cp.passed {
                let a = h.state, b = cp.state
                let same = a.monoHWM == b.monoHWM && a.recordsTotal == b.recordsTotal && a.droppedTotal == b.droppedTotal
                    && a.uplinkCursor == b.uplinkCursor && a.boEvent == b.boEvent && a.clockSteps == b.clockSteps
                    && a.tables.names == b.tables.names && a.tables.lastSeqs == b.tables.lastSeqs
                    && Array(a.tables.badSlots.prefix(b.tables.badSlots.count)) == b.tables.badSlots
                if !same { return (.sealMismatch, "the header starts from a state other than that of the frame it continues") }
            }
            return nil
        }

        /// F6: orders that repeat.
        func regression(_ f: PackedFrameInfo, header h: PackedSegmentHeader) -> String? {
            if let first = f.records.first?.mono, first <= max(last?.state.monoHWM ?? 0, h.state.monoHWM) {
                return "first mono_ctr \(first) is not above the sealed mono_hwm \(max(last?.state.monoHWM ?? 0, h.state.monoHWM)): orders repeat"
            }
            var seen = sourceSeq
            for rec in f.records {
                let floor = max(seen[rec.source] ?? 0, h.state.tables.lastSeq(rec.source) ?? 0)
                if rec.seq <= floor { return "source \(rec.source) repeats seq \(rec.seq) (already at \(floor))" }
                seen[rec.source] = rec.seq
            }
            return nil
        }

        mutating func noteRecords(_ f: PackedFrameInfo, e: UInt64) {
            for rec in f.records where rec.source == SourceName.engine {
                switch rec.type {
                case .incomplete, .recovery:
                    recordNotes.append(PackedNote(note: "power_cut_explained", segmentID: e, frameID: f.frameID, detail: String(decoding: rec.payload, as: UTF8.self)))
                case .gap:
                    if let reason = (try? FlatJSON.parse(rec.payload))?.string("reason"), ["ring_overwrite", "uplink_acked", "tail_unreadable"].contains(reason) {
                        recordNotes.append(PackedNote(note: reason, segmentID: e, frameID: f.frameID, detail: String(decoding: rec.payload, as: UTF8.self)))
                    }
                default:
                    break
                }
            }
        }

        /// Item 5 in a segment below the head: frames past its chain point (signed by its key: fork;
        /// otherwise not_continued), and a frame written whole that does not decode.
        mutating func notePastChainPoint(_ w: PackedSegmentReader.Walk, from endID: UInt64, e: UInt64, keyOK: Bool, key: TrustedKey? = nil) {
            let base = geometry.slotOffset(Int(w.header.slotIndex))
            let past = w.frames.filter { $0.frameID >= endID }
            if let first = past.first {
                if keyOK, let forked = past.first(where: { f in w.header.sigAlg != .unsigned && (key?.verifies(f.signature, of: f.statement) ?? false) }) {
                    outsideFindings.append(Finding(reason: .fork, offset: base + UInt64(forked.offset),
                                                   detail: "segment \(e) holds signed frame \(forked.frameID) past the frame the next segment continues: a second continuation"))
                } else {
                    recordNotes.append(PackedNote(note: "not_continued", segmentID: e, frameID: first.frameID,
                                                  detail: "frames past the frame the next segment continues, not signed by the segment's key; nothing in them is taken"))
                }
            }
            // Frames written whole after where the walk stopped: the same search as in the head
            // segment, a note here (a stale sector passes a 32-bit CRC by chance; A.11 item 5).
            if frameAfterWalk(w, header: w.header) != nil {
                recordNotes.append(PackedNote(note: "not_continued", segmentID: e, frameID: w.header.firstFrameID &+ UInt64(w.frames.count),
                                              detail: "a frame whose CRC checks lies after where segment \(e)'s frames stop; nothing in it is taken"))
            }
            if endedAfterCRC(w.end), w.frames.last.map({ $0.frameID >= endID - 1 }) ?? true {
                let regression: Bool
                if case .state(let why) = w.end { regression = why.hasSuffix("goes back") } else { regression = false }
                outsideFindings.append(Finding(reason: regression ? .sequenceRegression : .crcMismatch, offset: base + UInt64(w.endOffset),
                                               detail: "segment \(e): a frame written whole past its history does not decode (\(w.end))"))
            }
        }

        /// Item 5 in the head segment: the first sector boundary past the walk's end holding a frame
        /// whose CRC checks (slot offset), or nil.
        func frameAfterWalk(_ w: PackedSegmentReader.Walk, header: PackedSegmentHeader) -> Int? {
            guard (try? device.read(at: geometry.slotOffset(Int(header.slotIndex)), into: buffer.bytes)) != nil else { return nil }
            let image = UnsafeRawBufferPointer(buffer.bytes)
            let slot = UnsafeRawBufferPointer(rebasing: image[0..<min(geometry.segmentSize, image.count)])
            return PackedSegmentReader.firstFrameWithCheckingCRC(slot, from: w.endOffset + geometry.sectorSize, sectorSize: geometry.sectorSize, header: header)
        }

        /// The head segment's walk ended after a CRC that checked (a whole frame that does not decode).
        func undecodableEnd(_ w: PackedSegmentReader.Walk) -> (regression: Bool, why: String)? {
            guard endedAfterCRC(w.end) else { return nil }
            if case .state(let why) = w.end { return (why.hasSuffix("goes back"), why) }
            return (false, "\(w.end)")
        }

        /// Item 5: the id of a committed segment in `slot` beyond the head, or nil.
        func committedBeyond(slot: Int, head H: UInt64) -> UInt64? {
            guard let w = walk(slot: slot), fits(w.header, slot: slot), w.header.storeUUID == store.storeUUID, w.header.deviceID == store.deviceID,
                  w.header.segmentID > H, w.header.segmentID < RecordBlock.bound else { return nil }
            let verifying = w.frames.filter { f in
                w.header.sigAlg == .unsigned ? options.allowUnsigned
                    : everTrusted.contains { $0.key.keyID == w.header.keyID && $0.epoch == w.header.keyEpoch && $0.key.algorithm == w.header.sigAlg
                        && $0.key.verifies(f.signature, of: f.statement) }
            }.count
            guard verifying >= 1, w.header.segmentID > H &+ 1 || verifying >= 2 else { return nil }
            return w.header.segmentID
        }

        /// Item 7.
        func checkAnchor(_ parsed: Result<FrameHead, SignedHead.Problem>, head H: UInt64, headFrame FH: UInt64, start: UInt64, report r: inout PackedVerifyReport) {
            func find(_ reason: VerifyReason, _ detail: String) { r.findings.append(Finding(reason: reason, offset: 0, detail: detail)) }
            let head: FrameHead
            switch parsed {
            case .success(let h): head = h
            case .failure(let e): return find(.anchorMalformed, e.description)
            }
            let a = head.statement
            let verified = a.sigAlg != 0 && head.verifies(with: everTrusted)
            guard verified || (options.allowUnsigned && a.sigAlg == 0) else {
                return find(.anchorBadSignature, "the anchor's signature does not verify with a key trusted at its epoch \(a.keyEpoch)")
            }
            if a.deviceID != store.deviceID || a.storeUUID != store.storeUUID {
                return find(.foreignSegment, "the anchor is for another device or store")
            }
            if let newest = last, newest.rollbackCtr < a.rollbackCtr {
                return find(.rollback, "the newest passing frame's rollback_ctr \(newest.rollbackCtr) is below the anchor's \(a.rollbackCtr): an older history")
            }
            if FH < a.frameID || H < a.segmentID {
                return find(.truncatedTail, "the store ends at frame \(FH) of segment \(H); the anchor proves frame \(a.frameID) of segment \(a.segmentID) was committed")
            }
            let f0 = startFirstFrameID ?? 0
            if let held = statements[a.frameID] {
                if held.segment != a.segmentID || held.statement != a.bytes {
                    return find(.fork, "frame \(a.frameID) differs from the one the anchor signed: the history was rewritten")
                }
            } else if a.frameID &+ 1 == f0 {
                if a.segmentID &+ 1 != start || (startFirstPassed && startPrevHash != a.frameHash) {
                    return find(.fork, "segment \(start) does not continue the frame the anchor signed: the history was rewritten")
                }
            } else if a.frameID &+ 1 < f0 || startFirstFrameID == nil {
                return find(.anchorNotRetained, "the anchor's frame \(a.frameID) is older than the oldest retained frame \(f0): nothing here proves this store continues the anchored history; verify against a newer signed head")
            }
            if let next = firstPassedAbove.first(where: { $0.frameID > a.frameID }) {
                let p = Passed(anchor: a), n = next.passed
                var why: String?
                if let first = next.firstMono, first <= p.state.monoHWM { why = "first mono_ctr \(first) is not above the anchor's mono_hwm \(p.state.monoHWM)" }
                let pairs: [(String, UInt64, UInt64)] = [
                    ("records_total", n.state.recordsTotal, p.state.recordsTotal), ("lost_total", n.state.lostTotal, p.state.lostTotal),
                    ("dropped_total", n.state.droppedTotal, p.state.droppedTotal), ("uplink_cursor", n.state.uplinkCursor, p.state.uplinkCursor),
                    ("bo_event", UInt64(n.state.boEvent), UInt64(p.state.boEvent)), ("ecc_err_cnt", UInt64(n.state.eccErrCnt), UInt64(p.state.eccErrCnt)),
                    ("clock_steps", UInt64(n.state.clockSteps), UInt64(p.state.clockSteps)), ("wrap_count", UInt64(n.wrapCount), UInt64(p.wrapCount)),
                    ("unexp_rst", UInt64(n.unexpRst), UInt64(p.unexpRst)), ("boot_seq", UInt64(n.bootSeq), UInt64(p.bootSeq)),
                    ("tail_segment_id", n.tailSegmentID, p.tailSegmentID),
                ]
                if why == nil, let bad = pairs.first(where: { $0.1 < $0.2 }) { why = "\(bad.0) \(bad.1) is below the anchor's \(bad.2)" }
                if why == nil, n.ringSlots != p.ringSlots { why = "ring_slots \(n.ringSlots) differs from the anchor's \(p.ringSlots)" }
                if let why { find(.sequenceRegression, "frame \(next.frameID) against the anchor's frame \(a.frameID): \(why)") }
            }
        }
    }
}

/// The --json lines of a format 6 verification (FORMAT.md A.11.3), without their newlines.
public enum PackedVerifyJSON {
    public static func lines(_ r: PackedVerifyReport) -> [String] {
        var out: [String] = []
        for s in r.segments {
            out.append("{\"kind\":\"segment\",\"segment_id\":\(s.segmentID),\"slot\":\(s.slot),\"offset\":\(s.offset),"
                + "\"first_frame_id\":\(s.firstFrameID.map(String.init) ?? "null"),\"frames\":\(s.frames.map(String.init) ?? "null"),"
                + "\"passed\":\(s.passedFrames),\"sig_verify\":\"\(s.passed ? "PASS" : "FAIL")\","
                + "\"reason\":\(s.reason.map { "\"\($0.rawValue)\"" } ?? "null"),\"key_epoch\":\(s.keyEpoch)}")
            for f in r.frameFailures where f.segmentID == s.segmentID {
                out.append("{\"kind\":\"frame\",\"segment_id\":\(f.segmentID),\"frame_id\":\(f.frameID),\"frames\":\(f.frames),"
                    + "\"offset\":\(f.offset),\"reason\":\"\(f.reason.rawValue)\",\"key_epoch\":\(f.keyEpoch)}")
            }
        }
        for f in r.findings {
            out.append("{\"kind\":\"finding\",\"reason\":\"\(f.reason.rawValue)\",\"offset\":\(f.offset),\"detail\":\"\(jsonEscaped(f.detail))\"}")
        }
        for n in r.notes {
            out.append("{\"kind\":\"note\",\"note\":\"\(n.note)\",\"segment_id\":\(n.segmentID),\"frame_id\":\(n.frameID),"
                + "\"detail\":\"\(jsonEscaped(n.detail))\"}")
        }
        out.append("{\"kind\":\"summary\",\"verdict\":\"\(r.passed ? "PASS" : "FAIL")\",\"segments\":\(r.segments.count),"
            + "\"passed\":\(r.segments.count - r.failedSegments),\"failed\":\(r.failedSegments),\"frames\":\(r.frames),"
            + "\"frames_passed\":\(r.framesPassed),\"frames_failed\":\(r.frames - r.framesPassed),"
            + "\"signed\":\(r.signed),\"sig_alg\":\"\(r.sigAlg.name)\","
            + "\"reasons\":[\(r.reasons.map { "\"\($0)\"" }.joined(separator: ","))]}")
        return out
    }

}
