// Recovery's analysis (docs/FORMAT.md section 5), read-only: which metadata slot is chosen, which
// segments written after it are adopted, and what was found torn. inspect and export use it as is;
// EvidenceStore.open applies it. Its cost is the two slots, the head segment and the uncommitted
// tail: it never reads the segments between tail and head.

import EdgelogCore

public struct TornSegment: Equatable, Sendable {
    public var segmentID: UInt64
    public var slot: Int
    public var reason: String
    /// Records that check one by one before the tear. None is kept: the writer never sealed them,
    /// so keeping them would let anyone who can write the card have the device sign them.
    public var readableCount: Int
    /// Payload bytes the torn header declares: all of them are quarantined.
    public var quarantinedBytes: Int
}

public struct StoreAnalysis: Sendable {
    /// The metadata to continue from: the chosen slot with adopted segments applied.
    public var state: Metadata
    /// The chosen slot as read, before the forward scan applied anything.
    public var chosen: Metadata
    public var chosenSlot: Int
    public var chosenGeneration: UInt64 { chosen.generation }
    /// Highest generation seen in any valid slot: the next write goes above it.
    public var maxGeneration: UInt64
    public var slotProblems: [(slot: Int, problem: String)] = []
    /// Valid slots passed over because the segment they name as newest is not valid.
    public var passedOver: [Int] = []
    /// Neither slot's newest segment was valid; the newest slot was taken anyway.
    public var headMissing = false
    public var adopted: [SegmentInfo] = []
    /// Tail segments given up because a cut reclaim had overwritten them.
    public var tailLost: [UInt64] = []
    public var torn: TornSegment?
    /// The seal of the head segment (the chosen slot's, or the last adopted): what the metadata
    /// must agree with (FORMAT.md 9 item 4). Nil when there is no head or it is not valid.
    public var headSeal: SealView?
    /// A valid segment after the head that the writer did not adopt because its signature is not
    /// the writer key's: bytes the writer never sealed (DESIGN.md 9c). Its id, or nil.
    public var refusedSegment: UInt64?
    /// Why the forward scan stopped.
    public var scanStop = ""
    public var readErrors = 0
    public var uncleanShutdown: Bool { !chosen.clean }

    /// An invalid metadata slot is repaired too, even in a cleanly closed store: a power cut during
    /// the first metadata write after an open leaves one (the other slot still holds the last clean
    /// state), and a store left so would fail verification until the next commit rewrote the slot.
    public var needsRepair: Bool {
        uncleanShutdown || torn != nil || !adopted.isEmpty || !passedOver.isEmpty || headMissing || !tailLost.isEmpty
            || !slotProblems.isEmpty || refusedSegment != nil
    }

    public var verifyStat: UInt32 {
        var bits: UInt32 = 0
        for (slot, _) in slotProblems { bits |= slot == 0 ? 1 : 2 }
        if !passedOver.isEmpty { bits |= 4 }
        if torn != nil { bits |= 8 }
        if !adopted.isEmpty { bits |= 16 }
        if readErrors > 0 { bits |= 32 }
        if headMissing { bits |= 64 }
        return bits
    }
}

extension EvidenceStore {
    /// Reads both metadata slots and the uncommitted tail; writes nothing. `adopts`, when given,
    /// must accept a segment's seal before the forward scan adopts it: the writer passes its own
    /// key's signature check, so bytes it never sealed cannot steer it or join its chain. Readers
    /// without a key adopt by hash and chain, as FORMAT.md section 5 says.
    public static func analyze(device: BlockDevice, adopts: ((SealView) -> Bool)? = nil) throws(StoreError) -> StoreAnalysis {
        let slotBuffer = AlignedBuffer(count: Layout.metadataSlotSize)
        var valid: [(slot: Int, meta: Metadata)] = []
        var problems: [(Int, String)] = []
        var newer: UInt16?
        var truncatedTo: UInt64?
        var readErrors = 0
        guard device.byteCount >= Layout.ringOffset else {
            throw .notAStore(device: device.name, reasons: ["only \(device.byteCount) bytes: too small to hold a store"])
        }
        for (index, offset) in Layout.metadataSlotOffsets.enumerated() {
            do {
                try device.read(at: offset, into: slotBuffer.bytes)
                let meta = try Metadata.decode(UnsafeRawBufferPointer(slotBuffer.bytes))
                if meta.geometry.storeSize > device.byteCount {
                    truncatedTo = meta.geometry.storeSize
                    problems.append((index, "describes \(meta.geometry.storeSize) bytes but the device has \(device.byteCount)"))
                } else {
                    valid.append((index, meta))
                }
            } catch let error as DeviceError {
                readErrors += 1
                problems.append((index, "unreadable: \(error)"))
            } catch let problem as Metadata.Problem {
                if case .newerFormat(let v) = problem { newer = v }
                problems.append((index, problem.description))
            } catch {
                problems.append((index, "\(error)"))
            }
        }
        // A slot written by a newer edgelog means a newer writer has had this store: refuse it
        // whole rather than fall back to the older slot and undo that writer's work.
        if let newer {
            throw .newerFormat(device: device.name, found: newer, supported: Layout.formatVersion)
        }
        if let truncatedTo, valid.isEmpty {
            throw .truncated(device: device.name, storeSize: truncatedTo, deviceSize: device.byteCount)
        }
        guard !valid.isEmpty else {
            throw .notAStore(device: device.name, reasons: problems.map { "slot \(Layout.slotName($0.0)): \($0.1)" })
        }
        valid.sort { $0.meta.generation > $1.meta.generation }
        let newest = valid[0].meta
        // Slots of another store (a cut format) are not candidates for this one.
        valid = valid.filter { $0.meta.storeUUID == newest.storeUUID && $0.meta.geometry == newest.geometry }
        let geometry = newest.geometry
        let segment = AlignedBuffer(count: geometry.segmentSize)

        func readSlot(_ slot: Int) -> Bool {
            do {
                try device.read(at: geometry.slotOffset(slot), into: segment.bytes)
                return true
            } catch {
                readErrors += 1
                return false
            }
        }

        // Choose: the newest slot whose newest segment checks.
        var chosen: (slot: Int, meta: Metadata)?
        var headSeal: SealView?
        var passedOver: [Int] = []
        for candidate in valid {
            let m = candidate.meta
            if m.ringIsEmpty {
                chosen = candidate
                break
            }
            if readSlot(m.headSlot),
               let head = try? SegmentReader.validate(UnsafeRawBufferPointer(segment.bytes), slot: m.headSlot, expectedID: m.headSegmentID,
                                                      geometry: geometry, storeUUID: m.storeUUID),
               head.bodyCRC == m.headCRC {
                chosen = candidate
                headSeal = head.seal
                break
            }
            passedOver.append(candidate.slot)
        }
        let headMissing = chosen == nil
        let pick = chosen ?? valid[0]
        if headMissing { passedOver.removeAll { $0 == pick.slot } }

        var analysis = StoreAnalysis(state: pick.meta, chosen: pick.meta, chosenSlot: pick.slot, maxGeneration: newest.generation)
        analysis.slotProblems = problems
        analysis.passedOver = passedOver
        analysis.headMissing = headMissing
        analysis.headSeal = headSeal
        var state = pick.meta

        // Forward scan: adopt segments whose commit wrote the segment but not the metadata.
        while let slot = state.nextWriteSlot {
            let expected = state.headSegmentID + 1
            let reclaimsTail = state.ringIsFull
            guard readSlot(slot) else {
                analysis.scanStop = "slot \(slot) unreadable"
                break
            }
            let image = UnsafeRawBufferPointer(segment.bytes)
            // A segment beyond the head counts only if it chains onto the head (prev_crc): a valid
            // segment that followed an older version of the head (one recovery has since replaced)
            // is stale, whatever its id.
            let header = try? SegmentReader.header(image, geometry: geometry, storeUUID: state.storeUUID)
            let follows = header?.prevCRC == state.headCRC
            do throws(SegmentProblem) {
                let info = try SegmentReader.validate(image, slot: slot, expectedID: expected, geometry: geometry, storeUUID: state.storeUUID)
                guard follows else { throw .stale(segmentID: info.segmentID) }
                // hash_head moves only to a segment whose hash checks and that chains onto it.
                guard let seal = info.seal, info.prevHash == state.hashHead,
                      SegmentReader.computedHash(image, info: info) == seal.statement.segmentHash
                else { throw .noHeader("segment \(info.segmentID) fails its hash or hash chain check") }
                if let adopts, !adopts(seal) {
                    analysis.refusedSegment = info.segmentID
                    throw .badSeal("segment \(info.segmentID) is not signed by the writer's key: not adopted")
                }
                apply(adopted: info, image: image, to: &state, reclaimedTail: reclaimsTail)
                analysis.adopted.append(info)
                analysis.headSeal = info.seal
            } catch {
                analysis.scanStop = "slot \(slot): \(error)" + (follows ? "" : " (does not follow the head)")
                if case .torn(let why) = error, follows, let info = header {
                    let readable = SegmentReader.readableRecords(image, info: info, geometry: geometry)
                    analysis.torn = TornSegment(segmentID: expected, slot: slot, reason: why, readableCount: readable.count,
                                                quarantinedBytes: readable.declaredBytes)
                }
                // A cut reclaim may have damaged the tail segment it was overwriting: if the tail no
                // longer checks, it is given up, and the recovery records say so. Only after an
                // unclean stop (a clean store had no commit in flight) and only if the slot no longer
                // holds the tail's own header (a reclaim overwrites it first): otherwise the damage is
                // the medium's, reported by export, never repaired away.
                // (A slot whose header names the tail is either the intact tail or media damage, so
                // the header alone decides; the tail cannot be valid without it.)
                if reclaimsTail, slot == state.tailSlot, !pick.meta.clean {
                    let namesTail = header.map { $0.segmentID == state.tailSegmentID && $0.slot == slot } ?? false
                    if !namesTail {
                        analysis.tailLost.append(state.tailSegmentID)
                        advanceTail(&state)
                    }
                }
                break
            }
        }
        analysis.readErrors = readErrors
        state.eccErrCnt &+= UInt32(readErrors)
        analysis.state = state
        return analysis
    }

    static func advanceTail(_ state: inout Metadata) {
        state.tailSlot = state.nextSlot(after: state.tailSlot) ?? state.tailSlot
        state.tailSegmentID += 1
    }

    /// Folds one committed segment into the metadata, as its commit's metadata write would have.
    static func apply(adopted info: SegmentInfo, image: UnsafeRawBufferPointer, to state: inout Metadata, reclaimedTail: Bool) {
        if reclaimedTail { advanceTail(&state) }
        if state.ringIsEmpty {
            state.tailSlot = info.slot
            state.tailSegmentID = info.segmentID
        }
        if info.slot < state.headSlot && state.headSegmentID > 0 { state.wrapCount &+= 1 }
        state.headSlot = info.slot
        state.headSegmentID = info.segmentID
        state.headCRC = info.bodyCRC
        if let statement = info.seal?.statement {
            state.hashHead = statement.segmentHash
            // The commit's time bookkeeping is in its metadata write, which did not land; its seal
            // carries the step count (the rest of the time fields are not sealed).
            state.time.clockSteps = statement.sealed.clockSteps
            // A brownout is counted by the window's own commit, so the count is that commit's.
            state.boEvent = statement.sealed.boEvent
            // What a writer raises between commits (an open, a recovery, acknowledgments, read
            // errors) is sealed as it was at this commit: never below that.
            let t = statement.sealed
            state.unexpRst = max(state.unexpRst, t.unexpRst)
            state.eccErrCnt = max(state.eccErrCnt, t.eccErrCnt)
            state.bootSeq = max(state.bootSeq, t.bootSeq)
            state.uplinkCursor = max(state.uplinkCursor, t.uplinkCursor)
            state.rollbackCtr = max(state.rollbackCtr, statement.rollbackCtr)
            state.keyID = statement.keyID
            state.keyEpoch = statement.keyEpoch
            state.sigAlg = statement.sigAlg
            state.keySrc = statement.keySrc
        }
        state.commitID = info.commitID
        state.monoHWM = max(state.monoHWM, info.lastMono)
        state.lostTotal &+= UInt64(info.lostRecords)
        state.droppedTotal &+= UInt64(info.droppedRecords)
        SegmentReader.forEachRecord(image, info: info) { record in
            if record.rawType == RecordType.data.rawValue { state.recordsTotal &+= 1 }
            state.noteSeq(source: record.sourceName, seq: record.seq)
        }
    }
}

extension Metadata {
    /// Raises a source's last seq; adds the source when new (the table is bounded; see StoreError.sourceTableFull).
    mutating func noteSeq(source: String, seq: UInt64) {
        if let i = sources.firstIndex(where: { $0.name == source }) {
            sources[i].lastSeq = max(sources[i].lastSeq, seq)
        } else if sources.count < Layout.maxSources {
            sources.append(SourceEntry(name: source, lastSeq: seq))
        }
    }
}

extension StoreAnalysis {
    /// What recovery found or will do, in one line for a person (format 5; PackedHistory.recoverySummary for format 6).
    public var recoverySummary: String {
        var parts: [String] = []
        if uncleanShutdown { parts.append("last shutdown was not clean") }
        if !adopted.isEmpty {
            parts.append("adopted \(adopted.count) segment(s) whose metadata write was cut (read by hash and chain; a writer that signs "
                + "adopts only segments its own key signed, and edgelog verify checks the signatures)")
        }
        if let torn = torn {
            parts.append("segment \(torn.segmentID) in slot \(torn.slot) was torn (\(torn.reason)): \(torn.readableCount) record(s) readable, none kept (never sealed), \(torn.quarantinedBytes) byte(s) quarantined")
        }
        for (slot, problem) in slotProblems { parts.append("metadata slot \(Layout.slotName(slot)) was invalid (\(problem)) and is rewritten") }
        if !passedOver.isEmpty { parts.append("metadata slot \(passedOver.map(Layout.slotName).joined(separator: ",")) passed over: its newest segment did not check") }
        if !tailLost.isEmpty { parts.append("tail segment(s) \(tailLost.map(String.init).joined(separator: ",")) lost to an interrupted reclaim") }
        if headMissing { parts.append("neither metadata slot's newest segment checks: no signed state vouches for the metadata, and a writer that signs refuses this store") }
        return parts.isEmpty ? "nothing to do" : parts.joined(separator: "; ")
    }
}
