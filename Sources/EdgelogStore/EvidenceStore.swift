// The writer of the evidence store: format, open (recovery), commit, close (docs/DESIGN.md).
// Single-threaded: the commit pipeline calls it from its committer thread only.

import EdgelogCore

/// What one durable commit contained, for acknowledgements.
public struct CommitReceipt: Sendable, Equatable {
    public struct SourceRange: Sendable, Equatable {
        public var name: String
        public var firstSeq: UInt64
        public var lastSeq: UInt64
        public var count: Int
    }
    public var commitID: UInt64
    public var segmentID: UInt64
    public var slot: Int
    public var recordCount: Int
    /// records_total after this commit (data records over the life of the store).
    public var recordsTotal: UInt64 = 0
    /// mono_ctr of the segment's last record.
    public var lastMono: UInt64 = 0
    public var sources: [SourceRange]
    /// The commit's seal (statement and signature): the signed head after this commit.
    public var seal: SealView?
    /// Format 6: the frame's statement and signature.
    public var frameSeal: FrameSeal?
    /// Made by a safe-commit window (or the resume after it): nothing else may write meanwhile.
    public var inPowerWindow = false

    public func range(of source: String) -> SourceRange? { sources.first { $0.name == source } }
}

public final class EvidenceStore {
    public static let maxWriteAttempts = 4

    public let device: BlockDevice
    public private(set) var metadata: Metadata
    public var policy: RingFullPolicy
    /// Device, firmware and signer every seal of this session carries.
    public let identity: SealIdentity
    private let clock: () -> CaptureTime
    private let metaBuffer = AlignedBuffer(count: Layout.metadataSlotSize)
    /// The tail segment read whole before a reclaim (allocated at the first one).
    private var tailBuffer: AlignedBuffer?
    private var engineSeq: UInt64
    /// Drop notes that did not fit in the segment of their commit; written by the next one.
    private var carriedDrops: [DropNote] = []
    /// Engine evidence (resume, budget) that did not fit its segment; written by the next one.
    private var carriedEvidence: [(type: RecordType, json: EvidenceJSON)] = []
    /// A closing record (brownout) that did not fit: the next commit ends with it.
    private var carriedClosing: (type: RecordType, json: EvidenceJSON)?
    /// Evidence records that could not fit even an empty segment (never with the engine's own
    /// records; a bound, not a path): counted, not carried forever.
    public private(set) var oversizedEvidence = 0
    /// Set when writes kept failing: nothing more is acknowledged.
    public private(set) var failure: StoreError?
    /// Write and flush errors met (each also remapped a slot or was retried).
    public private(set) var writeErrors = 0

    init(device: BlockDevice, metadata: Metadata, policy: RingFullPolicy, identity: SealIdentity,
         clock: @escaping () -> CaptureTime) {
        self.device = device
        self.metadata = metadata
        self.policy = policy
        // Seals repeat the device id fixed at format, whatever the caller passed.
        var identity = identity
        identity.deviceID = metadata.deviceID
        self.identity = identity
        self.clock = clock
        self.engineSeq = metadata.lastSeq(of: SourceName.engine)
    }

    // MARK: format

    /// Writes a new, empty store. Refuses a device that already holds one unless `force`.
    @discardableResult
    public static func format(device: BlockDevice, sectorSize: Int? = nil, segmentSize: Int, storeUUID: [UInt8],
                              deviceID: [UInt8]? = nil, wallNs: Int64, force: Bool) throws(StoreError) -> Metadata {
        let sector = sectorSize ?? max(device.sectorSize, 512)
        guard sector >= device.sectorSize else {
            throw .invalidArgument("sector size \(sector) is smaller than the device's \(device.sectorSize)")
        }
        guard storeUUID.count == 16 else { throw .invalidArgument("store uuid must be 16 bytes") }
        guard deviceID == nil || deviceID?.count == 16 else { throw .invalidArgument("device id must be 16 bytes") }
        let geometry = try Geometry.make(storeSize: device.byteCount, sectorSize: sector, segmentSize: segmentSize)
        if !force {
            let slot = AlignedBuffer(count: Layout.metadataSlotSize)
            for offset in Layout.metadataSlotOffsets {
                do { try device.read(at: offset, into: slot.bytes) } catch { throw .device(error) }
                if slot.bytes.le(0, as: UInt64.self) == Layout.metadataMagic { throw .alreadyFormatted(device: device.name) }
            }
        }
        var meta = Metadata(storeUUID: storeUUID, generation: 0, geometry: geometry)
        meta.formatWallNs = wallNs
        meta.deviceID = deviceID ?? storeUUID
        let buffer = AlignedBuffer(count: Layout.metadataSlotSize)
        do {
            for generation in [UInt64(0), 1] {
                meta.generation = generation
                meta.encode(into: buffer.bytes)
                try device.write(at: Layout.metadataSlotOffsets[meta.slotIndex], from: UnsafeRawBufferPointer(buffer.bytes))
            }
            try device.flush()
        } catch {
            throw .device(error)
        }
        return meta
    }

    // MARK: open and recovery

    /// Recovers the store if needed, then marks it open (clean_flag 0) for writing, starting a new
    /// anti-rollback session: rollback_ctr goes up before any segment of the session is written.
    /// `check` sees the recovered state first (the anchor comparison) and may refuse it.
    /// `bootID` is the kernel's boot id: a writer starting under another boot id than the last
    /// one starts a new boot_seq, which its records carry.
    public static func open(device: BlockDevice, policy: RingFullPolicy = .pause, identity: SealIdentity = .unsigned(),
                            bootID: [UInt8]? = nil,
                            check: (Metadata) throws(StoreError) -> Void = { _ throws(StoreError) in },
                            clock: @escaping () -> CaptureTime) throws(StoreError) -> (EvidenceStore, StoreAnalysis) {
        let analysis = try analyze(device: device, adopts: adoptionCheck(identity))
        try check(analysis.state)
        let (store, _) = try recover(device: device, analysis: analysis, policy: policy, identity: identity, bootID: bootID,
                                     clock: clock)
        var next = store.metadata
        next.clean = false
        next.rollbackCtr &+= 1
        next.fwVerHash = identity.fwVerHash
        try store.persist(next)
        return (store, analysis)
    }

    /// Brings the store to the consistent state the analysis describes and records what was done,
    /// leaving it clean. Recovering the result again finds nothing to do and writes nothing.
    public static func recover(device: BlockDevice, policy: RingFullPolicy = .pause, identity: SealIdentity = .unsigned(),
                               clock: @escaping () -> CaptureTime) throws(StoreError) -> (EvidenceStore, StoreAnalysis) {
        try recover(device: device, analysis: analyze(device: device, adopts: adoptionCheck(identity)), policy: policy,
                    identity: identity, clock: clock)
    }

    /// What a signing writer adopts: only segments its own key signed (a cut commit of its own).
    /// An unsigned writer has nothing to check a signature with and adopts by hash and chain.
    static func adoptionCheck(_ identity: SealIdentity) -> ((SealView) -> Bool)? {
        guard let signer = identity.signer else { return nil }
        return { seal in
            seal.statement.keyID == signer.keyID && seal.statement.sigAlg == signer.algorithm.rawValue
                && signer.verifies(seal.signature, of: seal.statementBytes)
        }
    }

    static func recover(device: BlockDevice, analysis: StoreAnalysis, policy: RingFullPolicy, identity: SealIdentity,
                        bootID: [UInt8]? = nil,
                        clock: @escaping () -> CaptureTime) throws(StoreError) -> (EvidenceStore, StoreAnalysis) {
        // Writes are padded to the store's sector size: smaller than the device's, they would fail
        // (or, worse, be read-modify-written by the device) after the first attempt.
        guard analysis.state.geometry.sectorSize >= device.sectorSize else {
            throw .sectorMismatch(device: device.name, storeSectorSize: analysis.state.geometry.sectorSize,
                                  deviceSectorSize: device.sectorSize)
        }
        var state = analysis.state
        let implausible = state.implausibleFields
        guard implausible.isEmpty else { throw .implausibleMetadata(device: device.name, fields: implausible) }
        // A signing writer continues only from metadata its own signed head vouches for: with the
        // head missing, an edited slot (a lowered mono_hwm, a shrunk ring) would steer it unseen.
        if identity.signer != nil && analysis.headMissing {
            throw .headUnverified(device: device.name, segmentID: state.headSegmentID)
        }
        // The metadata is not signed: it may steer the writer only where it agrees with the sealed
        // state of its head segment (a lowered mono_hwm or last_seq would make it repeat orders).
        if let seal = analysis.headSeal {
            let mismatches = state.mismatches(against: seal.statement, tailGivenUp: analysis.tailLost.count)
            guard mismatches.isEmpty else {
                throw .metadataContradictsSeal(device: device.name, fields: mismatches.map(\.description))
            }
            // Acknowledgments made after the last commit are not sealed: continue from the sealed
            // cursor (the uplink sends those segments again; the collector stores each once), so a
            // raised cursor cannot make overwrite-acked reclaim segments the collector never had.
            state.uplinkCursor = min(state.uplinkCursor, seal.statement.sealed.uplinkCursor)
        }
        // The next write must land in the slot that does not hold the chosen metadata, even when
        // the newest generation sits in a slot that was passed over: overwriting the chosen slot
        // first would leave the passed-over one as the newest valid slot. Generations may skip one.
        state.generation = analysis.maxGeneration
        if Int((state.generation + 1) & 1) == analysis.chosenSlot { state.generation += 1 }
        // A writer under a new kernel boot starts a new boot_seq before it writes anything (the
        // recovery records below are captured in that boot).
        if let bootID, bootID.count == 16, bootID != state.bootID || state.bootSeq == 0 {
            state.bootID = bootID
            state.bootSeq &+= 1
        }
        let store = EvidenceStore(device: device, metadata: state, policy: policy, identity: identity, clock: clock)
        if analysis.needsRepair { try store.repair(analysis) }
        return (store, analysis)
    }

    /// The capture time of an engine evidence record: the clock's, with the last sync the store
    /// knows when the clock's own sample has none (FORMAT.md 3.2).
    private func engineTime() -> CaptureTime {
        var time = clock()
        if time.lastSyncNs == 0 { time.lastSyncNs = metadata.time.lastSyncWallNs }
        return time
    }

    private func repair(_ analysis: StoreAnalysis) throws(StoreError) {
        // The reserve keeps room for the incomplete, gap and recovery records, which must always be written.
        let builder = makeBuilder(evidenceReserve: 1024)
        var mono = metadata.monoHWM
        let now = engineTime()
        if let torn = analysis.torn {
            // Nothing of a torn commit is kept (FORMAT.md 4): its bytes were never sealed.
            var json = EvidenceJSON()
            json.add("reason", .word("torn_segment"))
            json.add("segment_id", torn.segmentID)
            json.add("slot", UInt64(torn.slot))
            json.add("records_readable", UInt64(torn.readableCount))
            json.add("bytes_quarantined", UInt64(torn.quarantinedBytes))
            mono += 1
            appendEvidence(.incomplete, json, mono: mono, time: now, to: builder)
        }
        for lost in analysis.tailLost {
            var json = EvidenceJSON()
            json.add("reason", .word("tail_unreadable"))
            json.add("lost_segment_id", lost)
            json.add("lost_records", nil)
            json.add("first_mono", nil)
            json.add("last_mono", nil)
            mono += 1
            appendEvidence(.gap, json, mono: mono, time: now, to: builder)
        }
        var json = EvidenceJSON()
        json.add("unclean_shutdown", .bool(analysis.uncleanShutdown))
        json.add("metadata_slot", .word(Layout.slotName(analysis.chosenSlot)))
        json.add("generation", analysis.chosenGeneration)
        json.add("rejected_slots", .words((analysis.slotProblems.map(\.slot) + analysis.passedOver).sorted().map(Layout.slotName)))
        json.add("segments_adopted", UInt64(analysis.adopted.count))
        json.add("torn_segment_id", analysis.torn?.segmentID)
        json.add("refused_segment_id", analysis.refusedSegment)
        json.add("tail_advanced", UInt64(analysis.tailLost.count))
        mono += 1
        appendEvidence(.recovery, json, mono: mono, time: now, to: builder)

        var next = metadata
        if analysis.uncleanShutdown { next.unexpRst &+= 1 }
        next.verifyStat = analysis.verifyStat
        metadata = next
        // With a full ring that may not be reused, the recovery segment cannot be written: the
        // metadata still records the unexpected reset and verify_stat, and the report says so.
        if metadata.ringIsFull && !mayReclaimTail(metadata) {
            next.clean = true
            try persist(next)
            return
        }
        _ = try commit(builder, markClean: true)
    }

    /// Commits one segment holding a single engine evidence record (a key rotation): used by tools
    /// that hold the store open without a pipeline.
    public func commitEvidence(_ type: RecordType, _ json: EvidenceJSON) throws(StoreError) -> CommitReceipt? {
        let builder = makeBuilder()
        guard appendEvidence(type, json, mono: metadata.monoHWM + 1, time: engineTime(), to: builder) else {
            throw .recordTooLarge(bytes: json.bytes.count, capacity: builder.geometry.payloadCapacity)
        }
        return try commit(builder)
    }

    /// A segment builder for this store: its records carry the current boot_seq.
    public func makeBuilder(evidenceReserve: Int = 512) -> SegmentBuilder {
        let builder = SegmentBuilder(geometry: metadata.geometry, evidenceReserve: evidenceReserve)
        builder.bootSeq = UInt16(truncatingIfNeeded: metadata.bootSeq)
        return builder
    }

    /// True while drop notes wait for room in a segment; close() must not end before they are written.
    public var hasCarriedEvidence: Bool { !carriedDrops.isEmpty || !carriedEvidence.isEmpty || carriedClosing != nil }

    /// The starts recorded in the newest segments this writer can show are its own (BootHistory).
    public func recentBoots(maxSegments: Int, maxBoots: Int) -> [BootEntry] {
        BootHistory.recent(device: device, metadata: metadata, adopts: Self.adoptionCheck(identity), maxSegments: maxSegments,
                           maxBoots: maxBoots)
    }

    /// Counts a brownout (bo_event): the next commit carries it in its metadata and its seal.
    public func noteBrownout() { metadata.boEvent &+= 1 }

    /// Times `samples` metadata writes, each followed by a flush (the fixed cost of every commit),
    /// then, when the slot the next commit will use holds nothing the store keeps (the ring is not
    /// full and the slot is not the tail), `samples` writes of a whole segment of zeros there with
    /// a flush each (the cost that grows with the bytes committed). Nothing the store holds
    /// changes: the metadata written is the current state, the zeros land where no segment is kept.
    /// Nanoseconds per sample; `segmentNs` is empty when no free slot was there to write.
    public func measureCommitCost(samples: Int, clock: () -> Int64) throws(StoreError) -> (flushNs: [Int64], segmentNs: [Int64]) {
        var flushNs: [Int64] = []
        var segmentNs: [Int64] = []
        for _ in 0..<max(samples, 1) {
            let start = clock()
            try persist(metadata)
            flushNs.append(clock() - start)
        }
        let m = metadata
        guard !m.ringIsFull, let slot = m.nextWriteSlot, m.ringIsEmpty || slot != m.tailSlot else { return (flushNs, []) }
        let zeros = AlignedBuffer(count: m.geometry.segmentSize)
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

    /// Adds a drop note, merging it with one of the same source: the list stays bounded by the
    /// number of sources however long backpressure lasts. A merged note's seq range spans both.
    private func carry(_ drop: DropNote, into notes: inout [DropNote]) {
        if let i = notes.firstIndex(where: { $0.source == drop.source }) {
            notes[i].firstSeq = min(notes[i].firstSeq, drop.firstSeq)
            notes[i].lastSeq = max(notes[i].lastSeq, drop.lastSeq)
            notes[i].count += drop.count
        } else {
            notes.append(drop)
        }
    }

    /// Appends an engine evidence record; false (and no seq used) when the segment has no room.
    @discardableResult
    private func appendEvidence(_ type: RecordType, _ json: EvidenceJSON, mono: UInt64, time: CaptureTime, to builder: SegmentBuilder) -> Bool {
        guard builder.append(type: type, source: SourceName.engine, seq: engineSeq + 1, mono: mono, time: time,
                             payload: json.bytes, evidence: true) else { return false }
        engineSeq += 1
        return true
    }

    // MARK: commit

    private func mayReclaimTail(_ m: Metadata) -> Bool {
        switch policy {
        case .pause: false
        case .overwriteAcked: m.tailSegmentID < m.uplinkCursor
        case .overwriteOldest: true
        }
    }

    /// The next evidence mono for `builder`: inside its reservation, after its records.
    private func evidenceMono(_ builder: SegmentBuilder) -> UInt64 {
        let mono = max(builder.evidenceMono, builder.lastMono + 1)
        builder.evidenceMono = mono + 1
        return mono
    }

    /// Writes the builder's segment and the metadata pointing past it, then one flush. Returns only
    /// when both are durable; on a write or flush error it remaps the slot and writes again.
    public func commit(_ builder: SegmentBuilder, markClean: Bool = false) throws(StoreError) -> CommitReceipt? {
        if let failure { throw .closed("an earlier failure stopped the writer: \(failure)") }
        let time = engineTime()
        // Drops noted earlier whose records did not fit their segment come first.
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
            if appendEvidence(.drop, json, mono: evidenceMono(builder), time: time, to: builder) {
                builder.addDropped(UInt32(clamping: drop.count))
            } else {
                // No room left in this segment: the next commit writes it (never dropped silently).
                carry(drop, into: &carriedDrops)
            }
        }
        var evidence = carriedEvidence
        carriedEvidence.removeAll()
        evidence += builder.pendingEvidence
        builder.pendingEvidence.removeAll()
        for item in evidence where !appendEvidence(item.type, item.json, mono: evidenceMono(builder), time: time, to: builder) {
            if builder.isEmpty { oversizedEvidence += 1 } else { carriedEvidence.append(item) }
        }
        // The closing record goes last, after any gap record the reclaim below adds.
        var closing = carriedClosing ?? builder.closingEvidence
        if carriedClosing != nil, let mine = builder.closingEvidence {
            // An older closing record still waits: this one follows it in the next commit.
            carriedEvidence.append(mine)
        }
        carriedClosing = nil
        builder.closingEvidence = nil
        guard !builder.isEmpty || closing != nil else { return nil }

        var attempts = 0
        var lastError: DeviceError?
        while attempts < Self.maxWriteAttempts {
            attempts += 1
            var next = metadata
            guard let slot = next.nextWriteSlot else {
                return try fail(.deviceFailing("every ring slot is marked bad"))
            }
            if next.ringIsFull {
                guard mayReclaimTail(next) else {
                    throw .ringFull(policy: policy, detail: "all \(next.geometry.ringSlots) segments hold records"
                        + (policy == .overwriteAcked ? " not yet acknowledged upstream" : "") + "; nothing more is accepted")
                }
                // Every reclaim is on record in the segment that reclaims (FORMAT.md 3.5 tail_segment_id):
                // a loss under overwrite-oldest, a segment the collector holds under overwrite-acked.
                if builder.notedLostSegment != next.tailSegmentID {
                    noteLoss(of: next, slot: slot, in: builder, time: time, acked: policy == .overwriteAcked)
                }
                Self.advanceTail(&next)
                // The old tail is given up even if this attempt fails: the write may have damaged it.
                metadata.tailSlot = next.tailSlot
                metadata.tailSegmentID = next.tailSegmentID
            }
            if let record = closing {
                if appendEvidence(record.type, record.json, mono: evidenceMono(builder), time: time, to: builder) {
                    closing = nil
                } else if builder.isEmpty {
                    oversizedEvidence += 1
                    closing = nil
                    return nil
                } else {
                    carriedClosing = record
                    closing = nil
                }
            }
            if !next.ringIsEmpty && slot <= next.headSlot { next.wrapCount &+= 1 }
            let segmentID = next.headSegmentID + 1
            if next.ringIsEmpty {
                next.tailSlot = slot
                next.tailSegmentID = segmentID
            }
            next.commitID += 1
            next.headSlot = slot
            next.headSegmentID = segmentID
            // Read errors met while noting the reclaimed tail count too.
            next.eccErrCnt = metadata.eccErrCnt
            if let signer = identity.signer {
                next.keyID = signer.keyID
                next.keyEpoch = signer.keyEpoch
                next.sigAlg = signer.algorithm.rawValue
                next.keySrc = signer.keySource.rawValue
            } else {
                next.keyID = [UInt8](repeating: 0, count: 16)
                next.keyEpoch = 0
                next.sigAlg = 0
                next.keySrc = 0
            }
            next.monoHWM = max(next.monoHWM, builder.lastMono)
            next.recordsTotal &+= UInt64(builder.dataRecordCount)
            next.droppedTotal &+= UInt64(builder.droppedRecords)
            next.lostTotal &+= UInt64(builder.lostRecords)
            for source in builder.sourceLastSeq { next.noteSeq(source: source.name, seq: source.last) }
            if let stats = builder.timeStats { next.time = stats }
            // Clean only when this commit leaves nothing behind: a commit still to come (carried
            // evidence) must find the store not clean, or recovery would take a cut of it for a
            // torn segment after a clean close.
            next.clean = markClean && carriedDrops.isEmpty && carriedEvidence.isEmpty && carriedClosing == nil
            next.generation = metadata.generation + 1
            // The seal signs the state this metadata write carries (FORMAT.md 3.5), so it is sealed
            // after everything above and before the two fields that come from the seal itself.
            let image: UnsafeRawBufferPointer
            do {
                image = try builder.seal(segmentID: segmentID, commitID: next.commitID, slot: slot, wrapCount: next.wrapCount,
                                         storeUUID: next.storeUUID, prevCRC: metadata.headCRC, prevHash: metadata.hashHead,
                                         rollbackCtr: next.rollbackCtr, sealed: next.sealedState, identity: identity)
            } catch {
                // Nothing was written; the records stay unacknowledged and the writer stops.
                return try fail(.signing(error.message))
            }
            next.headCRC = builder.bodyCRC
            next.hashHead = builder.segmentHash

            // Segment and metadata go out together (a device may submit both at once): neither
            // counts until the flush below, and recovery tells apart every subset that lands.
            next.encode(into: metaBuffer.bytes)
            let segmentOffset = next.geometry.slotOffset(slot)
            do {
                try device.writeAll([(segmentOffset, image),
                                     (Layout.metadataSlotOffsets[next.slotIndex], UnsafeRawBufferPointer(metaBuffer.bytes))])
            } catch {
                lastError = error
                if error.offset == segmentOffset {
                    markBad(slot: slot, reason: .write, segmentID: segmentID)
                } else {
                    // The metadata slots cannot be remapped: retry in place.
                    writeErrors += 1
                }
                continue
            }
            if markClean { KillPoint.reach("clean_commit.written") }
            do {
                try device.flush()
            } catch {
                // A failed flush proves nothing: the segment is written again elsewhere and flushed again.
                lastError = error
                markBad(slot: slot, reason: .flush, segmentID: segmentID)
                continue
            }
            next.badBlocks = metadata.badBlocks
            metadata = next
            let sealAt = Layout.segmentHeaderSize + builder.payloadLength + Statement.markerOffset
            let sealView = Statement.decode(image, at: sealAt).map { statement in
                SealView(statement: statement, statementBytes: Array(image[sealAt..<(sealAt + Statement.size)]),
                         signature: Array(image[(sealAt + Statement.size)..<(sealAt + Statement.size + Int(statement.sigLen))]))
            }
            return CommitReceipt(
                commitID: next.commitID, segmentID: segmentID, slot: slot, recordCount: builder.recordCount, recordsTotal: next.recordsTotal, lastMono: builder.lastMono,
                sources: builder.sourceLastSeq.map { .init(name: $0.name, firstSeq: $0.first, lastSeq: $0.last, count: $0.count) },
                seal: sealView)
        }
        return try fail(.deviceFailing("\(attempts) attempts to commit segment \(metadata.headSegmentID + 1) failed; last: "
            + (lastError?.description ?? "unknown")))
    }

    private func fail(_ error: StoreError) throws(StoreError) -> CommitReceipt? {
        failure = error
        throw error
    }

    private func markBad(slot: Int, reason: BadBlock.Reason, segmentID: UInt64) {
        writeErrors += 1
        guard !metadata.isBad(slot), metadata.badBlocks.count < Layout.maxBadBlocks else { return }
        metadata.badBlocks.append(BadBlock(slot: slot, reason: reason, segmentID: segmentID))
    }

    /// Appends the gap record for the tail segment about to be overwritten: a loss (overwrite-oldest)
    /// or, under overwrite-acked, a segment the collector has acknowledged (not counted as lost).
    /// The counts come from the tail only when it is the writer's own: valid, hashing to its seal,
    /// and (for a signing writer) signed by this key. Otherwise anyone who can write the card could
    /// put any count into a record the writer signs: the record says null (unknown) instead.
    private func noteLoss(of m: Metadata, slot: Int, in builder: SegmentBuilder, time: CaptureTime, acked: Bool) {
        var info: SegmentInfo?
        let buffer = tailBuffer ?? AlignedBuffer(count: m.geometry.segmentSize)
        tailBuffer = buffer
        do {
            try device.read(at: m.geometry.slotOffset(m.tailSlot), into: buffer.bytes)
            let image = UnsafeRawBufferPointer(buffer.bytes)
            if let tail = try? SegmentReader.validate(image, slot: m.tailSlot, expectedID: m.tailSegmentID, geometry: m.geometry,
                                                      storeUUID: m.storeUUID),
               let seal = tail.seal, SegmentReader.computedHash(image, info: tail) == seal.statement.segmentHash,
               Self.adoptionCheck(identity).map({ $0(seal) }) ?? true {
                info = tail
            }
        } catch {
            metadata.eccErrCnt &+= 1
        }
        var json = EvidenceJSON()
        json.add("reason", .word(acked ? "uplink_acked" : "ring_overwrite"))
        json.add("lost_segment_id", m.tailSegmentID)
        json.add("lost_records", info.map { UInt64($0.recordCount) })
        json.add("first_mono", info?.firstMono)
        json.add("last_mono", info?.lastMono)
        appendEvidence(.gap, json, mono: evidenceMono(builder), time: time, to: builder)
        if !acked { builder.addLost(UInt32(info?.recordCount ?? 0)) }
        builder.notedLostSegment = m.tailSegmentID
    }

    // MARK: metadata-only writes

    /// Writes `next` as the next generation and flushes.
    private func persist(_ state: Metadata) throws(StoreError) {
        var next = state
        next.generation = metadata.generation + 1
        next.encode(into: metaBuffer.bytes)
        do {
            try device.write(at: Layout.metadataSlotOffsets[next.slotIndex], from: UnsafeRawBufferPointer(metaBuffer.bytes))
            try device.flush()
        } catch {
            throw .device(error)
        }
        metadata = next
    }

    /// Marks the store open again (clean_flag 0) after a safe-commit window left it clean, before
    /// anything else is written: recovery relies on a clean store having no commit in flight
    /// (FORMAT.md section 5, a tail given up), as after open.
    public func markOpen() throws(StoreError) {
        if failure != nil { return }
        var next = metadata
        next.clean = false
        try persist(next)
    }

    /// Marks the store cleanly closed. Call after the last commit.
    public func close() throws(StoreError) {
        if failure != nil { return }
        var next = metadata
        next.clean = true
        try persist(next)
    }

    /// Records that the uplink has acknowledged every segment up to `segmentID` (persisted with
    /// the next commit or close). overwrite-acked may then reuse them.
    public func acknowledgeUpstream(through segmentID: UInt64) {
        metadata.uplinkCursor = max(metadata.uplinkCursor, segmentID + 1)
    }
}
