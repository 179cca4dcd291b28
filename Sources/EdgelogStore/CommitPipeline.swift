// Double buffering (docs/DESIGN.md section 4): producers append into the active buffer while the
// committer thread writes the other one. A commit starts when the active buffer is full, when its
// oldest record reaches the age bound, on flush, and at close. A producer waits only when both
// buffers are full; past the wait bound it drops the newest records, counted and explained by a
// drop record, never silently.

import Dispatch
import EdgelogCore

public final class CommitPipeline: @unchecked Sendable {
    public struct Options: Sendable {
        /// A buffer whose oldest record is this old is committed even if not full.
        public var maxAgeNs: Int64 = 1_000_000_000
        /// How long a producer waits for a free buffer before dropping.
        public var blockNs: Int64 = 2_000_000_000
        public init(maxAgeNs: Int64 = 1_000_000_000, blockNs: Int64 = 2_000_000_000) {
            self.maxAgeNs = maxAgeNs
            self.blockNs = blockNs
        }
    }

    public enum AppendResult: Equatable, Sendable {
        case accepted(seq: UInt64)
        /// Both buffers were full past the wait bound: the record is counted in a drop record.
        case dropped(seq: UInt64)
        case refused(StoreError)
    }

    public struct Counters: Sendable, Equatable {
        public var accepted: UInt64 = 0
        public var dropped: UInt64 = 0
        public var commits: UInt64 = 0
    }

    private let store: EvidenceStore
    private let options: Options
    private let onCommit: @Sendable (CommitReceipt) -> Void
    private let monitor = Monitor()
    private var sequencer: Sequencer
    private var active: SegmentBuilder
    private var spare: SegmentBuilder?
    private var handed: SegmentBuilder?
    private var drops: [String: DropNote] = [:]
    private var dropping = false
    private var flushWaiters = 0
    private var closing = false
    private var stopped = false
    private var failure: StoreError?
    private var activeSince: Int64 = 0
    private var pendingTime: TimeStats?
    public private(set) var counters = Counters()

    /// Starts the committer thread. `onCommit` runs on it, in commit order, after each durable commit.
    public init(store: EvidenceStore, options: Options = Options(), onCommit: @escaping @Sendable (CommitReceipt) -> Void) {
        self.store = store
        self.options = options
        self.onCommit = onCommit
        self.sequencer = Sequencer(from: store.metadata)
        self.active = store.makeBuilder()
        self.spare = store.makeBuilder()
        DispatchQueue(label: "edgelog.committer").async { self.runCommitter() }
    }

    /// The largest record payload a source name of this length can have.
    public func maxPayload(sourceLength: Int) -> Int {
        active.dataCapacity - SegmentBuilder.encodedLength(sourceLength: sourceLength, payloadLength: 0)
    }

    /// Appends a record (a data record, or a time record the writer captures inline).
    public func append(source: String, type: RecordType = .data, payload: UnsafeRawBufferPointer, time: CaptureTime) -> AppendResult {
        let sourceLength = source.utf8.count
        monitor.lock()
        defer { monitor.unlock() }
        if let failure { return .refused(failure) }
        if closing { return .refused(.closed("the writer is closing")) }
        guard payload.count <= maxPayload(sourceLength: sourceLength) else {
            return .refused(.recordTooLarge(bytes: SegmentBuilder.encodedLength(sourceLength: sourceLength, payloadLength: payload.count),
                                            capacity: active.dataCapacity))
        }
        if !active.fits(sourceLength: sourceLength, payloadLength: payload.count) {
            if handed != nil && !dropping {
                let deadline = Monitor.monotonicNs() + options.blockNs
                while handed != nil && failure == nil {
                    let left = deadline - Monitor.monotonicNs()
                    if left <= 0 { break }
                    monitor.wait(ns: left)
                }
            }
            if let failure { return .refused(failure) }
            if handed != nil {
                // Numbers are drawn only now, after any hand-off: the handed buffer's reserved
                // evidence mono values must stay below every record appended after it.
                let seq: UInt64
                do { seq = try sequencer.next(for: source).seq } catch { return .refused(error) }
                dropping = true
                noteDrop(source: source, seq: seq)
                return .dropped(seq: seq)
            }
            handOff()
        }
        let seq: UInt64, mono: UInt64
        do { (seq, mono) = try sequencer.next(for: source) } catch { return .refused(error) }
        var source = source
        source.withUTF8 { s in
            _ = active.append(type: type, source: UnsafeRawBufferPointer(s), seq: seq, mono: mono, time: time, payload: payload)
        }
        counters.accepted += 1
        if active.recordCount == 1 {
            activeSince = Monitor.monotonicNs()
            monitor.broadcast()
        }
        return .accepted(seq: seq)
    }

    /// The writer's latest time bookkeeping: the next commit stores it in the metadata.
    public func noteTime(_ stats: TimeStats) {
        monitor.lock()
        pendingTime = stats
        monitor.unlock()
    }

    /// Commits everything buffered and waits until it is durable.
    public func flush() throws(StoreError) {
        monitor.lock()
        defer { monitor.unlock() }
        flushWaiters += 1
        monitor.broadcast()
        while failure == nil && (!active.isEmpty || handed != nil || !drops.isEmpty) { monitor.wait() }
        flushWaiters -= 1
        if let failure { throw failure }
    }

    /// Commits what is buffered, stops the committer and marks the store cleanly closed.
    public func close() throws(StoreError) {
        monitor.lock()
        closing = true
        monitor.broadcast()
        while !stopped { monitor.wait() }
        // Drop records that found no room in their segment are written before the store closes.
        while failure == nil && store.hasCarriedEvidence {
            let builder = active
            sequencer.reserveEvidence(for: builder, count: Layout.maxSources + 4)
            do {
                if let receipt = try store.commit(builder) { onCommit(receipt) }
            } catch {
                failure = error
            }
            builder.reset()
        }
        let failure = self.failure
        monitor.unlock()
        if let failure {
            // A full ring leaves the store healthy: close it cleanly before reporting.
            if case .ringFull = failure { try store.close() }
            throw failure
        }
        try store.close()
    }

    // MARK: committer side

    private func noteDrop(source: String, seq: UInt64) {
        counters.dropped += 1
        if var note = drops[source] {
            note.lastSeq = seq
            note.count += 1
            drops[source] = note
        } else {
            drops[source] = DropNote(source: source, firstSeq: seq, lastSeq: seq, count: 1)
        }
    }

    /// Gives the active buffer to the committer. Caller holds the lock and has checked `handed == nil`.
    private func handOff() {
        guard let next = spare else { return }
        let full = active
        full.pendingDrops = drops.values.sorted { $0.firstSeq < $1.firstSeq }
        full.timeStats = pendingTime
        drops.removeAll()
        dropping = false
        sequencer.reserveEvidence(for: full, count: 4 + full.pendingDrops.count)
        handed = full
        active = next
        spare = nil
        monitor.broadcast()
    }

    private func runCommitter() {
        monitor.lock()
        while failure == nil {
            if let buffer = handed {
                monitor.unlock()
                var receipt: CommitReceipt?
                var error: StoreError?
                do { receipt = try store.commit(buffer) } catch let e { error = e }
                if let receipt { onCommit(receipt) }
                monitor.lock()
                if let error {
                    failure = error
                    break
                }
                counters.commits += 1
                buffer.reset()
                spare = buffer
                handed = nil
                monitor.broadcast()
                continue
            }
            let hasWork = !active.isEmpty || !drops.isEmpty
            let aged = !active.isEmpty && Monitor.monotonicNs() - activeSince >= options.maxAgeNs
            if hasWork && (closing || flushWaiters > 0 || aged) {
                handOff()
                continue
            }
            if closing { break }
            if active.isEmpty {
                monitor.wait()
            } else {
                monitor.wait(ns: activeSince + options.maxAgeNs - Monitor.monotonicNs())
            }
        }
        stopped = true
        monitor.broadcast()
        monitor.unlock()
    }
}
