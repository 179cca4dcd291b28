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
        /// Ingress is frozen for a power failure (or holding after it): the record was not taken
        /// and never got a seq; it is counted in `counters.refused` and in the window's records.
        case frozen
    }

    /// Where the power-fail path stands (docs/DESIGN.md section 12).
    public enum PowerState: String, Sendable {
        case running
        /// Ingress frozen, the safe commit in progress.
        case frozen
        /// Everything before the freeze is committed and the store is marked clean: nothing more
        /// is written until `resume`.
        case holding
    }

    /// What the safe-commit window did, in CLOCK_MONOTONIC nanoseconds.
    public struct PowerWindow: Sendable, Equatable {
        public var frozenNs: Int64
        /// When the commit that was in flight at the freeze became durable (nil: none was).
        public var inFlightDoneNs: Int64?
        /// When the last buffered records and the clean mark became durable.
        public var cleanNs: Int64
        /// Records committed by the window (in flight at the freeze, and buffered).
        public var committedRecords: Int
        /// Commits the window made (0, 1 or 2, one more if evidence had to be carried).
        public var commits: Int
        /// counters.refused when the brownout record was written.
        public var refusedTotal: UInt64 = 0
        /// bo_event with this window counted.
        public var boEvent: UInt32 = 0
    }

    public struct Counters: Sendable, Equatable {
        public var accepted: UInt64 = 0
        public var dropped: UInt64 = 0
        public var commits: UInt64 = 0
        /// Records refused while ingress was frozen or holding for a power failure.
        public var refused: UInt64 = 0
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
    private var power = PowerState.running
    private var fillLimit = Int.max
    /// Nanoseconds and bytes of the slowest commit so far (the hold-up budget's evidence).
    private var slowestCommit: (ns: Int64, bytes: Int) = (0, 0)
    private var commitObserver: (@Sendable (Int64, Int) -> Void)?
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
        if power != .running {
            counters.refused += 1
            return .frozen
        }
        if closing { return .refused(.closed("the writer is closing")) }
        guard payload.count <= maxPayload(sourceLength: sourceLength) else {
            return .refused(.recordTooLarge(bytes: SegmentBuilder.encodedLength(sourceLength: sourceLength, payloadLength: payload.count),
                                            capacity: active.dataCapacity))
        }
        if !active.fits(sourceLength: sourceLength, payloadLength: payload.count) {
            if handed != nil && !dropping {
                let deadline = Monitor.monotonicNs() + options.blockNs
                while handed != nil && failure == nil && power == .running {
                    let left = deadline - Monitor.monotonicNs()
                    if left <= 0 { break }
                    monitor.wait(ns: left)
                }
            }
            if let failure { return .refused(failure) }
            if power != .running {
                counters.refused += 1
                return .frozen
            }
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
        while failure == nil && (!active.isEmpty || handed != nil || !drops.isEmpty || power == .frozen) { monitor.wait() }
        flushWaiters -= 1
        if let failure { throw failure }
    }

    /// Commits what is buffered, stops the committer and marks the store cleanly closed.
    public func close() throws(StoreError) {
        monitor.lock()
        closing = true
        monitor.broadcast()
        while !stopped || power == .frozen { monitor.wait() }
        if power == .holding {
            // The safe-commit window left the store clean with everything committed: nothing more
            // is written (power may be failing).
            let failure = self.failure
            monitor.unlock()
            if let failure { throw failure }
            return
        }
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

    // MARK: power fail

    /// Records refused so far while frozen or holding.
    public var refusedCount: UInt64 {
        monitor.lock()
        defer { monitor.unlock() }
        return counters.refused
    }

    /// Adds engine evidence (a power_budget record) to the next commit, after the records buffered.
    public func addEvidence(_ type: RecordType, _ json: EvidenceJSON) {
        monitor.lock()
        active.pendingEvidence.append((type, json))
        if active.isEmpty { activeSince = Monitor.monotonicNs() }
        monitor.broadcast()
        monitor.unlock()
    }

    public var powerState: PowerState {
        monitor.lock()
        defer { monitor.unlock() }
        return power
    }

    /// Duration and size of the slowest commit so far.
    public var slowestCommitObserved: (ns: Int64, bytes: Int) {
        monitor.lock()
        defer { monitor.unlock() }
        return slowestCommit
    }

    /// Caps the payload bytes a buffer gathers before it is committed (the hold-up budget's
    /// answer when a whole segment cannot be written inside the window). Int.max: no cap.
    public func setFillLimit(_ bytes: Int) {
        monitor.lock()
        fillLimit = max(bytes, 0)
        active.fillLimit = fillLimit
        spare?.fillLimit = fillLimit
        monitor.unlock()
    }

    /// The safe-commit window (docs/DESIGN.md section 12), on the caller's thread (the power-fail
    /// thread), which never waits for a producer: ingress freezes at this instant (later appends
    /// are refused and counted), the commit in flight completes, then what the active buffer holds
    /// is committed with the store marked clean, the brownout counted (bo_event) and `record`
    /// written as a brownout record after every record accepted before the freeze. Then the
    /// pipeline holds: nothing more is written until `resume`. `record` sees the window so far.
    /// Returns nil, doing nothing, unless the pipeline is running (a second edge during a window
    /// or a hold, a closing or failed writer).
    public func powerFail(record: (PowerWindow) -> EvidenceJSON) throws(StoreError) -> PowerWindow? {
        monitor.lock()
        guard power == .running, failure == nil, !closing else {
            monitor.unlock()
            return nil
        }
        power = .frozen
        var window = PowerWindow(frozenNs: Monitor.monotonicNs(), inFlightDoneNs: nil, cleanNs: 0, committedRecords: 0, commits: 0)
        monitor.broadcast()
        KillPoint.reach("window.frozen")
        if let inFlight = handed {
            window.committedRecords += inFlight.recordCount
            while handed != nil && failure == nil { monitor.wait() }
            window.inFlightDoneNs = Monitor.monotonicNs()
            window.commits += 1
            KillPoint.reach("window.in_flight_done")
        }
        if let failure {
            power = .holding
            monitor.broadcast()
            monitor.unlock()
            throw failure
        }
        // The committer stays idle from here (no hand-off while not running): this thread commits.
        let builder = active
        builder.pendingDrops = drops.values.sorted { $0.firstSeq < $1.firstSeq }
        builder.timeStats = pendingTime
        drops.removeAll()
        dropping = false
        window.committedRecords += builder.recordCount
        window.refusedTotal = counters.refused
        window.boEvent = store.metadata.boEvent &+ 1
        builder.pendingEvidence.append((.brownout, record(window)))
        sequencer.reserveEvidence(for: builder, count: 4 + builder.pendingDrops.count + builder.pendingEvidence.count)
        store.noteBrownout()
        monitor.unlock()
        do {
            window.commits += try commitHeld(builder, markClean: true)
        } catch {
            monitor.lock()
            failure = error
            power = .holding
            monitor.broadcast()
            monitor.unlock()
            throw error
        }
        KillPoint.reach("window.clean")
        monitor.lock()
        window.cleanNs = Monitor.monotonicNs()
        power = .holding
        monitor.broadcast()
        monitor.unlock()
        return window
    }

    /// Ends a hold when power has come back: commits `record` (a power_restored record) before any
    /// record accepted after it, then accepts records again. False, doing nothing, unless holding.
    public func resume(record: EvidenceJSON) throws(StoreError) -> Bool {
        monitor.lock()
        guard power == .holding, failure == nil, !closing else {
            monitor.unlock()
            return false
        }
        let builder = active
        builder.pendingEvidence.append((.powerRestored, record))
        builder.timeStats = pendingTime
        sequencer.reserveEvidence(for: builder, count: 4 + builder.pendingEvidence.count)
        monitor.unlock()
        do {
            try store.markOpen()
            _ = try commitHeld(builder, markClean: false)
        } catch {
            monitor.lock()
            failure = error
            monitor.broadcast()
            monitor.unlock()
            throw error
        }
        monitor.lock()
        power = .running
        monitor.broadcast()
        monitor.unlock()
        return true
    }

    /// Commits `builder` (and any evidence the store still carries) while the committer is idle.
    /// Returns the number of commits made.
    private func commitHeld(_ builder: SegmentBuilder, markClean: Bool) throws(StoreError) -> Int {
        var commits = 0
        repeat {
            let start = Monitor.monotonicNs()
            let bytes = builder.payloadLength
            let receipt = try store.commit(builder, markClean: markClean)
            noteCommit(ns: Monitor.monotonicNs() - start, bytes: bytes)
            if var receipt {
                commits += 1
                receipt.inPowerWindow = true
                onCommit(receipt)
            }
            monitor.lock()
            builder.reset()
            counters.commits += receipt == nil ? 0 : 1
            if store.hasCarriedEvidence { sequencer.reserveEvidence(for: builder, count: Layout.maxSources + 4) }
            monitor.unlock()
        } while store.hasCarriedEvidence
        return commits
    }

    /// `observer(ns, bytes)` hears the duration and data bytes of every commit from now on (on the
    /// committing thread, after the commit is durable).
    public func observeCommits(_ observer: @escaping @Sendable (Int64, Int) -> Void) {
        monitor.lock()
        commitObserver = observer
        monitor.unlock()
    }

    private func noteCommit(ns: Int64, bytes: Int) {
        monitor.lock()
        if ns > slowestCommit.ns { slowestCommit = (ns, bytes) }
        let observer = commitObserver
        monitor.unlock()
        observer?(ns, bytes)
    }

    /// Data bytes one buffer holds when no fill limit applies.
    public var bufferCapacity: Int {
        monitor.lock()
        defer { monitor.unlock() }
        return active.dataCapacity
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
        sequencer.reserveEvidence(for: full, count: 4 + full.pendingDrops.count + full.pendingEvidence.count)
        handed = full
        active = next
        active.fillLimit = fillLimit
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
                let start = Monitor.monotonicNs()
                let bytes = buffer.payloadLength
                do { receipt = try store.commit(buffer) } catch let e { error = e }
                if error == nil { noteCommit(ns: Monitor.monotonicNs() - start, bytes: bytes) }
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
            let hasWork = !active.isEmpty || !drops.isEmpty || !active.pendingEvidence.isEmpty
            let aged = hasWork && Monitor.monotonicNs() - activeSince >= options.maxAgeNs
            if power == .running && hasWork && (closing || flushWaiters > 0 || aged) {
                handOff()
                continue
            }
            if closing { break }
            if !hasWork || power != .running {
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
