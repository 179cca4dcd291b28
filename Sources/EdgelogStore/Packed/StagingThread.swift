// A thread that builds frames (encode, deflate, hash, sign) ahead while the writer's thread writes
// the frames before them (DESIGN.md 13). A burst of large commits is CPU-bound, and the writer's
// thread is the one that enters the kernel for every write: on it, a frame's work took about twice
// as long as on a thread that does nothing else (the signature's tables and the encoder's data do
// not stay in its caches). The thread takes its jobs in order, each with the writer the job before
// it left, so the hash chain runs on as it would on one thread. A frame's bytes do not depend on
// which thread built it: the same writer code, and a compressor of the same library, level and
// dictionary.

import CSpinHint
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One frame to build on the staging thread: its records encoded, deflated and sealed by a copy of
/// the open segment's writer (`writer`, or the writer the job before it left); what came of it.
public final class StagingJob: @unchecked Sendable {
    let writer: PackedSegmentWriter?
    let records: [PackedRecord]
    let changes: [(FrameStateField, UInt64)]
    let sign: (@Sendable ([UInt8]) throws -> [UInt8])?
    /// Set once the job is done (under the thread's monitor); read without it to poll.
    fileprivate let done = Atomic<Bool>(false)
    var isDone: Bool { done.load(ordering: .acquiring) }
    // Guarded by the thread's monitor until `done`; after it, read-only but for `built`, which the
    // writer moves out (`takeBuilt`).
    /// The job this one follows when `writer` is nil; dropped once taken, so that jobs do not hold
    /// a chain of their predecessors.
    fileprivate var previous: StagingJob?
    fileprivate var cancelled = false
    /// When it was queued, and when the thread took it.
    fileprivate var queuedNs: Int64 = 0, startedNs: Int64 = 0
    /// Out of the queue: taken by the thread, or taken back by the writer (`handover`).
    fileprivate let taken = Atomic<Bool>(false)
    /// What a job built: the writer moved past the frame, where the frame goes and its bytes (in the
    /// aligned buffer the device writes from, so that placing it costs the writer no copy), and
    /// the writer it started from (its segment and last frame's hash), which must be the open
    /// segment's writer when the frame is placed.
    public struct Built {
        public let writer: PackedSegmentWriter
        public let offset: Int
        public let frame: AlignedBuffer
        public let base: PackedSegmentWriter.Tip
    }
    /// nil when it could not be built ahead (the writer builds it, and throws what it finds, when
    /// it prepares it).
    public fileprivate(set) var built: Built?
    /// Set instead when the frame did not fit after the last frame of the writer it started from
    /// (that writer's segment and last frame's hash): the writer opens the next segment for it
    /// without trying again.
    public fileprivate(set) var didNotFit: PackedSegmentWriter.Tip?

    /// Moves `built` out (the writer, once the job is done) instead of copying it: a copy retains,
    /// and its end releases, each of the writer's buffers, which the thread's own copy (`last` in
    /// `run`) shares until it builds the next job.
    func takeBuilt() -> Built? { built.take() }

    init(writer: PackedSegmentWriter?, records: [PackedRecord], changes: [(FrameStateField, UInt64)],
         sign: (@Sendable ([UInt8]) throws -> [UInt8])?, after previous: StagingJob?) {
        self.writer = writer
        self.records = records
        self.changes = changes
        self.sign = sign
        self.previous = previous
    }
}

public final class StagingThread: @unchecked Sendable {
    private let monitor = Monitor()
    /// Guarded by `monitor`.
    private var queue: [StagingJob] = []
    private var stopping = false
    /// The thread has not returned yet (`stop` waits for it).
    private var running = true
    /// Jobs queued and not taken: what the thread checks between naps before it sleeps.
    private let queued = Atomic<Int>(0)

    /// How long either side waits for the other (the writer polling, the thread napping) before it
    /// sleeps. Waking a sleeping thread costs about 35 µs on the bench's VM, a third of a large
    /// frame's work, and the writer pays the wake's system call when it submits: in a burst the
    /// next frame comes within one write and flush (about 100 µs there), so the thread waits longer
    /// than that (at 60 µs, 6 to 20 % of the writer's submissions took more than 5 µs; at 250 µs,
    /// 1 to 2 %). Between bursts it sleeps after this long.
    static let pollNs: Int64 = 250_000
    /// The thread waits for its next job in naps of this long, not spinning: a spinning vCPU keeps
    /// its host CPU, which the writer's write and flush need (the host's I/O thread, or a sibling
    /// hardware thread), while a napping one halts, and on a board the second CPU is the
    /// producers' too. Over eight alternated runs of the bench each, napping gave store_vs_raw (a)
    /// 0.91 to 1.01 and (b) 0.85 to 0.97, spinning 0.90 to 1.01 and 0.86 to 1.03: alike. A job
    /// waits at most a nap or so for the thread, hidden while it builds ahead of the device.
    static let napNs: Int64 = 20_000
    /// A job queued this long (after the job before it ended) and not taken is taken back by the
    /// writer when it wants it: a thread that naps takes a job within a nap or so, so one that has
    /// not is asleep or off its CPU (`handover`).
    static let takeBackNs: Int64 = 50_000
    /// A job the thread has run at least this long, and four times what its frames take, is
    /// overdue (`handover`): a frame here takes 40 to 100 µs on the bench's VM, and the stalls of
    /// the thread's CPU worth not waiting out lasted 1 to 23 ms.
    static let overdueNs: Int64 = 1_000_000

    /// Whether a thread can work beside the writer: with one CPU it would only take turns with it.
    public static var worthwhile: Bool { sysconf(Int32(_SC_NPROCESSORS_ONLN)) > 1 }

    /// Called on the thread before it builds each job (tests: a thread whose CPU is taken).
    let beforeBuild: (@Sendable ([PackedRecord]) -> Void)?

    public convenience init() { self.init(beforeBuild: nil) }

    init(beforeBuild: (@Sendable ([PackedRecord]) -> Void)?) {
        self.beforeBuild = beforeBuild
        DispatchQueue(label: "edgelog.staging").async { self.run() }
    }

    /// Queues the frame of `records` to build with `writer` or, when nil, with the writer `previous`
    /// leaves. nil after `stop`: the writer builds it itself.
    public func submit(writer: PackedSegmentWriter?, records: [PackedRecord], changes: [(FrameStateField, UInt64)],
                       sign: (@Sendable ([UInt8]) throws -> [UInt8])?, after previous: StagingJob?) -> StagingJob? {
        let job = StagingJob(writer: writer, records: records, changes: changes, sign: sign, after: previous)
        monitor.lock()
        defer { monitor.unlock() }
        guard !stopping else { return nil }
        job.queuedNs = Monitor.monotonicNs()
        queue.append(job)
        queued.add(1, ordering: .releasing)
        monitor.broadcast()
        return job
    }

    /// What `handover` found.
    public enum Handover {
        /// Done by the thread: `built` holds what came of it (nil when it built nothing; then
        /// `didNotFit` says when the frame did not fit the open segment).
        case built
        /// Not started within `takeBackNs` of its queueing (the thread asleep: it sleeps between
        /// bursts, and a burst's first frame waited for it several times a frame's work on the
        /// bench's VM; or its CPU taken): out of the queue, for the writer to build. The jobs
        /// behind it wait for `finish(takenBack:built:)`.
        case takenBack
        /// Started, and running far longer than the thread's frames take (its CPU taken from it:
        /// on the bench's VM a build of 40 µs now and then took 1 to 23 ms): the writer builds it.
        /// The thread's frame, when it comes, is ignored; the jobs behind build after it, and
        /// `prepare` places one of them only if it follows the frame the writer placed.
        case overdue
    }

    /// Waits for `job` as long as the thread is making progress with it; `patient`, until it is
    /// done, whatever it takes. Jobs queued ahead of it can only be cancelled ones: the writer
    /// prepares in order.
    public func handover(_ job: StagingJob, patient: Bool = false) -> Handover {
        if job.isDone { return .built }
        var deadline = Int64.max
        if !patient {
            // A thread that is napping takes a job within a nap or so of its queueing, or of the
            // end of the job before, whichever is later.
            while !job.taken.load(ordering: .acquiring)
                && Monitor.monotonicNs() < max(job.queuedNs, lastDoneNs.load(ordering: .acquiring)) + Self.takeBackNs { edgelog_spin_hint() }
            monitor.lock()
            if !job.taken.load(ordering: .acquiring), let i = queue.firstIndex(where: { $0 === job }) {
                queue.remove(at: i)
                queued.subtract(1, ordering: .releasing)
                job.taken.store(true, ordering: .releasing)
                job.previous = nil
                monitor.unlock()
                return .takenBack
            }
            let started = job.startedNs
            monitor.unlock()
            // A frame of n records takes about n * typical on the thread: allowed four times that,
            // and never less than `overdueNs`.
            let typical = Int64(typicalNsPerRecord.load(ordering: .relaxed))
            deadline = started + max(Self.overdueNs, 4 * typical * Int64(min(job.records.count, 1 << 24)))
        }
        Self.poll(until: min(deadline, Monitor.monotonicNs() + Self.pollNs)) { job.isDone }
        monitor.lock()
        defer { monitor.unlock() }
        while !job.isDone {
            if patient {
                monitor.wait()
                continue
            }
            let left = deadline - Monitor.monotonicNs()
            if left <= 0 { return .overdue }
            monitor.wait(ns: left)
        }
        return .built
    }

    /// Spins, with the CPU's spin-wait hint, until `ready` or `deadline` (monotonic ns).
    private static func poll(until deadline: Int64, _ ready: () -> Bool) {
        while !ready() && Monitor.monotonicNs() < deadline { edgelog_spin_hint() }
    }

    /// Sleeps `napNs` at a time until `ready` or `deadline`: the thread's wait for its next job,
    /// which the writer's submission need not wake.
    private static func nap(until deadline: Int64, _ ready: () -> Bool) {
        var interval = timespec(tv_sec: 0, tv_nsec: Int(napNs))
        while !ready() && Monitor.monotonicNs() < deadline { nanosleep(&interval, nil) }
    }

    /// When the thread last ended a job.
    private let lastDoneNs = Atomic<Int64>(0)
    /// The thread's build time per record, smoothed; 0 until it has built a frame.
    private let typicalNsPerRecord = Atomic<Int>(0)

    /// Ends a job taken back: `built` is what the writer placed (nil when it placed nothing the
    /// jobs behind can follow), so that those jobs build after it. Call it for every job taken
    /// back, whatever came of it: the thread waits for it.
    public func finish(takenBack job: StagingJob, built: StagingJob.Built?) {
        monitor.lock()
        job.built = built
        job.done.store(true, ordering: .releasing)
        monitor.broadcast()
        monitor.unlock()
    }

    /// The writer no longer wants `job` (staged again, or given up): skipped if not started.
    public func cancel(_ job: StagingJob) {
        monitor.lock()
        job.cancelled = true
        monitor.unlock()
    }

    /// Ends the thread and returns once it has: jobs queued and not started are skipped, the one
    /// running is finished (so nothing signs after this returns), later submissions are refused.
    public func stop() {
        monitor.lock()
        stopping = true
        for job in queue { job.cancelled = true }
        monitor.broadcast()
        while running { monitor.wait() }
        monitor.unlock()
    }

    /// Moves the typical build time halfway down to a faster frame's (the first frames, on cold
    /// caches, are slow), or an eighth of the way up to a slower one's, counted as at most twice
    /// the typical: a stall of the thread's CPU must not teach the writer to wait for the next.
    private func learn(ns: Int64, records: Int) {
        guard records > 0, ns > 0 else { return }
        // At most Int32.max, so that four times it times a frame's records stays far from overflow.
        let sample = Int(clamping: min(ns / Int64(records), Int64(Int32.max)))
        let typical = typicalNsPerRecord.load(ordering: .relaxed)
        let next: Int
        if typical == 0 {
            next = sample
        } else if sample < typical {
            next = (typical + sample) / 2
        } else {
            next = typical + (min(sample, 2 * typical) - typical) / 8
        }
        typicalNsPerRecord.store(next, ordering: .relaxed)
    }

    /// The writer a job builds with after `previous` is done: the thread's own copy when `ran` is
    /// that job; else `previous` was taken back, and its `built` is what the writer placed
    /// (`finish`), which the writer never moves out.
    private static func writer(after previous: StagingJob?, ran: (job: StagingJob, writer: PackedSegmentWriter?)?) -> PackedSegmentWriter? {
        guard let previous else { return nil }
        if let ran, ran.job === previous { return ran.writer }
        return previous.built?.writer
    }

    private func run() {
        // A nap of `napNs`, not the 50 µs a thread's timers may be late by default.
        _ = edgelog_timer_slack(1_000)
        let compressor = Deflate.Compressor()
        /// The last job the thread ran, and the writer it left (nil: nothing built): the job behind
        /// builds from this copy, since the writer moves the job's own out (`takeBuilt`) when it
        /// places the frame. A job before that the thread did not run was taken back: its `built`
        /// is the writer's (`finish`), never taken.
        var last: (job: StagingJob, writer: PackedSegmentWriter?)?
        while true {
            Self.nap(until: Monitor.monotonicNs() + Self.pollNs) { queued.load(ordering: .acquiring) > 0 }
            monitor.lock()
            while queue.isEmpty && !stopping { monitor.wait() }
            guard !queue.isEmpty else {
                // The thread is the dispatch pool's again: its timers back to the default slack.
                _ = edgelog_timer_slack(0)
                running = false
                monitor.broadcast()
                monitor.unlock()
                return
            }
            let job = queue.removeFirst()
            queued.subtract(1, ordering: .releasing)
            job.startedNs = Monitor.monotonicNs()
            job.taken.store(true, ordering: .releasing)
            let previous = job.previous
            job.previous = nil
            // The job before was taken back when the writer is still building it: wait for it,
            // polling first (the writer's build is shorter than a wake).
            if let p = previous, !p.isDone {
                monitor.unlock()
                Self.poll(until: Monitor.monotonicNs() + Self.pollNs) { p.isDone }
                monitor.lock()
                while !p.isDone && !job.cancelled && !stopping { monitor.wait() }
            }
            let skip = job.cancelled || previous.map { !$0.isDone } ?? false
            monitor.unlock()
            // The job before is done (jobs are taken in order).
            var built: StagingJob.Built?
            var didNotFit: PackedSegmentWriter.Tip?
            let ran = last
            last = (job, nil)
            // Without a compressor of its own (zlib could not start) the thread builds nothing: the
            // writer's (what `append` falls back to) is the writer thread's.
            if !skip, let compressor, var w = job.writer ?? Self.writer(after: previous, ran: ran) {
                let base = w.tip
                // The thread's own compressor: the writer's is the writer thread's.
                beforeBuild?(job.records)
                let start = Monitor.monotonicNs()
                do {
                    let result = try w.append(job.records, changes: job.changes, sign: job.sign, compressor: compressor)
                    built = StagingJob.Built(writer: w, offset: result.offset, frame: AlignedBuffer(copying: result.bytes), base: base)
                    last = (job, w)
                    learn(ns: Monitor.monotonicNs() - start, records: job.records.count)
                } catch .segmentFull {
                    didNotFit = base
                } catch {
                    // Built by the writer when prepared, which throws what it finds.
                }
            }
            monitor.lock()
            job.built = built
            job.didNotFit = didNotFit
            lastDoneNs.store(Monitor.monotonicNs(), ordering: .releasing)
            job.done.store(true, ordering: .releasing)
            monitor.broadcast()
            monitor.unlock()
        }
    }
}
