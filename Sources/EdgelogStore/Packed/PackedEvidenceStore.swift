// The evidence store on format 6 (FORMAT.md appendix A, DESIGN.md section 13): the writer that puts
// the engine's own evidence on the record around the commits of `PackedLog`. What recovery found is
// written as incomplete, gap and recovery records; every reuse of the oldest segment as a gap
// record in the frame that reuses it; producer drops as drop records; and the ring-full policy,
// the uplink cursor, the brownout count and the time bookkeeping go into the sealed state or the
// metadata. Single-threaded: the commit pipeline calls it from one thread at a time.

import EdgelogCore

public final class PackedEvidenceStore {
    public let device: BlockDevice
    public let log: PackedLog
    public var policy: RingFullPolicy
    /// Device, firmware and signer every frame of this session carries.
    public let identity: SealIdentity
    /// The history found at open (before the session wrote anything).
    public let history: PackedHistory
    private let clock: () -> CaptureTime
    private var engineSeq: UInt64
    /// Drop notes and evidence that did not fit in their frame; written by the next one.
    private var carriedDrops: [DropNote] = []
    private var carriedEvidence: [(type: RecordType, json: EvidenceJSON)] = []
    private var carriedClosing: (type: RecordType, json: EvidenceJSON)?
    /// Evidence records that could not fit even an empty frame (a bound, not a path).
    public private(set) var oversizedEvidence = 0
    /// Set when the store refused to go on: nothing more is acknowledged.
    public private(set) var failure: StoreError?
    /// The first frame not yet acknowledged upstream (sealed with the next commit).
    private var uplinkCursor: UInt64
    /// bo_event as the next commit seals it.
    private var boEvent: UInt32
    /// The seal of the newest frame this writer stands on: the head it adopted (its own key's, or
    /// the chain's for a writer that does not sign), then each frame it commits. What the anchor
    /// file may name: never a frame a reader adopted by chain alone.
    public private(set) var headSeal: FrameSeal?

    init(log: PackedLog, history: PackedHistory, policy: RingFullPolicy, identity: SealIdentity, clock: @escaping () -> CaptureTime) {
        self.device = log.device
        self.log = log
        self.history = history
        self.policy = policy
        var identity = identity
        identity.deviceID = log.metadata.deviceID
        self.identity = identity
        self.clock = clock
        self.engineSeq = log.metadata.state.tables.lastSeq(SourceName.engine) ?? 0
        self.uplinkCursor = log.metadata.state.uplinkCursor
        self.boEvent = log.metadata.state.boEvent
        log.reclaim = { [unowned self] info, records in self.decideReclaim(info, &records) }
        headSeal = history.headFrame.map { FrameSeal(statement: $0.frame.statement, signature: $0.frame.signature) }
    }

    public var metadata: PackedMetadata { log.metadata }
    public var recovery: PackedRecovery { log.recovery }

    // MARK: format

    /// Writes a new, empty format 6 store. Refuses a device that holds a store (of any format) unless `force`.
    public static func format(device: BlockDevice, sectorSize: Int? = nil, segmentSize: Int, storeUUID: [UInt8], deviceID: [UInt8]? = nil,
                              wallNs: Int64, force: Bool) throws(StoreError) {
        guard storeUUID.count == 16 else { throw .invalidArgument("store uuid must be 16 bytes") }
        guard deviceID == nil || deviceID?.count == 16 else { throw .invalidArgument("device id must be 16 bytes") }
        if !force {
            let slot = AlignedBuffer(count: PackedGeometry.metadataSlotSize)
            for offset in [UInt64(0), UInt64(Layout.metadataSlotSize), UInt64(PackedGeometry.metadataSlotSize)]
            where offset + UInt64(PackedGeometry.metadataSlotSize) <= device.byteCount {
                do { try device.read(at: offset, into: slot.bytes) } catch { throw .device(error) }
                let magic = slot.bytes.le(0, as: UInt64.self)
                if magic == Layout.metadataMagic || magic == PackedMetadata.magic { throw .alreadyFormatted(device: device.name) }
            }
        }
        do {
            try PackedLog.format(device: device, sectorSize: sectorSize, segmentSize: segmentSize, storeUUID: storeUUID, deviceID: deviceID ?? storeUUID, wallNs: wallNs)
        } catch {
            throw storeError(error, device: device)
        }
    }

    // MARK: open

    /// Recovers the store (A.9), opens a writer session (clean_flag 0, rollback_ctr + 1), and commits
    /// what recovery found as evidence. `check` sees the recovered history first (the anchor
    /// comparison) and may refuse it; nothing is written then. `bootID` is the kernel's boot id.
    public static func open(device: BlockDevice, policy: RingFullPolicy = .pause, identity: SealIdentity = .unsigned(),
                            bootID: [UInt8]? = nil,
                            check: (PackedHistory) throws(StoreError) -> Void = { _ throws(StoreError) in },
                            clock: @escaping () -> CaptureTime) throws(StoreError) -> PackedEvidenceStore {
        var packedIdentity = identity.signer.map { PackedLog.PackedIdentity(deviceID: identity.deviceID, fwVerHash: identity.fwVerHash, signer: $0) }
            ?? PackedLog.PackedIdentity(deviceID: identity.deviceID, fwVerHash: identity.fwVerHash)
        if let predecessor = identity.predecessorVerifies {
            packedIdentity.trustsHead = { frame, header in
                header.sigAlg != .unsigned && predecessor(header.keyID, header.keyEpoch, header.sigAlg.rawValue, frame.signature, frame.statement)
            }
        }
        let history: PackedHistory
        do {
            history = try PackedHistory.analyze(device: device, adopts: PackedLog.adoption(packedIdentity))
        } catch {
            throw storeError(error, device: device)
        }
        try check(history)
        var sessionIdentity = packedIdentity
        sessionIdentity.deviceID = history.metadata.deviceID
        let log: PackedLog
        do {
            log = try PackedLog(device: device, identity: sessionIdentity, history: history, bootID: bootID,
                                clock: { UInt64(clamping: clock().bootNs) })
        } catch {
            throw storeError(error, device: device)
        }
        let store = PackedEvidenceStore(log: log, history: history, policy: policy, identity: identity, clock: clock)
        try store.noteRecovery()
        return store
    }

    /// The capture time of an engine evidence record: the clock's, with the last sync the store
    /// knows when the clock's own sample has none (FORMAT.md 3.2).
    private func engineTime() -> CaptureTime {
        var time = clock()
        if time.lastSyncNs == 0 { time.lastSyncNs = log.metadata.time.lastSyncWallNs }
        return time
    }

    /// Commits the incomplete, gap and recovery records that say what recovery found (FORMAT.md A.10),
    /// when it found anything: an unclean stop, a torn frame, frames adopted past the metadata's
    /// head, tails given up, a frame refused.
    private func noteRecovery() throws(StoreError) {
        let r = log.recovery
        guard !r.cleanBefore || r.torn || r.framesAdopted > 0 || r.tailsGivenUp > 0 || r.refusedFrameID != nil else { return }
        let builder = makeBuilder()
        var items: [(RecordType, EvidenceJSON)] = []
        if r.torn {
            // Nothing of a torn frame is kept: its bytes were never sealed (FORMAT.md 4).
            var json = EvidenceJSON()
            json.add("reason", .word("torn_frame"))
            json.add("after_frame_id", history.headFrameID)
            items.append((.incomplete, json))
        }
        let firstGivenUp = history.tailSegmentID &- UInt64(r.tailsGivenUp)
        for lost in 0..<UInt64(r.tailsGivenUp) {
            var json = EvidenceJSON()
            json.add("reason", .word("tail_unreadable"))
            json.add("lost_segment_id", firstGivenUp &+ lost)
            json.add("lost_records", nil)
            json.add("first_mono", nil)
            json.add("last_mono", nil)
            items.append((.gap, json))
        }
        var json = EvidenceJSON()
        json.add("unclean_shutdown", .bool(!r.cleanBefore))
        json.add("metadata_slot", .word(Layout.slotName(r.metadataSlot)))
        json.add("generation", r.generation)
        json.add("frames_adopted", UInt64(r.framesAdopted))
        json.add("segments_adopted", UInt64(r.segmentsAdopted))
        json.add("torn", .bool(r.torn))
        json.add("refused_frame_id", r.refusedFrameID)
        json.add("tail_advanced", UInt64(r.tailsGivenUp))
        // The first three repeat what the chosen metadata slot said, and the metadata is not sealed:
        // the record names them, so that nobody reads them as facts the signature vouches for.
        json.add("from_metadata", .words(["unclean_shutdown", "metadata_slot", "generation"]))
        items.append((.recovery, json))
        builder.pendingEvidence = items.map { (type: $0.0, json: $0.1) }
        reserveEvidence(builder, count: items.count + 2)
        // A full ring this session may not reuse cannot take the recovery frame: the metadata
        // already counts the unexpected reset; the records are carried to the first commit that can.
        let seq = engineSeq
        do {
            _ = try commit(builder)
        } catch .ringFull {
            engineSeq = seq
            carriedEvidence += items.map { (type: $0.0, json: $0.1) }
        }
    }

    /// A frame builder for this store: its records carry the current boot_seq.
    public func makeBuilder(capacity: Int = 32 << 10) -> FrameBuilder {
        let builder = FrameBuilder(capacity: min(capacity, log.metadata.geometry.segmentSize / 4))
        builder.bootSeq = UInt16(truncatingIfNeeded: log.metadata.bootSeq)
        return builder
    }

    /// Mono values for `count` evidence records after everything committed so far, for a builder
    /// filled without a sequencer (recovery, tools).
    private func reserveEvidence(_ builder: FrameBuilder, count: Int) {
        let base = max(log.metadata.state.monoHWM, builder.lastMono)
        builder.evidenceMono = base + 1
        builder.evidenceMonoLimit = base + UInt64(count)
    }

    /// True while evidence waits for room in a frame; close() must not end before it is written.
    public var hasCarriedEvidence: Bool { !carriedDrops.isEmpty || !carriedEvidence.isEmpty || carriedClosing != nil }

    /// Commits one frame holding a single engine evidence record, for tools that hold the store open
    /// without a pipeline.
    /// A key rotation's frame is followed at once by a metadata write naming it, and ends its
    /// segment: the new key signs from the next segment on (its key is in the header). A cut before
    /// that metadata write leaves the frame past the metadata's head, and recovery under the new
    /// key adopts it as its predecessor's (FORMAT.md A.9).
    public func commitEvidence(_ type: RecordType, _ json: EvidenceJSON) throws(StoreError) -> CommitReceipt? {
        let builder = makeBuilder()
        builder.pendingEvidence = [(type, json)]
        reserveEvidence(builder, count: 3)
        let receipt = try commit(builder)
        if type == .keyRotation {
            KillPoint.reach("rotation.frame_written")
            do { try log.checkpoint(clean: false) } catch { throw Self.storeError(error, device: device) }
            log.endSegment()
        }
        return receipt
    }

    /// The starts recorded in the newest frames this writer can show are its own (BootHistory).
    public func recentBoots(maxSegments: Int, maxBoots: Int) -> [BootEntry] {
        BootHistory.recent(device: device, history: history, adopts: PackedLog.adoption(log.identity), maxSegments: maxSegments, maxBoots: maxBoots)
    }

    /// Times `samples` metadata writes, each followed by a flush (the fixed cost of a commit that
    /// writes the metadata), then, when the slot the next segment will use holds nothing the store
    /// keeps (the ring is not full), `samples` writes of a commit buffer's size of zeros there with
    /// a flush each (the cost that grows with the bytes committed). Nothing the store holds changes.
    public func measureCommitCost(samples: Int, clock: () -> Int64) throws(StoreError) -> (flushNs: [Int64], segmentNs: [Int64]) {
        var flushNs: [Int64] = []
        var segmentNs: [Int64] = []
        for _ in 0..<max(samples, 1) {
            let start = clock()
            do { try log.checkpoint(clean: false) } catch { throw Self.storeError(error, device: device) }
            flushNs.append(clock() - start)
        }
        let m = log.metadata
        let slot = m.headFrameID == 0 ? m.tailSlot : m.nextSlot(after: m.headSlot)
        guard let slot, m.headFrameID == 0 || slot != m.tailSlot else { return (flushNs, []) }
        let zeros = AlignedBuffer(count: min(makeBuilder().capacity, m.geometry.segmentSize))
        for _ in 0..<max(samples, 1) {
            let start = clock()
            do {
                try device.write(at: m.geometry.slotOffset(slot), from: UnsafeRawBufferPointer(zeros.bytes))
                try device.flush()
            } catch {
                throw .device(error)
            }
            segmentNs.append(clock() - start)
        }
        return (flushNs, segmentNs)
    }

    /// The brownout the next commit records (bo_event + 1, sealed with it).
    public func noteBrownout() {
        boEvent = boEvent == UInt32.max ? boEvent : boEvent + 1
    }

    /// Records that the uplink has acknowledged every frame up to `frameID` (sealed with the next
    /// commit). overwrite-acked may then reuse segments all of whose frames are acknowledged.
    public func acknowledgeUpstream(throughFrame frameID: UInt64) {
        guard frameID < RecordBlock.bound else { return }
        uplinkCursor = max(uplinkCursor, frameID + 1)
    }

    // MARK: commit

    private func carry(_ drop: DropNote, into notes: inout [DropNote]) {
        if let i = notes.firstIndex(where: { $0.source == drop.source }) {
            notes[i].firstSeq = min(notes[i].firstSeq, drop.firstSeq)
            notes[i].lastSeq = max(notes[i].lastSeq, drop.lastSeq)
            notes[i].count += drop.count
        } else {
            notes.append(drop)
        }
    }

    /// The next evidence mono for `builder`: inside its reservation, after its records.
    private func evidenceMono(_ builder: FrameBuilder) -> UInt64 {
        let mono = max(builder.evidenceMono, builder.lastMono + 1)
        builder.evidenceMono = mono + 1
        return mono
    }

    /// Appends an engine evidence record; false (and no seq used) when the frame has no room.
    @discardableResult
    private func appendEvidence(_ type: RecordType, _ json: EvidenceJSON, to builder: FrameBuilder, time: CaptureTime) -> Bool {
        guard builder.append(type: type, source: SourceName.engine, seq: engineSeq + 1, mono: evidenceMono(builder), time: time,
                             payload: json.bytes, evidence: true) else { return false }
        engineSeq += 1
        return true
    }

    /// The reclaim hook of the log: the policy decides, and a gap record goes into the frame that
    /// reuses the oldest segment, before a closing (brownout) record.
    private func decideReclaim(_ info: PackedReclaim, _ records: inout [PackedRecord]) -> ReclaimVerdict {
        let acked: Bool
        switch policy {
        case .pause:
            return .refuse
        case .overwriteOldest:
            acked = false
        case .overwriteAcked:
            // Every frame of the segment acknowledged; a segment that no longer reads holds nothing
            // to keep, and refusing it would stop the writer for good.
            if let last = info.lastFrameID {
                guard last < uplinkCursor else { return .refuse }
                acked = true
            } else {
                acked = false
            }
        }
        var json = EvidenceJSON()
        json.add("reason", .word(acked ? "uplink_acked" : (info.records == nil ? "tail_unreadable" : "ring_overwrite")))
        json.add("lost_segment_id", info.segmentID)
        json.add("lost_records", info.records)
        json.add("first_mono", info.firstMono)
        json.add("last_mono", info.lastMono)
        // The gap record takes the place (seq and mono) of a closing record, which moves after it.
        let closingAt = records.last.map { $0.source == SourceName.engine && Self.closingTypes.contains($0.rawType) } ?? false
            ? records.count - 1 : nil
        // Its mono comes from the builder's evidence reservation: above every record of this frame,
        // below every record gathered after it.
        guard let builder = preparing else { return .refuse }
        var gap = PackedRecord(rawType: RecordType.gap.rawValue, source: SourceName.engine, seq: pendingSeq + 1,
                               mono: evidenceMono(builder), time: engineTime(), bootSeq: builder.bootSeq, payload: json.bytes)
        if let at = closingAt {
            let closing = records[at]
            gap.seq = closing.seq
            gap.mono = closing.mono
            var moved = closing
            moved.seq = closing.seq + 1
            moved.mono = evidenceMono(builder)
            records[at] = gap
            records.append(moved)
        } else {
            records.append(gap)
        }
        pendingSeq += 1
        return acked ? .acknowledged : .lost
    }

    private static let closingTypes: Set<UInt16> = [RecordType.brownout.rawValue]
    /// The engine's seq as the frame being prepared uses it (a gap record added in prepare).
    private var pendingSeq: UInt64 = 0
    /// The builder whose frame is being prepared (the gap record's mono comes from its reservation).
    private var preparing: FrameBuilder?

    /// Commits the builder's records and the engine evidence due as one frame: durable when this
    /// returns. `markClean` also writes the metadata with clean_flag 1 (the safe-commit window):
    /// nothing more may be written until `markOpen`.
    public func commit(_ builder: FrameBuilder, markClean: Bool = false) throws(StoreError) -> CommitReceipt? {
        if let failure { throw .closed("an earlier failure stopped the writer: \(failure)") }
        let time = engineTime()
        var all = carriedDrops
        carriedDrops.removeAll()
        for drop in builder.pendingDrops { carry(drop, into: &all) }
        builder.pendingDrops.removeAll()
        for drop in all {
            var json = EvidenceJSON()
            json.add("reason", .word("backpressure"))
            json.add("source", .word(drop.source))
            json.add("dropped", drop.count)
            json.add("first_seq", drop.firstSeq)
            json.add("last_seq", drop.lastSeq)
            if appendEvidence(.drop, json, to: builder, time: time) {
                builder.addDropped(drop.count)
            } else {
                carry(drop, into: &carriedDrops)
            }
        }
        var evidence = carriedEvidence
        carriedEvidence.removeAll()
        evidence += builder.pendingEvidence
        builder.pendingEvidence.removeAll()
        for item in evidence where !appendEvidence(item.type, item.json, to: builder, time: time) {
            if builder.isEmpty { oversizedEvidence += 1 } else { carriedEvidence.append(item) }
        }
        let closing = carriedClosing ?? builder.closingEvidence
        if carriedClosing != nil, let mine = builder.closingEvidence { carriedEvidence.append(mine) }
        carriedClosing = nil
        builder.closingEvidence = nil
        // The closing record goes last; one that does not fit waits for the next commit.
        if let record = closing, !appendEvidence(record.type, record.json, to: builder, time: time) {
            if builder.isEmpty { oversizedEvidence += 1 } else { carriedClosing = record }
        }
        guard !builder.isEmpty else { return nil }

        let state = log.metadata.state
        var changes: [(FrameStateField, UInt64)] = []
        let dropped = state.droppedTotal <= UInt64.max - builder.droppedRecords ? state.droppedTotal + builder.droppedRecords : UInt64.max
        if dropped != state.droppedTotal { changes.append((.droppedTotal, dropped)) }
        if uplinkCursor > state.uplinkCursor { changes.append((.uplinkCursor, uplinkCursor)) }
        if boEvent > state.boEvent { changes.append((.boEvent, UInt64(boEvent))) }
        if let stats = builder.timeStats {
            if stats.clockSteps > state.clockSteps { changes.append((.clockSteps, UInt64(stats.clockSteps))) }
            log.noteUnsealed { $0.time = stats }
        }
        pendingSeq = engineSeq
        preparing = builder
        defer { preparing = nil }
        let frame: PackedLog.PreparedFrame
        do {
            // As written: a frame that opened a segment in a slot that failed was sealed again
            // in the next good slot.
            frame = try log.write(log.prepare(builder.records, changes: changes))
            engineSeq = pendingSeq
            if markClean { KillPoint.reach("clean_commit.written") }
            if markClean && !hasCarriedEvidence { try log.checkpoint(clean: true) }
        } catch {
            let e = Self.storeError(error, device: device, policy: policy)
            // A full ring wrote nothing: the records stay unacknowledged and the store healthy.
            if case .ringFull = e { throw e }
            failure = e
            throw e
        }
        var receipt = CommitReceipt(commitID: frame.frameID, segmentID: frame.segmentID, slot: frame.slot, recordCount: frame.records.count,
                                    recordsTotal: log.metadata.state.recordsTotal, lastMono: frame.records.last?.mono ?? 0,
                                    sources: builder.sourceLastSeq.map { .init(name: $0.name, firstSeq: $0.first, lastSeq: $0.last, count: $0.count) },
                                    seal: nil)
        receipt.frameSeal = FrameSeal(statement: frame.statement, signature: frame.signature)
        headSeal = receipt.frameSeal
        return receipt
    }

    /// Marks the store open again after a safe-commit window left it clean, before anything else is written.
    public func markOpen() throws(StoreError) {
        if failure != nil { return }
        do { try log.checkpoint(clean: false) } catch { throw Self.storeError(error, device: device) }
    }

    /// Marks the store cleanly closed. Call after the last commit.
    public func close() throws(StoreError) {
        if failure != nil { return }
        do { try log.close() } catch { throw Self.storeError(error, device: device) }
    }

    // MARK: errors

    public static func storeError(_ error: PackedLogError, device: BlockDevice, policy: RingFullPolicy = .pause) -> StoreError {
        switch error {
        case .notAStore(let why): return .notAStore(device: device.name, reasons: [why])
        case .otherFormat(let v) where v > PackedMetadata.formatVersion:
            return .newerFormat(device: device.name, found: v, supported: PackedMetadata.formatVersion)
        case .otherFormat(let v): return .olderFormat(device: device.name, found: v, supported: PackedMetadata.formatVersion)
        case .truncated(let storeSize, let deviceSize): return .truncated(device: device.name, storeSize: storeSize, deviceSize: deviceSize)
        case .sectorMismatch(let store, let deviceSector): return .sectorMismatch(device: device.name, storeSectorSize: store, deviceSectorSize: deviceSector)
        case .device(let e): return .device(e)
        case .alreadyFormatted: return .alreadyFormatted(device: device.name)
        case .badGeometry(let why): return .invalidArgument(why)
        case .frameTooLarge(let n): return .recordTooLarge(bytes: n, capacity: n)
        case .write(.signing(let why)): return .signing(why)
        case .write(let problem): return .invalidArgument("frame not written: \(problem)")
        case .closed: return .closed("the log is closed")
        case .headMissing(let id), .headUnverified(let id):
            return .headFrameUnverified(device: device.name, frameID: id, detail: error.description)
        case .outOfOrder, .writeInFlight, .badIdentity: return .invalidArgument(error.description)
        case .implausible(let fields): return .implausibleMetadata(device: device.name, fields: fields)
        case .metadataContradicts(let fields): return .metadataContradictsSeal(device: device.name, fields: fields)
        case .ringFull(let id):
            return .ringFull(policy: policy, detail: "every segment holds records and the oldest (\(id))"
                + (policy == .overwriteAcked ? " is not yet acknowledged upstream" : " may not be reused") + "; nothing more is accepted")
        }
    }
}

/// A format 6 frame's seal: its statement (A.7) and signature.
public struct FrameSeal: Sendable, Equatable {
    public var statement: [UInt8]
    public var signature: [UInt8]
}
