// Format 6's ring of segments over a block device (docs/FORMAT.md appendix A.8, A.9): frames
// appended to the open segment, one write and one flush per commit, the metadata written only at
// open, at each new segment, every N commits or T seconds, and at close; recovery from the newest
// metadata whose head frame checks, then forward along the chain. This is the engine under the
// packed store; the evidence records (gap, incomplete, recovery), signing policy and power window
// of the format 5 store are not wired to it yet (DESIGN.md 13).

import EdgelogCore

public enum PackedLogError: Error, Equatable, CustomStringConvertible, Sendable {
    case notAStore(String)
    case device(DeviceError)
    case alreadyFormatted
    case badGeometry(String)
    /// A frame larger than an empty segment holds.
    case frameTooLarge(Int)
    case write(PackedWriteProblem)
    case closed
    /// Neither metadata slot's head frame is in the ring: the newest history is missing.
    case headMissing(UInt64)
    /// The head frame names the writer's key but its signature does not verify with it.
    case headUnverified(UInt64)
    /// A prepared frame written out of the order frames were prepared in.
    case outOfOrder(UInt64, expected: UInt64)
    /// A metadata write or a close while a frame's background write (`begin`) is not finished.
    case writeInFlight(UInt64)
    case badIdentity(String)
    /// The ring is full and the reclaim hook did not allow its oldest segment to be reused.
    case ringFull(tailSegmentID: UInt64)
    /// Counters within reach of the bound their next step would pass (edited: no writer gets there).
    case implausible([String])
    /// The chosen metadata slot disagrees with the sealed state of the frame it names (A.11.2
    /// item 4): edited after that commit. The writer leaves it as evidence.
    case metadataContradicts([String])
    /// No slot is valid, and one has this store's magic with another format version (5: the
    /// format before this one, read by the format 5 reader; above 6: a newer edgelog's).
    case otherFormat(UInt16)
    /// No slot is valid, and one describes more bytes than the device has (an image cut short).
    case truncated(storeSize: UInt64, deviceSize: UInt64)
    /// The store was formatted for smaller sectors than the device has: frames would not be
    /// aligned to the device's sectors. It can be read, not written.
    case sectorMismatch(store: Int, device: Int)

    public var description: String {
        switch self {
        case .notAStore(let why): "not a format 6 store: \(why)"
        case .device(let e): "\(e)"
        case .alreadyFormatted: "the device already holds a store"
        case .badGeometry(let why): "bad geometry: \(why)"
        case .frameTooLarge(let n): "a commit of \(n) bytes does not fit in a segment"
        case .write(let p): "frame not written: \(p)"
        case .closed: "the log is closed"
        case .headUnverified(let id): "the newest committed frame (\(id)) is not signed by this writer's key nor by a key it was rotated from: the store is left as it is"
        case .badIdentity(let why): "bad signing identity: \(why)"
        case .outOfOrder(let id, let expected): "frame \(id) written before frame \(expected)"
        case .writeInFlight(let id): "frame \(id) is still being written"
        case .implausible(let fields): "counters at their bound (\(fields.joined(separator: ", "))): the store was edited; it is left as it is"
        case .sectorMismatch(let store, let device): "the store's \(store)-byte sectors on a device of \(device)-byte sectors"
        case .otherFormat(let v): "format version \(v), not 6"
        case .truncated(let storeSize, let deviceSize): "the store is \(storeSize) bytes but the device has \(deviceSize)"
        case .metadataContradicts(let fields): "the metadata contradicts the frame it names (\(fields.joined(separator: "; "))): it was edited; the store is left as it is"
        case .ringFull(let id): "the ring is full: its oldest segment (\(id)) may not be reused"
        case .headMissing(let id): "the newest committed frame (\(id)) the metadata names is not in the ring: copy the image and verify it; the store is left as it is"
        }
    }
}

/// What recovery found (A.9).
public struct PackedRecovery: Equatable, Sendable {
    /// "A" or "B", and the generation of the slot chosen.
    public var metadataSlot: Int
    public var generation: UInt64
    public var cleanBefore: Bool
    /// Frames adopted past the metadata's head by the forward scan.
    public var framesAdopted: Int
    public var segmentsAdopted: Int
    /// A commit torn by a power cut after the last committed frame (never acknowledged).
    public var torn: Bool
    /// Neither slot's head frame checked.
    public var headMissing: Bool
    /// Oldest segments that no longer read (a reclaim cut short), given up.
    public var tailsGivenUp = 0
    /// A valid, chained frame past the head that the writer did not adopt because its key did not
    /// sign it (nil: none).
    public var refusedFrameID: UInt64?
}

/// The committed history of a store, read without writing (A.9).
public struct PackedHistory: Sendable {
    public var metadata: PackedMetadata
    public var recovery: PackedRecovery
    /// The head after the forward scan.
    public var headFrameID: UInt64
    public var headSegmentID: UInt64
    public var headSlot: Int
    public var headOffset: Int
    public var headHash: [UInt8]
    public var headCRC: UInt32
    /// The sealed state after the head frame (from the frames, not the metadata).
    public var state: PackedState
    public var tailSegmentID: UInt64
    public var tailSlot: Int
    public var wrapCount: UInt32
    /// The head frame after the scan and its segment's header (nil: no frame, or the head is missing).
    public var headFrame: (frame: PackedFrameInfo, header: PackedSegmentHeader)?
    /// The chosen slot as read, with the sealed state after the frame it names and that frame's
    /// segment header (nil: the slot names no frame, or its head is missing).
    public var chosenSlotHead: (slot: PackedMetadata, state: PackedState, header: PackedSegmentHeader)?

    /// Where the chosen slot disagrees with the frame it names (A.11.2 item 4); nil: not checked
    /// (nothing committed, or the head is missing). An honest store never disagrees: the slot is
    /// written with its head frame's numbers.
    public var metadataMismatches: [PackedMetadata.Mismatch]? { metadataMismatches(tailMayBeGivenUp: recovery.tailsGivenUp > 0) }

    public func metadataMismatches(tailMayBeGivenUp: Bool) -> [PackedMetadata.Mismatch]? {
        guard let named = chosenSlotHead else { return nil }
        return named.slot.mismatches(against: named.state, header: named.header, tailGivenUp: tailMayBeGivenUp,
                                     nextSlot: { named.slot.nextSlot(after: $0) })
    }

    /// Reads both metadata slots, chooses one and scans forward. `adopts` decides whether a frame
    /// found past the metadata's head is taken into the history: a signing writer passes a check of
    /// its own key's signature (a cut commit of its own), so that bytes someone wrote to the card
    /// without the key never become history the writer continues and signs after.
    public static func analyze(device: BlockDevice, adopts: ((PackedFrameInfo, PackedSegmentHeader) -> Bool)? = nil) throws(PackedLogError) -> PackedHistory {
        let size = device.byteCount
        guard size >= UInt64(PackedGeometry.ringOffset) else { throw PackedStoreProbe.whyNoSlot(device) }
        var slots: [(index: Int, meta: PackedMetadata)] = []
        let buffer = AlignedBuffer(count: PackedGeometry.metadataSlotSize)
        for i in 0..<2 {
            do { try device.read(at: UInt64(i * PackedGeometry.metadataSlotSize), into: buffer.bytes) } catch { throw .device(error) }
            if let m = PackedMetadata.decode(UnsafeRawBufferPointer(buffer.bytes), deviceSize: size) { slots.append((i, m)) }
        }
        guard !slots.isEmpty else { throw PackedStoreProbe.whyNoSlot(device) }
        slots.sort { $0.meta.generation > $1.meta.generation }
        var chosen: (index: Int, meta: PackedMetadata, walk: PackedSegmentReader.Walk?, frame: Int)?
        var empty: (index: Int, meta: PackedMetadata)?
        for (i, m) in slots {
            // A slot that names no frame is taken only when no slot's head checks: a newer generation
            // alone must not make a reader or writer forget a history another slot points at.
            if m.headFrameID == 0 {
                if empty == nil { empty = (i, m) }
                continue
            }
            let walk: PackedSegmentReader.Walk
            do { walk = try readWalk(device, m, slot: m.headSlot) } catch let e as DeviceError { throw .device(e) } catch { continue }
            guard walk.header.segmentID == m.headSegmentID, let k = walk.frames.firstIndex(where: { $0.frameID == m.headFrameID }) else { continue }
            let f = walk.frames[k]
            if f.offset == m.headOffset, f.frameCRC == m.headCRC, f.frameHash == m.hashHead { chosen = (i, m, walk, k); break }
        }
        if chosen == nil, let empty { chosen = (empty.index, empty.meta, nil, -1) }
        let headMissing = chosen == nil
        let pick = chosen ?? (slots[0].index, slots[0].meta, nil, -1)
        let m = pick.meta
        var h = PackedHistory(metadata: m, recovery: PackedRecovery(metadataSlot: pick.index, generation: m.generation, cleanBefore: m.clean,
                                                                    framesAdopted: 0, segmentsAdopted: 0, torn: false, headMissing: headMissing),
                              headFrameID: m.headFrameID, headSegmentID: m.headSegmentID, headSlot: m.headSlot, headOffset: m.headOffset,
                              headHash: m.hashHead, headCRC: m.headCRC, state: m.state, tailSegmentID: m.tailSegmentID, tailSlot: m.tailSlot,
                              wrapCount: m.wrapCount)
        var lastSlot: Int
        // Slots are stepped with the chosen slot's bad slots (A.9; the verifier holds them to the
        // sealed ones).
        let ring = m
        if let walk = pick.walk {
            // The head segment's header is signed with every frame: the tail, the wrap count and the
            // floors of the counters come from it, not from the unsigned slot.
            h.state = walk.frames[pick.frame].stateAfter
            h.headFrame = (walk.frames[pick.frame], walk.header)
            h.chosenSlotHead = (m, walk.frames[pick.frame].stateAfter, walk.header)
            h.tailSegmentID = walk.header.tailSegmentID
            h.tailSlot = Int(walk.header.tailSlot)
            h.wrapCount = walk.header.wrapCount
            h.metadata.unexpRst = max(m.unexpRst, walk.header.unexpRst)
            h.metadata.rollbackCtr = max(m.rollbackCtr, walk.header.rollbackCtr)
            h.metadata.bootSeq = max(m.bootSeq, walk.header.bootSeq)
            // The head goes through the same check first (its verdict is the writer's to judge,
            // at open): a check that remembers which key it has seen must see the head's.
            _ = adopts?(walk.frames[pick.frame], walk.header)
            var refused = false
            for f in walk.frames[(pick.frame + 1)...] {
                guard adopts?(f, walk.header) ?? true else {
                    h.recovery.refusedFrameID = f.frameID
                    refused = true
                    break
                }
                h.adopt(f, walk.header)
            }
            if walk.end != .blank && walk.end != .slotEnd { h.recovery.torn = true }
            lastSlot = m.headSlot
            if refused { return try h.givingUpTail(device, ring) }
        } else if !headMissing {
            // An empty store: the scan starts at the tail slot with segment tail_segment_id.
            h.headSegmentID = m.tailSegmentID - 1
            lastSlot = (m.tailSlot + m.geometry.ringSlots - 1) % m.geometry.ringSlots
        } else {
            // FORMAT.md A.9 step 1: no forward scan without the head the chain would continue.
            return try h.givingUpTail(device, ring)
        }
        // Forward, slot by slot (at most around the ring once).
        for _ in 0..<m.geometry.ringSlots {
            guard let s = ring.nextSlot(after: lastSlot) else { break }
            let walk: PackedSegmentReader.Walk
            do { walk = try readWalk(device, m, slot: s) } catch let e as DeviceError { throw .device(e) } catch { break }
            let hd = walk.header
            // Ids are below 2^62 (the metadata's bounds, and headers that fit the store): no overflow.
            guard hd.segmentID == h.headSegmentID &+ 1 else { break }
            guard !walk.frames.isEmpty else {
                h.recovery.torn = true
                break
            }
            guard hd.firstFrameID == h.headFrameID &+ 1, hd.prevHash == h.headHash else { break }
            if let adopts, let first = walk.frames.first, !adopts(first, hd) {
                h.recovery.refusedFrameID = first.frameID
                break
            }
            h.recovery.segmentsAdopted += 1
            h.headSegmentID = hd.segmentID
            h.headSlot = s
            h.tailSegmentID = hd.tailSegmentID
            h.tailSlot = Int(hd.tailSlot)
            h.wrapCount = hd.wrapCount
            h.metadata.unexpRst = max(h.metadata.unexpRst, hd.unexpRst)
            h.metadata.rollbackCtr = max(h.metadata.rollbackCtr, hd.rollbackCtr)
            h.metadata.bootSeq = max(h.metadata.bootSeq, hd.bootSeq)
            h.recovery.torn = walk.end != .blank && walk.end != .slotEnd
            var refused = false
            for f in walk.frames {
                guard adopts?(f, hd) ?? true else {
                    h.recovery.refusedFrameID = f.frameID
                    refused = true
                    break
                }
                h.adopt(f, hd)
            }
            lastSlot = s
            if refused { break }
        }
        return try h.givingUpTail(device, ring)
    }

    /// A tail that a cut reclaim damaged is given up: the oldest segment is then the next one. A
    /// reclaim is cut only in a store a writer had open whose ring is full (the tail's slot is the
    /// one after the head's), and a writer reclaims one segment at a time: at most one is given up,
    /// so a card whose oldest segments were erased does not have them explained away as a cut.
    private func givingUpTail(_ device: BlockDevice, _ m: PackedMetadata) throws(PackedLogError) -> PackedHistory {
        var h = self
        // A torn flag is a cut only in a store a writer had open.
        if m.clean { h.recovery.torn = false }
        guard !m.clean, h.tailSegmentID < h.headSegmentID, m.nextSlot(after: h.headSlot) == h.tailSlot else { return h }
        do {
            let walk = try Self.readWalk(device, m, slot: h.tailSlot)
            if walk.header.segmentID == h.tailSegmentID, !walk.frames.isEmpty { return h }
        } catch let e as DeviceError { throw .device(e) } catch {}
        guard let next = m.nextSlot(after: h.tailSlot) else { return h }
        h.tailSegmentID += 1
        h.tailSlot = next
        h.recovery.tailsGivenUp = 1
        return h
    }

    private mutating func adopt(_ f: PackedFrameInfo, _ header: PackedSegmentHeader) {
        headFrame = (f, header)
        headFrameID = f.frameID
        headOffset = f.offset
        headHash = f.frameHash
        headCRC = f.frameCRC
        state = f.stateAfter
        recovery.framesAdopted += 1
    }

    /// The walk of a slot whose header belongs to this store and this geometry: it names the slot it
    /// is in, the ring's size, and a tail slot inside the ring (the writer takes the tail from it).
    public static func readWalk(_ device: BlockDevice, _ m: PackedMetadata, slot: Int, keepRecords: Bool = false) throws -> PackedSegmentReader.Walk {
        let buffer = AlignedBuffer(count: m.geometry.segmentSize)
        try device.read(at: m.geometry.slotOffset(slot), into: buffer.bytes)
        let walk = try PackedSegmentReader.walk(UnsafeRawBufferPointer(buffer.bytes), sectorSize: m.geometry.sectorSize, storeUUID: m.storeUUID,
                                                keepRecords: keepRecords)
        let h = walk.header
        guard Int(h.slotIndex) == slot, Int(h.ringSlots) == m.geometry.ringSlots, Int(h.tailSlot) < m.geometry.ringSlots,
              h.segmentID < RecordBlock.bound, h.firstFrameID < RecordBlock.bound, h.tailSegmentID <= h.segmentID,
              h.tailSegmentID >= 1, h.segmentID - h.tailSegmentID < UInt64(m.geometry.ringSlots),
              h.rollbackCtr < RecordBlock.bound, h.state.monoHWM < RecordBlock.bound, h.unexpRst < 1 << 31, h.bootSeq < 1 << 31,
              h.state.tables.badSlotsFit(ringSlots: m.geometry.ringSlots) else {
            throw PackedProblem.badField("segment header does not fit the store's geometry")
        }
        return walk
    }

    /// Every committed frame from the tail segment to the head, in order (A.9 step 3), held in
    /// memory: for tests and small stores; readers stream with `forEachFrame`.
    public func frames(device: BlockDevice) -> [PackedFrameInfo] {
        var out: [PackedFrameInfo] = []
        forEachFrame(device: device) { _, frame in out.append(frame) }
        return out
    }
}

/// The oldest segment, about to be reused by the segment being opened (FORMAT.md A.9).
public struct PackedReclaim: Sendable, Equatable {
    public var segmentID: UInt64
    public var slot: Int
    /// Its data records, its first and last mono_ctr and its last frame id, from the frames the
    /// writer can show are its own (nil: the slot did not read, or none of its frames is).
    public var records: UInt64?
    public var firstMono: UInt64?
    public var lastMono: UInt64?
    public var lastFrameID: UInt64?
    /// The read of the slot failed on the device.
    public var readError: Bool
}

/// What the reclaim hook decides.
public enum ReclaimVerdict: Sendable {
    /// The segment may not be reused: the frame is refused (`PackedLogError.ringFull`).
    case refuse
    /// Reused; its records count in lost_total.
    case lost
    /// Reused; its records were acknowledged upstream and are not lost.
    case acknowledged
}

/// A writer session over a format 6 store.
public final class PackedLog {
    public let device: BlockDevice
    /// The metadata as of the last durable commit (what a metadata write writes).
    public private(set) var metadata: PackedMetadata
    /// The metadata as of the last prepared commit: the open segment, the tail it reclaimed and the
    /// head the next frame chains on. Ahead of `metadata` by the frames prepared and not yet written.
    private var planned: PackedMetadata
    public let recovery: PackedRecovery
    /// Commits between two metadata writes (N) and seconds (T), FORMAT.md A.9.
    public var metadataEvery = 256
    public var metadataSeconds: Double = 300
    /// Who signs. A change leaves frames staged ahead, signed by the signer before, to be built again.
    public var identity: PackedIdentity {
        didSet {
            writerGeneration &+= 1
            signOnEitherThread = Self.signOnEitherThread(identity, lock: signLock)
        }
    }
    private var writer: PackedSegmentWriter?
    /// The writer's thread's compressor, given to every segment it opens (`PackedSegmentWriter`);
    /// nil when zlib could not start (then that segment's frames are stored), tried again at the
    /// next segment.
    private var compressor = Deflate.Compressor()
    private var openSlot = 0
    private var commitsSinceMetadata = 0
    private var lastMetadataNs: UInt64
    private let clock: () -> UInt64
    private var closed = false
    /// Set by a device error: the segment writer has moved past a frame that may not be on the
    /// device, so nothing more is written in this session (a new session recovers).
    private var failedStorage: DeviceError?
    private let failureLock = Monitor()
    /// Read by prepare and set by write, which a pipeline runs on different threads.
    private var failure: DeviceError? {
        get {
            failureLock.lock()
            defer { failureLock.unlock() }
            return failedStorage
        }
        set {
            failureLock.lock()
            failedStorage = newValue
            failureLock.unlock()
        }
    }
    /// Bytes of segment headers and frames written (what the commits occupy, sector padding included).
    public private(set) var committedBytes: UInt64 = 0
    /// Bytes of metadata written (the write-amplification overhead on top of committedBytes).
    public private(set) var metadataBytes: UInt64 = 0
    /// Segments this session opened, and the bytes used in the open one.
    public private(set) var segmentsOpened = 0
    public var openSegmentBytes: Int { writer?.nextOffset ?? 0 }
    /// Decides on every reclaim of the oldest segment and may add records (a gap record) at the end
    /// of the frame that opens the new segment. nil: every reclaim is allowed and counted as lost.
    public var reclaim: ((PackedReclaim, inout [PackedRecord]) -> ReclaimVerdict)?
    /// Reads of a reclaimed tail that failed on the device (each also counted in ecc_err_cnt).
    public private(set) var tailReadErrors = 0

    /// Who signs and what every header repeats.
    public struct PackedIdentity: Sendable {
        public var deviceID: [UInt8]
        public var fwVerHash: [UInt8]
        public var keyID = [UInt8](repeating: 0, count: 16)
        public var keyEpoch: UInt32 = 0
        public var sigAlg: SignatureAlgorithm = .unsigned
        public var keySrc: UInt8 = 0
        public var sign: (@Sendable ([UInt8]) throws -> [UInt8])?
        /// `sign` may run on the staging thread and the writer's at once (`SegmentSigner.signsConcurrently`);
        /// otherwise the log lets one call in at a time.
        public var signsConcurrently = false
        /// The writer key's check of a signature over a statement: recovery adopts past the metadata's
        /// head only frames it (or the key it succeeds, `trustsHead`) signed.
        public var verify: (@Sendable ([UInt8], [UInt8]) -> Bool)?
        /// A frame signed by the key this writer succeeds (a rotation's old key): continued when it is
        /// the head, adopted past the metadata's head before any frame of the writer's own key.
        public var trustsHead: (@Sendable (PackedFrameInfo, PackedSegmentHeader) -> Bool)?

        public init(deviceID: [UInt8], fwVerHash: [UInt8] = [UInt8](repeating: 0, count: 32)) {
            self.deviceID = deviceID
            self.fwVerHash = fwVerHash
        }

        /// A writer that signs with `signer` and adopts what it signed (and, with trustsHead, what its
        /// predecessor signed).
        public init(deviceID: [UInt8], fwVerHash: [UInt8] = [UInt8](repeating: 0, count: 32), signer: any SegmentSigner) {
            self.init(deviceID: deviceID, fwVerHash: fwVerHash)
            keyID = signer.keyID
            keyEpoch = signer.keyEpoch
            sigAlg = signer.algorithm
            keySrc = signer.keySource.rawValue
            sign = { message in try message.withUnsafeBytes { try signer.sign($0) } }
            signsConcurrently = signer.signsConcurrently
            verify = { signature, message in signer.verifies(signature, of: message) }
        }
    }

    /// `sectorSize` is the unit frames are padded to (default the device's, at least 512); a store
    /// formatted for 4096-byte sectors on a 512-byte device can move to a 4Kn device later.
    public static func format(device: BlockDevice, sectorSize: Int? = nil, segmentSize: Int, storeUUID: [UInt8], deviceID: [UInt8],
                              wallNs: Int64) throws(PackedLogError) {
        let sector = sectorSize ?? max(device.sectorSize, 512)
        guard sector >= device.sectorSize else { throw .badGeometry("sector size \(sector) is smaller than the device's \(device.sectorSize)") }
        let geometry = PackedGeometry(storeSize: device.byteCount, sectorSize: sector, segmentSize: segmentSize)
        if let problem = PackedGeometry.problem(storeSize: device.byteCount, sectorSize: sector, segmentSize: segmentSize) { throw .badGeometry(problem) }
        var m = PackedMetadata(geometry: geometry)
        m.storeUUID = storeUUID
        m.deviceID = deviceID
        m.formatWallNs = wallNs
        let bytes = m.encoded()
        let zero = AlignedBuffer(count: PackedGeometry.metadataSlotSize)
        do {
            // Slot B cleared first, then A: a store is the moment A lands.
            try device.write(at: UInt64(PackedGeometry.metadataSlotSize), from: UnsafeRawBufferPointer(zero.bytes))
            let a = AlignedBuffer(count: bytes.count)
            bytes.withUnsafeBytes { a.bytes.copyMemory(from: $0) }
            try device.write(at: 0, from: UnsafeRawBufferPointer(a.bytes))
            try device.flush()
        } catch { throw .device(error) }
    }

    /// Recovers (A.9) and opens a writer session: the metadata is written with clean_flag 0 and
    /// rollback_ctr + 1 before anything else.
    /// `bootID` is the kernel's boot id: a session under another boot id than the last one's starts
    /// a new boot_seq, which its segments carry.
    public convenience init(device: BlockDevice, identity: PackedIdentity, bootID: [UInt8]? = nil, clock: @escaping () -> UInt64) throws(PackedLogError) {
        try self.init(device: device, identity: identity, history: PackedHistory.analyze(device: device, adopts: Self.adoption(identity)),
                      bootID: bootID, clock: clock)
    }

    /// What a writer of `identity` adopts past the metadata's head (A.9): frames its own key signed, and
    /// before those, frames of the key it succeeds.
    public static func adoption(_ identity: PackedIdentity) -> ((PackedFrameInfo, PackedSegmentHeader) -> Bool)? {
        identity.verify.map { verify in
            let seenOwn = OwnFrameSeen()
            return { frame, header in
                if header.keyID == identity.keyID && header.keyEpoch == identity.keyEpoch && header.sigAlg == identity.sigAlg
                    && verify(frame.signature, frame.statement) {
                    seenOwn.value = true
                    return true
                }
                // The key it succeeds (trustsHead): a `keys rotate` cut after its frame and before
                // the metadata write leaves the old key's rotation frame past the metadata's head,
                // and the new key must continue from it, not beside it. Such frames come before
                // the writer's own, never after them: the old key signs nothing once retired.
                return !seenOwn.value && identity.trustsHead?(frame, header) == true
            }
        }
    }

    /// Whether a scan has met a frame of the writer's own key (`adoption`).
    private final class OwnFrameSeen {
        var value = false
    }

    /// Opens a session on `history`, which `analyze` found with `adoption(identity)` and nothing has
    /// written since.
    public init(device: BlockDevice, identity: PackedIdentity, history h: PackedHistory, bootID: [UInt8]? = nil,
                clock: @escaping () -> UInt64) throws(PackedLogError) {
        self.device = device
        self.identity = identity
        signOnEitherThread = Self.signOnEitherThread(identity, lock: signLock)
        self.clock = clock
        guard h.metadata.geometry.sectorSize >= device.sectorSize else {
            throw .sectorMismatch(store: h.metadata.geometry.sectorSize, device: device.sectorSize)
        }
        guard !h.recovery.headMissing else { throw .headMissing(h.metadata.headFrameID) }
        if identity.sign != nil, identity.verify == nil { throw .badIdentity("a signing writer needs its key's check too") }
        if let verify = identity.verify, let head = h.headFrame {
            // A signing writer continues only from a head its own key (or the key it succeeds)
            // signed: an unsigned head, or one of another key, would let bytes written without the
            // key set the state (tail, counters, sequence) the writer seals from here on.
            let own = head.header.keyID == identity.keyID && head.header.keyEpoch == identity.keyEpoch
                && head.header.sigAlg == identity.sigAlg && verify(head.frame.signature, head.frame.statement)
            guard own || identity.trustsHead?(head.frame, head.header) == true else { throw .headUnverified(h.headFrameID) }
        }
        // The slot is not signed: an edited one is refused, not overwritten (the edit is evidence).
        // A tail moved on by one good slot is accepted either way: a session that gave the tail up
        // and closed before its first frame leaves it so in a clean slot (the writer takes the
        // tail from the signed header and A.9 gives it up again, so it steers nothing).
        if let found = h.metadataMismatches(tailMayBeGivenUp: true), !found.isEmpty { throw .metadataContradicts(found.map(\.description)) }
        var m = h.metadata
        m.headFrameID = h.headFrameID
        m.headSegmentID = h.headSegmentID
        m.headSlot = h.headSlot
        m.headOffset = h.headOffset
        m.hashHead = h.headHash
        m.headCRC = h.headCRC
        m.state = h.state
        m.tailSegmentID = h.tailSegmentID
        m.tailSlot = h.tailSlot
        m.wrapCount = h.wrapCount
        let unclean = !m.clean
        // Each is raised by one below; at its bound it would make slots and headers no reader takes.
        let implausible = [("rollback_ctr", m.rollbackCtr + 1 >= RecordBlock.bound), ("unexp_rst", UInt64(m.unexpRst) + 1 >= 1 << 31),
                           ("boot_seq", UInt64(m.bootSeq) + 1 >= 1 << 31)].filter(\.1).map(\.0)
        guard implausible.isEmpty else { throw .implausible(implausible) }
        m.clean = false
        m.rollbackCtr += 1
        // Below 2^31 by the metadata's and the headers' bounds: no overflow.
        if let bootID, bootID.count == 16, bootID != m.bootID || m.bootSeq == 0 {
            m.bootID = bootID
            m.bootSeq += 1
        }
        // Above every generation on the device, and never onto the slot chosen.
        var g = max(h.metadata.generation, h.recovery.generation) + 1
        if Int(g & 1) == h.recovery.metadataSlot { g += 1 }
        m.generation = g - 1
        metadata = m
        planned = m
        // The unexpected reset is counted with the session's first frame (its segment header seals
        // it, and the metadata written with that frame carries it), so that it is never counted
        // without the recovery record that frame holds, however the start is cut; a session that
        // writes no frame counts it when it marks the store clean.
        if unclean { planned.unexpRst += 1 }
        unexpPending = unclean
        recovery = h.recovery
        lastMetadataNs = clock()
        try writeMetadata(clean: false)
    }

    /// An unexpected reset counted in `planned` and not yet in a metadata write.
    private var unexpPending = false

    /// Write and flush attempts per frame or metadata write before the session stops.
    public static let maxWriteAttempts = 4
    /// Write and flush errors met (each retried in place).
    public private(set) var writeErrors = 0

    /// Writes `bytes` at `offset` and flushes, the same bytes at the same place again after a
    /// failed write or flush (a retry rewrites exactly what the first attempt meant, so whatever
    /// part of it landed is overwritten with itself); after `maxWriteAttempts` failures the session
    /// stops: the segment writer has moved past bytes that may not be on the device.
    private func durably(at offset: UInt64, _ bytes: AlignedBuffer, failedAttempts: Int = 0) throws(PackedLogError) {
        do { try attempts(at: offset, bytes, failedAttempts: failedAttempts) } catch {
            failure = error
            throw .device(error)
        }
    }

    /// `durably`'s attempts; throws the last failure without stopping the session.
    private func attempts(at offset: UInt64, _ bytes: AlignedBuffer, failedAttempts: Int) throws(DeviceError) {
        var attempt = failedAttempts
        while true {
            attempt += 1
            do {
                try device.write(at: offset, from: UnsafeRawBufferPointer(bytes.bytes))
                try device.flush()
                return
            } catch {
                writeErrors += 1
                if attempt >= Self.maxWriteAttempts { throw error }
            }
        }
    }

    /// Slots this session marked bad (a frame that opened a segment could not be written there).
    public private(set) var slotsMarkedBad = 0
    /// Frames moved to another slot; a frame prepared before the last move is sealed again.
    private var relocations: UInt64 = 0
    /// The plan the last segment opened from (`PreparedFrame.openedFrom`).
    private var openedFrom: PackedMetadata?
    /// Frames placed and not yet written, in order: those after a frame that moves are sealed
    /// again behind it at once, so that frames prepared from then on follow them.
    private var unwritten: [PreparedFrame] = []

    /// Writes and flushes `frame` where it is placed, retrying in place (`durably`). A frame that
    /// opens its segment and still fails there is moved (`relocated`) and written again: its slot
    /// holds nothing committed of that segment, so the slot can be given up. A frame further into
    /// a segment is not moved: the frames before it in the slot are committed, and the same frame
    /// sealed again elsewhere would be a second signed frame with its id if the failed write had
    /// landed after all (A.11.2 item 5 reports that as a fork). Returns the frame as written.
    private func durablyPlaced(_ frame: PreparedFrame, failedAttempts: Int = 0) throws(PackedLogError) -> PreparedFrame {
        var frame = frame
        var failed = failedAttempts
        while true {
            let problem: DeviceError
            do {
                try attempts(at: frame.offset, frame.bytes, failedAttempts: failed)
                return frame
            } catch {
                problem = error
            }
            guard frame.opensSegment, let moved = relocated(frame, after: problem) else {
                failure = problem
                throw .device(problem)
            }
            frame = moved
            failed = 0
        }
    }

    /// `frame` opened its segment and could not be written to its slot: the slot is marked bad
    /// (with the segment id and what failed) and the frame sealed again from the plan its segment
    /// opened from, opening the same segment id in the next good slot (reclaiming the tail there
    /// when the ring is full: its gap record joins the one already in the frame). Frames staged
    /// ahead are built again, and frames placed after it and not yet written are sealed again
    /// behind it (their callers' copies are swapped for these when written: `current`). nil when
    /// the slot cannot be given up (the table full, fewer than two good slots left) or a frame
    /// cannot be placed again (the reclaim refused): the session stops.
    private func relocated(_ frame: PreparedFrame, after problem: DeviceError) -> PreparedFrame? {
        guard var m = frame.openedFrom, !m.isBad(frame.slot), m.state.tables.badSlots.count < PackedTables.maxBadSlots else { return nil }
        m.state.tables.badSlots.append(.init(slot: UInt32(frame.slot), reason: problem.operation == .flush ? 2 : 1, segmentID: frame.segmentID))
        guard m.state.tables.badSlotsFit(ringSlots: m.geometry.ringSlots) else { return nil }
        // The first segment of an empty ring opens at the tail's slot: the tail moves past it.
        if m.tailSlot == frame.slot, let next = m.nextSlot(after: frame.slot) { m.tailSlot = next }
        let behind = unwritten.filter { $0.frameID > frame.frameID }
        unwritten.removeAll()
        planned = m
        writer = nil
        writerGeneration &+= 1
        relocations &+= 1
        guard let moved = try? prepareOrRestore(frame.records, changes: frame.changes) else { return nil }
        for f in behind {
            guard (try? prepareOrRestore(f.input, changes: f.changes)) != nil else { return nil }
        }
        slotsMarkedBad += 1
        restageAhead()
        return moved
    }

    /// `frame`, or, when a frame before it moved after it was placed, the same records as they
    /// were sealed again behind it.
    private func current(_ frame: PreparedFrame) throws(PackedLogError) -> PreparedFrame {
        guard frame.lineage != relocations else { return frame }
        guard let again = unwritten.first(where: { $0.frameID == frame.frameID && $0.lineage == relocations }) else {
            throw .outOfOrder(frame.frameID, expected: nextFrameID)
        }
        return again
    }

    private func writeMetadata(clean: Bool) throws(PackedLogError) {
        if clean && unexpPending {
            metadata.unexpRst = max(metadata.unexpRst, planned.unexpRst)
            unexpPending = false
        }
        metadata.generation += 1
        metadata.clean = clean
        let bytes = metadata.encoded()
        let buffer = AlignedBuffer(count: bytes.count)
        bytes.withUnsafeBytes { buffer.bytes.copyMemory(from: $0) }
        try durably(at: UInt64(metadata.slotIndex * PackedGeometry.metadataSlotSize), buffer)
        metadataBytes += UInt64(bytes.count)
        commitsSinceMetadata = 0
        lastMetadataNs = clock()
    }

    /// The unsealed fields (boot id, verify_stat, time bookkeeping) the next metadata write carries.
    public func noteUnsealed(_ change: (inout PackedMetadata) -> Void) {
        change(&metadata)
        change(&planned)
    }

    /// Writes the metadata now: `clean` true marks the store cleanly closed without ending the session
    /// (the safe-commit window: nothing more is written until `checkpoint(clean: false)`).
    public func checkpoint(clean: Bool) throws(PackedLogError) {
        guard !closed else { throw .closed }
        if let failed = failure { throw .device(failed) }
        if let pending = begun { throw .writeInFlight(pending.frame.frameID) }
        try writeMetadata(clean: clean)
    }

    /// Ends the open segment: the next frame opens a new one (a new key signs from there on).
    public func endSegment() {
        writer = nil
        writerGeneration &+= 1
    }

    /// Opens the next segment in the ring, reclaiming the tail when the ring is full (`records` is
    /// the frame that opens it: the reclaim hook may add to it).
    private func openSegment(_ records: inout [PackedRecord]) throws(PackedLogError) -> PackedSegmentWriter {
        var m = planned
        let slot: Int
        if m.ringIsEmpty || m.headFrameID == 0 {
            slot = m.tailSlot
        } else {
            guard let s = m.nextSlot(after: m.headSlot) else { throw .badGeometry("no good slot") }
            slot = s
        }
        var state = m.state
        if !m.ringIsEmpty, m.headFrameID > 0, slot == m.tailSlot {
            // Reclaim the oldest segment. What it held is counted only from frames the writer can show
            // are its own (its key's signature, or no key): anyone can write the card.
            var info = PackedReclaim(segmentID: m.tailSegmentID, slot: slot, readError: false)
            var walk: PackedSegmentReader.Walk?
            do { walk = try PackedHistory.readWalk(device, m, slot: slot) } catch let e as DeviceError {
                _ = e
                info.readError = true
                tailReadErrors += 1
                state.eccErrCnt = state.eccErrCnt == UInt32.max ? state.eccErrCnt : state.eccErrCnt + 1
            } catch {}
            if let walk, walk.header.segmentID == m.tailSegmentID {
                let ownKey = identity.verify != nil && walk.header.keyID == identity.keyID
                for f in walk.frames {
                    if ownKey, let verify = identity.verify, !verify(f.signature, f.statement) { break }
                    if identity.verify != nil && !ownKey { break }
                    info.records = f.stateAfter.recordsTotal &- walk.header.state.recordsTotal
                    info.lastFrameID = f.frameID
                    if f.recordCount > 0 {
                        let first = FrameStatement.firstMono(f.statement), last = FrameStatement.lastMono(f.statement)
                        if info.firstMono == nil { info.firstMono = first }
                        info.lastMono = last
                    }
                }
                // Where the tail ends comes from the segment after it, whose first frame signs its
                // header (A.5: its state is the tail's last frame's): bytes someone damaged at the
                // end of the tail must not shorten what the gap record says was lost, nor make
                // unacknowledged frames look acknowledged.
                if let next = m.nextSlot(after: slot), let after = try? PackedHistory.readWalk(device, m, slot: next),
                   after.header.segmentID == m.tailSegmentID &+ 1, let first = after.frames.first,
                   identity.verify == nil || (after.header.keyID == identity.keyID && identity.verify?(first.signature, first.statement) == true),
                   after.header.firstFrameID > walk.header.firstFrameID,
                   after.header.state.recordsTotal >= walk.header.state.recordsTotal {
                    info.lastFrameID = after.header.firstFrameID - 1
                    info.records = after.header.state.recordsTotal - walk.header.state.recordsTotal
                    if after.header.state.monoHWM > walk.header.state.monoHWM { info.lastMono = after.header.state.monoHWM }
                }
            }
            let verdict = reclaim?(info, &records) ?? .lost
            switch verdict {
            case .refuse:
                throw .ringFull(tailSegmentID: m.tailSegmentID)
            case .lost:
                let lost = info.records ?? 0
                state.lostTotal = state.lostTotal <= UInt64.max - lost ? state.lostTotal + lost : UInt64.max
            case .acknowledged:
                break
            }
            m.tailSegmentID += 1
            m.tailSlot = m.nextSlot(after: slot) ?? slot
        }
        m.state = state
        openedFrom = m
        if m.headFrameID > 0 && slot <= m.headSlot { m.wrapCount &+= 1 }
        var h = PackedSegmentHeader()
        h.storeUUID = m.storeUUID
        h.segmentID = m.headSegmentID + 1
        h.firstFrameID = m.headFrameID + 1
        h.slotIndex = UInt32(slot)
        h.wrapCount = m.wrapCount
        h.prevHash = m.hashHead
        h.deviceID = identity.deviceID
        h.keyID = identity.keyID
        h.keyEpoch = identity.keyEpoch
        h.sigAlg = identity.sigAlg
        h.keySrc = identity.keySrc
        h.fwVerHash = identity.fwVerHash
        h.rollbackCtr = m.rollbackCtr
        h.tailSegmentID = m.tailSegmentID
        h.tailSlot = UInt32(m.tailSlot)
        h.ringSlots = UInt32(m.geometry.ringSlots)
        h.unexpRst = m.unexpRst
        h.bootSeq = m.bootSeq
        h.state = state
        m.state = state
        planned = m
        openSlot = slot
        segmentsOpened += 1
        if compressor == nil { compressor = Deflate.Compressor() }
        return PackedSegmentWriter(header: h, sectorSize: m.geometry.sectorSize, segmentSize: m.geometry.segmentSize, compressor: compressor)
    }

    /// A frame encoded, sealed and placed, not yet written: `prepare` does the CPU work and `write`
    /// the I/O, so that a pipeline can build the next frame while the previous one is written.
    /// Frames must be written in the order they were prepared.
    public struct PreparedFrame: @unchecked Sendable {
        public let frameID: UInt64
        public let segmentID: UInt64
        public let slot: Int
        /// The frame's statement (A.7) and signature.
        public let statement: [UInt8]
        public let signature: [UInt8]
        /// The records as sealed (the reclaim hook may have added a gap record).
        public let records: [PackedRecord]
        let offset: UInt64
        let bytes: AlignedBuffer
        /// The metadata as it stands once this frame is durable (generation set when written).
        let metadataAfter: PackedMetadata
        /// The frame opens a segment: the metadata is written after it (the tail it reclaimed).
        let opensSegment: Bool
        /// What it is sealed again from when it moves (`relocated`, `current`): the records the
        /// caller gave (without a gap record a reclaim added) and the state changes; for a frame
        /// that opens its segment, the plan as the segment was opened (the tail it reclaimed, the
        /// state before its first frame, wrap_count not yet moved).
        let input: [PackedRecord]
        let changes: [(FrameStateField, UInt64)]
        let openedFrom: PackedMetadata?
        /// `relocations` when it was prepared: a frame prepared before a relocation follows a
        /// segment that was never written.
        let lineage: UInt64
    }

    /// Encodes, deflates, hashes and signs the next frame and places it in the open segment (opening
    /// a new one, and reclaiming the tail, when it does not fit). Nothing is written to the device
    /// except the read of a reclaimed tail.
    public func prepare(_ records: [PackedRecord], changes: [(FrameStateField, UInt64)] = []) throws(PackedLogError) -> PreparedFrame {
        guard !closed else { throw .closed }
        if let failed = failure { throw .device(failed) }
        let frame = try prepareOrRestore(records, changes: changes)
        restageAhead()
        return frame
    }

    /// Nothing moves when it throws: a refused reclaim or a frame too large leaves the plan as it was.
    /// `full`: the staging thread found that the frame does not fit after the open segment's last
    /// frame, so the segment after it is opened without trying again.
    private func prepareOrRestore(_ records: [PackedRecord], changes: [(FrameStateField, UInt64)], full: Bool = false) throws(PackedLogError) -> PreparedFrame {
        let saved = (planned, openSlot, segmentsOpened, tailReadErrors)
        do {
            return try prepareMoving(records, changes: changes, full: full)
        } catch {
            (planned, openSlot, segmentsOpened, tailReadErrors) = saved
            throw error
        }
    }

    private func prepareMoving(_ input: [PackedRecord], changes: [(FrameStateField, UInt64)], full: Bool) throws(PackedLogError) -> PreparedFrame {
        var records = input
        var opened = false
        var w: PackedSegmentWriter
        // A segment with no frame yet is tried even when `full` (what does not fit there is too large).
        if let open = writer, !full || open.frames == 0 {
            w = open
        } else {
            w = try openSegment(&records)
            opened = true
        }
        var result: (offset: Int, bytes: [UInt8])
        do {
            result = try w.append(records, changes: changes, sign: signOnEitherThread)
        } catch PackedWriteProblem.segmentFull(let need, _) {
            guard w.frames > 0 else { throw .frameTooLarge(need) }
            w = try openSegment(&records)
            opened = true
            do { result = try w.append(records, changes: changes, sign: signOnEitherThread) } catch {
                if case .segmentFull(let n, _) = error { throw .frameTooLarge(n) }
                throw .write(error)
            }
        } catch {
            throw .write(error)
        }
        if opened { writerGeneration &+= 1 }
        return placed(w, offset: result.offset, AlignedBuffer(copying: result.bytes), records: records, opened: opened, input: input, changes: changes)
    }

    /// The writer `w` has sealed `result`: it becomes the open segment's writer, the plan moves past
    /// the frame, and the frame is ready to write.
    private func placed(_ w: PackedSegmentWriter, offset: Int, _ buffer: AlignedBuffer, records: [PackedRecord], opened: Bool,
                        input: [PackedRecord], changes: [(FrameStateField, UInt64)]) -> PreparedFrame {
        writer = w
        planned.headFrameID = w.nextFrameID - 1
        planned.headSegmentID = w.header.segmentID
        planned.headSlot = openSlot
        planned.headOffset = w.lastFrameOffset
        planned.hashHead = w.prevHash
        planned.headCRC = w.lastFrameCRC
        planned.state = w.state
        let frame = PreparedFrame(frameID: planned.headFrameID, segmentID: w.header.segmentID, slot: openSlot, statement: w.lastStatement,
                             signature: w.lastSignature, records: records, offset: planned.geometry.slotOffset(openSlot) + UInt64(offset),
                             bytes: buffer, metadataAfter: planned, opensSegment: opened, input: input, changes: changes,
                             openedFrom: opened ? openedFrom : nil, lineage: relocations)
        unwritten.append(frame)
        return frame
    }

    // MARK: Staging: building the next frame while this one is sealed and written

    /// A frame staged ahead (`stage`): built (encoded, deflated, hashed, signed) on the staging thread
    /// after the frames staged before it, while the caller writes the frames before it.
    /// `prepare(_:)` places it. Staging changes nothing the device or the metadata sees: a staged
    /// frame that no longer follows the open segment's last frame (a segment opened, or another
    /// frame prepared, meanwhile) is encoded again, so its bytes are the ones `prepare(records)`
    /// would give.
    public final class StagedFrame: @unchecked Sendable {
        public let records: [PackedRecord]
        let changes: [(FrameStateField, UInt64)]
        /// The log that staged it: a frame staged on another log is built when prepared.
        fileprivate weak var owner: PackedLog?
        /// Its job on the staging thread, for the writer of `generation`; nil: built when prepared.
        /// Taken by the first `prepare`: a job is placed once.
        fileprivate var job: StagingJob?
        fileprivate var generation: UInt64 = 0
        /// The frame's index in the segment it is encoded for.
        fileprivate var index = 0
        /// Placed as the staging thread built it (set by `prepare`).
        public fileprivate(set) var builtAhead = false

        init(records: [PackedRecord], changes: [(FrameStateField, UInt64)], owner: PackedLog?) {
            self.records = records
            self.changes = changes
            self.owner = owner
        }
    }

    /// Frames staged and not yet prepared, oldest first; each encoded after the one before it.
    private var ahead: [StagedFrame] = []
    /// Frames staged ahead at most: with the writer writing one frame, the thread builds the next
    /// two, so that a thread that builds faster than the device writes gets a frame ahead and a
    /// slow build is absorbed there rather than waited for (DESIGN.md 13).
    public static let stageDepth = 3
    /// Bumped whenever the open segment's writer is replaced: a frame encoded for one writer is not
    /// sealed by another, whatever its index.
    private var writerGeneration: UInt64 = 0
    /// Whether `stage` builds frames on a staging thread (only worth it with a second CPU); off,
    /// a staged frame is built when it is prepared.
    public var buildsAhead = StagingThread.worthwhile
    private var stagingThread: StagingThread?
    /// Staged frames built here after all: taken back from the staging thread before it started
    /// them, or given up on when it was overdue with them (`StagingThread.Handover`).
    public private(set) var framesTakenBack = 0, framesOverdue = 0
    /// Whether the writer builds a staged frame itself when the staging thread has not started it
    /// soon after it was queued, or has run far longer with it than its frames take
    /// (`StagingThread.Handover`); off, it waits for the thread, however long (tests that need the
    /// thread to build every frame it can).
    public var takesBack = true
    /// Given to the staging thread when it starts (tests: `StagingThread.beforeBuild`).
    var stagingBeforeBuild: (@Sendable ([PackedRecord]) -> Void)?

    /// Stages `records` as the frame after those already staged: the staging thread builds it.
    /// Prepare staged frames in the order staged (`prepare(_:)`); one that cannot be built ahead (no
    /// open segment yet, a full segment, a record the encoder refuses) is built when it is prepared,
    /// and `prepare` throws what it finds then.
    public func stage(_ records: [PackedRecord], changes: [(FrameStateField, UInt64)] = []) -> StagedFrame {
        let staged = StagedFrame(records: records, changes: changes, owner: self)
        guard !closed, failure == nil, buildsAhead, ahead.count < Self.stageDepth else { return staged }
        submitAhead(staged, after: ahead.last)
        ahead.append(staged)
        return staged
    }

    /// Gives `staged` to the staging thread, to build after `previous` (or after the open segment's
    /// last frame); leaves it to be built when prepared when that cannot be done now.
    private func submitAhead(_ staged: StagedFrame, after previous: StagedFrame?) {
        giveUp(staged)
        // The open segment's writer is read field by field and copied only for the first job: a
        // copy retains each of its buffers, which the staging thread's copies share.
        guard let frames = writer?.frames, previous == nil || previous?.job != nil else { return }
        if stagingThread == nil { stagingThread = StagingThread(beforeBuild: stagingBeforeBuild) }
        staged.job = stagingThread?.submit(writer: previous == nil ? writer : nil, records: staged.records, changes: staged.changes,
                                           sign: signOnEitherThread, after: previous?.job)
        staged.generation = writerGeneration
        staged.index = previous.map { $0.index + 1 } ?? frames
    }

    /// Places a staged frame (as `prepare(records)` would): the one the staging thread built when
    /// it follows the open segment's last frame, else built here. Frames staged before it and not
    /// prepared are given up. When it throws, nothing moves and the frames staged after it are
    /// given up too (each is built when prepared).
    public func prepare(_ staged: StagedFrame) throws(PackedLogError) -> PreparedFrame {
        guard !closed else { throw .closed }
        if let failed = failure { throw .device(failed) }
        if let i = ahead.firstIndex(where: { $0 === staged }) {
            for s in ahead[..<i] { giveUp(s) }
            ahead.removeFirst(i + 1)
        }
        // A job is placed once, and only by the log that staged it.
        let own = staged.owner === self
        let job = own ? staged.job : nil
        if own { staged.job = nil }
        let frame: PreparedFrame
        do throws(PackedLogError) {
            var built: StagingJob.Built?
            /// The job taken back from a thread that had not started it; finished below, whatever
            /// comes of the build here, so that the jobs behind it go on.
            var takenBack: StagingJob?
            /// The thread found the frame does not fit after the open segment's last frame.
            var full = false
            if let job, let thread = stagingThread, staged.generation == writerGeneration, staged.index == writer?.frames {
                switch thread.handover(job, patient: !takesBack) {
                case .built:
                    // Built after exactly the frame the open segment ends with: its hash, so not a
                    // chain the device never saw (a frame staged after one prepared out of order,
                    // or after a frame the writer built when the thread was overdue). Moved out of
                    // the job, not copied (the thread keeps its own copy for the job behind).
                    if let b = job.takeBuilt(), openWriterIs(at: b.base) {
                        built = b
                    } else if let base = job.didNotFit, openWriterIs(at: base) {
                        // The writer's own try would fail the same way: the same bytes whichever
                        // thread encodes and deflates them.
                        full = true
                    }
                case .takenBack:
                    takenBack = job
                    framesTakenBack += 1
                case .overdue:
                    framesOverdue += 1
                }
            } else if let job {
                // Staged for another writer or place: built here, so the thread need not build it.
                stagingThread?.cancel(job)
            }
            if let b = built {
                frame = placed(b.writer, offset: b.offset, b.frame, records: staged.records, opened: false, input: staged.records, changes: staged.changes)
                staged.builtAhead = true
            } else {
                // Not built ahead, or not after the frame before it; a frame that did not fit what
                // is left of the segment opens the next one here.
                let base = takenBack == nil ? nil : writer?.tip
                do throws(PackedLogError) {
                    frame = try prepareOrRestore(staged.records, changes: staged.changes, full: full)
                } catch {
                    if let job = takenBack { stagingThread?.finish(takenBack: job, built: nil) }
                    throw error
                }
                if let job = takenBack {
                    // The jobs behind follow this frame when it went in the same segment (taken
                    // back only when staged for this generation); after a segment opened they are
                    // staged again (`restageAhead`), so they build nothing.
                    var follow: StagingJob.Built?
                    if staged.generation == writerGeneration, let w = writer, let base {
                        follow = StagingJob.Built(writer: w, offset: w.lastFrameOffset, frame: frame.bytes, base: base)
                    }
                    stagingThread?.finish(takenBack: job, built: follow)
                }
            }
        } catch {
            for s in ahead { giveUp(s) }
            ahead.removeAll()
            throw error
        }
        restageAhead()
        return frame
    }

    /// The open segment's writer is at `tip` (read field by field: a copy of the writer would
    /// retain each of its buffers).
    private func openWriterIs(at tip: PackedSegmentWriter.Tip) -> Bool {
        writer?.header.segmentID == tip.segmentID && writer?.prevHash == tip.prevHash
    }

    /// Drops `staged`'s job: the thread skips it if it has not started.
    private func giveUp(_ staged: StagedFrame) {
        if let j = staged.job { stagingThread?.cancel(j) }
        staged.job = nil
    }

    /// The signer as both threads call it: the staging thread and the writer's thread both sign,
    /// and a token or secure element behind `SegmentSigner` need not take two calls at once, so
    /// unless the identity's signer signs concurrently the calls go one at a time. Made once per
    /// identity, not per frame.
    private var signOnEitherThread: (@Sendable ([UInt8]) throws -> [UInt8])?
    private let signLock = Monitor()

    private static func signOnEitherThread(_ identity: PackedIdentity, lock: Monitor) -> (@Sendable ([UInt8]) throws -> [UInt8])? {
        guard let sign = identity.sign else { return nil }
        if identity.signsConcurrently { return sign }
        return { message in
            lock.lock()
            defer { lock.unlock() }
            return try sign(message)
        }
    }

    /// After a prepare: the frames staged ahead follow the frame just placed unless another took
    /// their place (another frame prepared, a segment opened, a frame the thread could not
    /// encode); then they are staged again after it.
    private func restageAhead() {
        guard let first = ahead.first else { return }
        if first.job != nil, first.generation == writerGeneration, first.index == writer?.frames { return }
        var previous: StagedFrame?
        for s in ahead {
            submitAhead(s, after: previous)
            previous = s
        }
    }

    /// Writes a prepared frame and flushes: durable when this returns; then the metadata when due.
    /// Returns the frame as written: sealed again when it had to move (`durablyPlaced`).
    @discardableResult
    public func write(_ frame: PreparedFrame) throws(PackedLogError) -> PreparedFrame {
        try checkWritable(frame)
        let done = try durablyPlaced(current(frame))
        try written(done)
        return done
    }

    /// A frame whose write `begin` started and `finish` has not ended.
    public struct WriteInFlight: @unchecked Sendable {
        public let frame: PreparedFrame
        /// Started on the device in the background (an `OverlappingDevice`); else already durable.
        public let overlapped: Bool
    }
    /// The frame `begin` started and `finish` has not ended; `background` while the device still
    /// reads its buffer.
    private var begun: (frame: PreparedFrame, background: Bool)?

    deinit {
        // A write left in flight still reads its buffer: wait for it before the buffer goes.
        if begun?.background == true, let overlapping = device as? OverlappingDevice { try? overlapping.awaitDurable() }
        // The staging thread may be signing: it stops, skipping what it has not started, before the
        // signer can go.
        stagingThread?.stop()
    }

    /// `write` in two halves, so that the caller can prepare the next frame while the device
    /// writes this one (DESIGN.md 13): started in the background on an `OverlappingDevice` that
    /// takes it, else written and flushed before this returns. `finish` ends it, and nothing else
    /// is written in between. Every earlier write is already durable (each is flushed), so a
    /// device that makes only this write durable (a FUA write) leaves the store as `write` does.
    public func begin(_ frame: PreparedFrame) throws(PackedLogError) -> WriteInFlight {
        try checkWritable(frame)
        let frame = try current(frame)
        if let overlapping = device as? OverlappingDevice {
            do {
                if try overlapping.submitDurable(at: frame.offset, from: UnsafeRawBufferPointer(frame.bytes.bytes)) {
                    begun = (frame, true)
                    return WriteInFlight(frame: frame, overlapped: true)
                }
            } catch {
                // Not started: written in place, this failure counted as the first attempt.
                writeErrors += 1
                let done = try durablyPlaced(frame, failedAttempts: 1)
                begun = (done, false)
                return WriteInFlight(frame: done, overlapped: false)
            }
        }
        let done = try durablyPlaced(frame)
        begun = (done, false)
        return WriteInFlight(frame: done, overlapped: false)
    }

    /// Ends a write `begin` started: the frame is durable when this returns; then the metadata
    /// when due. A background write that failed is written again in place, as `durably` retries.
    /// Returns the frame as written (sealed again when it had to move).
    @discardableResult
    public func finish(_ write: WriteInFlight) throws(PackedLogError) -> PreparedFrame {
        var frame = write.frame
        guard !closed else { throw .closed }
        guard let pending = begun, pending.frame.frameID == frame.frameID else {
            throw .outOfOrder(frame.frameID, expected: begun?.frame.frameID ?? nextFrameID)
        }
        begun = nil
        frame = pending.frame
        if pending.background, let overlapping = device as? OverlappingDevice {
            do {
                // Returns or throws only once the device no longer reads the buffer.
                try overlapping.awaitDurable()
            } catch {
                writeErrors += 1
                frame = try durablyPlaced(pending.frame, failedAttempts: 1)
            }
        }
        try written(frame)
        return frame
    }

    private func checkWritable(_ frame: PreparedFrame) throws(PackedLogError) {
        guard !closed else { throw .closed }
        if let failed = failure { throw .device(failed) }
        if let pending = begun { throw .writeInFlight(pending.frame.frameID) }
        guard frame.frameID == nextFrameID else { throw .outOfOrder(frame.frameID, expected: nextFrameID) }
    }

    /// The id the next frame written must have. head_frame_id is below 2^62 in any metadata the
    /// log opened (PackedMetadata's bounds), so this never wraps; wrapping would refuse, not trap.
    private var nextFrameID: UInt64 { metadata.headFrameID &+ 1 }

    /// The frame is durable: the metadata follows it, and is written when due.
    private func written(_ frame: PreparedFrame) throws(PackedLogError) {
        unwritten.removeAll { $0.frameID <= frame.frameID }
        committedBytes += UInt64(frame.bytes.count)
        let generation = metadata.generation
        metadata = frame.metadataAfter
        metadata.generation = generation
        unexpPending = false
        commitsSinceMetadata += 1
        if frame.opensSegment || commitsSinceMetadata >= metadataEvery || Double(clock() &- lastMetadataNs) / 1e9 >= metadataSeconds {
            try writeMetadata(clean: false)
        }
    }

    /// Commits one frame: durable when this returns (one write, one flush; the metadata when due).
    @discardableResult
    public func append(_ records: [PackedRecord], changes: [(FrameStateField, UInt64)] = []) throws(PackedLogError) -> UInt64 {
        try write(prepare(records, changes: changes)).frameID
    }

    /// Writes the metadata with clean_flag 1; nothing more may be written.
    public func close() throws(PackedLogError) {
        guard !closed else { return }
        if let pending = begun { throw .writeInFlight(pending.frame.frameID) }
        try writeMetadata(clean: true)
        closed = true
        for s in ahead { giveUp(s) }
        ahead.removeAll()
        // Joined: nothing signs once close returns.
        stagingThread?.stop()
        stagingThread = nil
    }
}
