// Double buffering (docs/DESIGN.md section 4): producers append into the active buffer while the
// committer thread writes the other one. A commit starts when the active buffer is full, when its
// oldest record reaches the age bound, on flush, and at close. A producer waits only when both
// buffers are full; past the wait bound it drops the newest records, counted and explained by a
// drop record, never silently.

import Dispatch
import EdgelogCore

/// The commit pipeline's types, shared by every store it drives.
public enum Pipeline {
    /// At most this many records wait for the resume; later ones are refused (counted).
    public static let maxDeferred = 256

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
        /// Ingress is frozen for a power failure (or holding after it): the reading was not taken
        /// and never got a seq; it is counted in `counters.refused` and in the window's records.
        case frozen
        /// Frozen or holding, and the record is evidence (not a reading: a clock step, a source
        /// fault, a queue's drop count): kept and numbered at the resume, before power_restored.
        case deferred
    }

    /// Where the power-fail path stands (docs/DESIGN.md section 12).
    public enum PowerState: String, Sendable {
        case running
        /// Ingress frozen, the safe commit in progress.
        case frozen
        /// Everything before the freeze is committed and the store is marked clean: nothing more
        /// is written until `resume`.
        case holding
        /// Power came back: the store is being marked open and the resume committed.
        case resuming
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
}

public final class CommitPipeline<Store: CommitStore>: @unchecked Sendable {
    public typealias Options = Pipeline.Options
    public typealias AppendResult = Pipeline.AppendResult
    public typealias PowerState = Pipeline.PowerState
    public typealias PowerWindow = Pipeline.PowerWindow
    public typealias Counters = Pipeline.Counters
    /// At most this many records wait for the resume; later ones are refused (counted).
    public static var maxDeferred: Int { Pipeline.maxDeferred }

    private let store: Store
    private let options: Options
    private let onCommit: @Sendable (CommitReceipt) -> Void
    private let monitor = Monitor()
    private var sequencer: Sequencer
    private var active: Store.Buffer
    private var spare: Store.Buffer?
    private var handed: Store.Buffer?
    private var drops: [String: DropNote] = [:]
    private var dropping = false
    private var flushWaiters = 0
    private var closing = false
    private var stopped = false
    private var failure: StoreError?
    private var activeSince: Int64 = 0
    private var pendingTime: TimeStats?
    private var power = PowerState.running
    /// The handed buffer's commit is durable (its acknowledgement may still be running).
    private var handedDurable = false
    private var handedRecords = 0
    /// Evidence captured while frozen or holding, numbered and committed at the resume.
    private var deferred: [DeferredRecord] = []
    private var deferredEvidence: [(type: RecordType, json: EvidenceJSON)] = []
    private var fillLimit = Int.max
    private var commitObserver: (@Sendable (Int64, Int) -> Void)?
    public private(set) var counters = Counters()

    /// Starts the committer thread. `onCommit` runs on it, in commit order, after each durable commit.
    public init(store: Store, options: Options = Options(), onCommit: @escaping @Sendable (CommitReceipt) -> Void) {
        self.store = store
        self.options = options
        self.onCommit = onCommit
        self.sequencer = store.makeSequencer()
        self.active = store.makeCommitBuffer()
        self.spare = store.makeCommitBuffer()
        DispatchQueue(label: "edgelog.committer").async { self.runCommitter() }
    }

    /// The largest record payload a source name of this length can have.
    public func maxPayload(sourceLength: Int) -> Int {
        active.dataCapacity - Store.Buffer.encodedLength(sourceLength: sourceLength, payloadLength: 0)
    }

    /// Appends a record (a data record, or a time record the writer captures inline).
    public func append(source: String, type: RecordType = .data, payload: UnsafeRawBufferPointer, time: CaptureTime) -> AppendResult {
        let sourceLength = source.utf8.count
        // A name no reader accepts would fail the commit that carries it, and every record in it.
        var name = source
        guard name.withUTF8({ SourceName.isValid(UnsafeRawBufferPointer($0)) }) else {
            return .refused(.invalidArgument("source name '\(source)' is not valid (1 to \(SourceName.maxLength) of A-Z a-z 0-9 . _ -, "
                + "the first a letter or a digit)"))
        }
        monitor.lock()
        defer { monitor.unlock() }
        if let failure { return .refused(failure) }
        if power != .running {
            if type != .data && deferred.count < Self.maxDeferred {
                deferred.append(DeferredRecord(source: source, type: type, payload: Array(payload), time: time))
                return .deferred
            }
            counters.refused += 1
            return .frozen
        }
        if closing { return .refused(.closed("the writer is closing")) }
        guard payload.count <= maxPayload(sourceLength: sourceLength) else {
            return .refused(.recordTooLarge(bytes: Store.Buffer.encodedLength(sourceLength: sourceLength, payloadLength: payload.count),
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
        while failure == nil && (!active.isEmpty || handed != nil || !drops.isEmpty || power == .frozen || power == .resuming) { monitor.wait() }
        flushWaiters -= 1
        if let failure { throw failure }
    }

    /// Commits what is buffered, stops the committer and marks the store cleanly closed.
    public func close() throws(StoreError) {
        monitor.lock()
        closing = true
        monitor.broadcast()
        while !stopped || power == .frozen || power == .resuming { monitor.wait() }
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
            sequencer.reserveEvidence(for: builder, count: store.evidenceBound)
            do {
                if let receipt = try store.commit(builder, markClean: false) { onCommit(receipt) }
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
        // While frozen or holding another thread commits the active buffer: kept for the resume.
        if power != .running {
            deferredEvidence.append((type, json))
            monitor.unlock()
            return
        }
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
    /// thread), which never waits for a producer: ingress freezes at this instant (later readings
    /// are refused and counted, later evidence kept for the resume), the commit in flight becomes
    /// durable, then what the active buffer holds is committed with the store marked clean, the
    /// brownout counted (bo_event) and `record` written as the segment's last record. Then the
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
        if handed != nil {
            window.committedRecords += handedRecords
            // Durable is enough: its acknowledgement (anchor file, an ack line) runs on the
            // committer thread and is not waited for.
            while handed != nil && !handedDurable && failure == nil { monitor.wait() }
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
        window.boEvent = store.committedBoEvent &+ 1
        builder.closingEvidence = (.brownout, record(window))
        sequencer.reserveEvidence(for: builder, count: 5 + builder.pendingDrops.count + builder.pendingEvidence.count)
        store.noteBrownout()
        monitor.unlock()
        do {
            let held = try commitHeld(builder, markClean: true)
            window.commits += held.commits
            window.cleanNs = held.durableNs
        } catch {
            throw failHeld(error)
        }
        KillPoint.reach("window.clean")
        monitor.lock()
        power = .holding
        monitor.broadcast()
        monitor.unlock()
        return window
    }

    /// Ends a hold when power has come back: marks the store open, commits the evidence kept
    /// during the hold and `record` (a power_restored record) before any record accepted after
    /// it, then accepts records again. False, doing nothing, unless holding.
    public func resume(record: EvidenceJSON) throws(StoreError) -> Bool {
        monitor.lock()
        guard power == .holding, failure == nil, !closing else {
            monitor.unlock()
            return false
        }
        power = .resuming
        var kept = deferred
        deferred.removeAll()
        var evidence = deferredEvidence
        deferredEvidence.removeAll()
        let builder = active
        builder.timeStats = pendingTime
        monitor.unlock()
        do {
            // Open again before anything else is written, as `open` does: recovery gives up a torn
            // tail only when the store was not clean (DESIGN.md section 12).
            try store.markOpen()
            // The kept records, numbered now (after everything committed, before what follows),
            // as many commits as they need; power_restored ends the last.
            repeat {
                monitor.lock()
                while let next = kept.first {
                    guard builder.fits(sourceLength: next.source.utf8.count, payloadLength: next.payload.count) || builder.isEmpty else { break }
                    kept.removeFirst()
                    guard let numbers = try? sequencer.next(for: next.source) else {
                        counters.refused += 1
                        continue
                    }
                    var source = next.source
                    let taken = source.withUTF8 { s in
                        next.payload.withUnsafeBytes {
                            builder.append(type: next.type, source: UnsafeRawBufferPointer(s), seq: numbers.seq, mono: numbers.mono, time: next.time, payload: $0)
                        }
                    }
                    if !taken { counters.refused += 1 }
                }
                if kept.isEmpty {
                    builder.pendingEvidence += evidence
                    builder.pendingEvidence.append((.powerRestored, record))
                    evidence.removeAll()
                }
                sequencer.reserveEvidence(for: builder, count: 4 + builder.pendingEvidence.count)
                monitor.unlock()
                _ = try commitHeld(builder, markClean: false)
            } while !kept.isEmpty
        } catch {
            throw failHeld(error)
        }
        monitor.lock()
        power = .running
        monitor.broadcast()
        monitor.unlock()
        return true
    }

    /// The store refused a window's or a resume's commit: the writer stops, holding (nothing more
    /// is written; close reports the failure).
    private func failHeld(_ error: StoreError) -> StoreError {
        monitor.lock()
        failure = error
        power = .holding
        monitor.broadcast()
        monitor.unlock()
        return error
    }

    /// Commits `builder` (and any evidence the store still carries, at most three more commits)
    /// while the committer is idle. Returns the commits made and when the last became durable.
    private func commitHeld(_ builder: Store.Buffer, markClean: Bool) throws(StoreError) -> (commits: Int, durableNs: Int64) {
        var commits = 0
        var durableNs = Monitor.monotonicNs()
        var passes = 0
        repeat {
            passes += 1
            let start = Monitor.monotonicNs()
            let bytes = builder.payloadLength
            let receipt = try store.commit(builder, markClean: markClean)
            durableNs = Monitor.monotonicNs()
            let carried = store.hasCarriedEvidence
            monitor.lock()
            builder.reset()
            if receipt != nil { counters.commits += 1 }
            if carried { sequencer.reserveEvidence(for: builder, count: store.evidenceBound) }
            monitor.unlock()
            if var receipt {
                commits += 1
                receipt.inPowerWindow = true
                onCommit(receipt)
            }
            noteCommit(ns: durableNs - start, bytes: bytes)
            if !carried { break }
        } while passes < 4
        return (commits, durableNs)
    }

    /// `observer(ns, bytes)` hears the duration and data bytes of every commit from now on (on the
    /// committing thread, after the commit is durable and acknowledged).
    public func observeCommits(_ observer: @escaping @Sendable (Int64, Int) -> Void) {
        monitor.lock()
        commitObserver = observer
        monitor.unlock()
    }

    private func noteCommit(ns: Int64, bytes: Int) {
        monitor.lock()
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
        handedRecords = full.recordCount
        handedDurable = false
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
                do { receipt = try store.commit(buffer, markClean: false) } catch let e { error = e }
                let ns = Monitor.monotonicNs() - start
                monitor.lock()
                if error == nil {
                    // A window waiting for this commit goes on now, not after the acknowledgement.
                    handedDurable = true
                    monitor.broadcast()
                }
                let frozen = power != .running
                monitor.unlock()
                if var receipt {
                    // Committed while a window runs: its acknowledgement must not write the anchor.
                    if frozen { receipt.inPowerWindow = true }
                    onCommit(receipt)
                }
                if error == nil { noteCommit(ns: ns, bytes: bytes) }
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
            // While not running another thread owns the active buffer: not even looked at.
            if power != .running {
                if closing { break }
                monitor.wait()
                continue
            }
            let hasWork = !active.isEmpty || !drops.isEmpty || !active.pendingEvidence.isEmpty
            let aged = hasWork && Monitor.monotonicNs() - activeSince >= options.maxAgeNs
            if power == .running && hasWork && (closing || flushWaiters > 0 || aged) {
                handOff()
                continue
            }
            if closing { break }
            if !hasWork {
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

/// A record captured while frozen or holding, kept for the resume.
struct DeferredRecord {
    var source: String
    var type: RecordType
    var payload: [UInt8]
    var time: CaptureTime
}
