// Drives an EvidenceStore synchronously (no threads), as a workload for crash enumeration and
// benchmarks, with a controllable clock. Remembers what it submitted and what was acknowledged.

import EdgelogCore
import EdgelogStore

public struct RecordKey: Hashable, Sendable, CustomStringConvertible {
    public var source: String
    public var seq: UInt64
    public init(_ source: String, _ seq: UInt64) {
        self.source = source
        self.seq = seq
    }
    public var description: String { "\(source)#\(seq)" }
}

public final class ManualClock: @unchecked Sendable {
    public var wallNs: Int64
    public var bootNs: Int64
    /// Ticks so far: the time quality of each tick is a function of it (below).
    public private(set) var ticks: UInt64 = 0
    public init(wallNs: Int64 = 1_790_000_000_000_000_000, bootNs: Int64 = 5_000_000_000) {
        self.wallNs = wallNs
        self.bootNs = bootNs
    }
    public func tick(_ ns: Int64 = 1_000_000) -> CaptureTime {
        wallNs += ns
        bootNs += ns
        ticks += 1
        return now
    }
    /// The time quality varies from tick to tick over every value class a record can hold (all
    /// flag combinations, not sampled, saturated, no last sync, a negative one), so that images
    /// written with this clock test each reader's decoding of them against the others'.
    public var now: CaptureTime {
        let n = ticks
        let maxError: UInt32 = n % 5 == 0 ? CaptureTime.notSampled : n % 11 == 0 ? CaptureTime.notSampled - 1 : UInt32(truncatingIfNeeded: n &* 2_654_435_761) >> 8
        let estError: UInt32 = n % 7 == 0 ? CaptureTime.notSampled : UInt32(truncatingIfNeeded: n &* 40_503)
        let lastSync: Int64 = n % 3 == 0 ? 0 : n % 3 == 1 ? wallNs - Int64(n % 1000) * 1_000_000 : -Int64(n)
        return CaptureTime(wallNs: wallNs, bootNs: bootNs, flags: TimeFlags(rawValue: UInt16(n % 8)),
                           maxErrorUs: maxError, estErrorUs: estError, lastSyncNs: lastSync)
    }
}

public final class StoreDriver {
    public let store: EvidenceStore
    public let clock: ManualClock
    public private(set) var sequencer: Sequencer
    public let builder: SegmentBuilder
    /// Every data record handed to the store, by key.
    public private(set) var submitted: [RecordKey: [UInt8]] = [:]
    /// Keys whose commit returned (durable), with the segment that holds them.
    public private(set) var acked: [RecordKey: UInt64] = [:]
    private var inBuilder: [RecordKey] = []
    /// Called after every durable commit (also those append makes when the segment is full).
    public var afterCommit: ((CommitReceipt) -> Void)?
    /// Characters of filler in brownout records: larger ones are carried to one more commit more often.
    public var brownoutPadding = 320
    /// Brownout records that needed a commit of their own, and all brownout commits.
    public private(set) var brownoutsCarried = 0
    public private(set) var brownouts = 0

    public init(store: EvidenceStore, clock: ManualClock) {
        self.store = store
        self.clock = clock
        self.sequencer = Sequencer(from: store.metadata)
        self.builder = SegmentBuilder(geometry: store.metadata.geometry)
    }

    /// Appends a data record, committing first when the segment is full.
    @discardableResult
    public func append(source: String, payload: [UInt8]) throws(StoreError) -> RecordKey {
        if !builder.fits(sourceLength: source.utf8.count, payloadLength: payload.count) {
            guard !builder.isEmpty else {
                throw .recordTooLarge(bytes: SegmentBuilder.encodedLength(sourceLength: source.utf8.count, payloadLength: payload.count),
                                      capacity: builder.dataCapacity)
            }
            try commit()
        }
        let (seq, mono) = try sequencer.next(for: source)
        builder.append(type: .data, source: source, seq: seq, mono: mono, time: clock.tick(), payload: payload, evidence: false)
        let key = RecordKey(source, seq)
        submitted[key] = payload
        inBuilder.append(key)
        return key
    }

    /// Commits what is buffered. Records are acknowledged only when this returns.
    @discardableResult
    /// `brownout`: as the safe-commit window commits: a brownout record after the buffered
    /// records, bo_event counted, the store marked clean.
    public func commit(brownout: Bool = false) throws(StoreError) -> CommitReceipt? {
        if brownout {
            // As large as a real one (a long input name): it does not always fit the evidence room.
            var json = EvidenceJSON()
            json.add("trigger", .word("test"))
            json.add("input", text: String(repeating: "i", count: brownoutPadding))
            builder.closingEvidence = (.brownout, json)
            store.noteBrownout()
        }
        sequencer.reserveEvidence(for: builder, count: 5 + builder.pendingDrops.count + builder.pendingEvidence.count)
        let receipt = try store.commit(builder, markClean: brownout)
        if let receipt { for key in inBuilder { acked[key] = receipt.segmentID } }
        inBuilder.removeAll()
        builder.reset()
        if let receipt { afterCommit?(receipt) }
        // As the window does: a brownout record that did not fit gets one more commit, which is
        // the one that marks the store clean.
        if brownout {
            brownouts += 1
            if store.hasCarriedEvidence { brownoutsCarried += 1 }
        }
        var passes = 0
        while brownout && store.hasCarriedEvidence && passes < 3 {
            passes += 1
            sequencer.reserveEvidence(for: builder, count: Layout.maxSources + 4)
            let more = try store.commit(builder, markClean: true)
            builder.reset()
            if let more { afterCommit?(more) }
        }
        return receipt
    }

    /// Drops what is buffered without committing (as a power cut would).
    public func discardBuffer() {
        inBuilder.removeAll()
        builder.reset()
    }
}

/// The committed records as export reads them (hash and chain checked), for tests.
public func exported(_ device: BlockDevice) throws -> [(type: UInt16, source: String, seq: UInt64, payload: String)] {
    let analysis = try EvidenceStore.analyze(device: device)
    var out: [(UInt16, String, UInt64, String)] = []
    StoreReader.forEachRecord(device: device, analysis: analysis) { _, r in
        out.append((r.rawType, r.sourceName, r.seq, String(decoding: r.payload, as: UTF8.self)))
    }
    return out
}
