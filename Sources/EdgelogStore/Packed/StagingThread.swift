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
    // Guarded by the thread's monitor until `done`, read-only after.
    /// The job this one follows when `writer` is nil; dropped once taken, so that jobs do not hold
    /// a chain of their predecessors.
    fileprivate var previous: StagingJob?
    fileprivate var cancelled = false
    /// What a job built: the writer moved past the frame, where the frame goes and its bytes (in the
    /// aligned buffer the device writes from, so that placing it costs the writer no copy), and
    /// the writer it started from (its segment and last frame's hash), which must be the open
    /// segment's writer when the frame is placed.
    public struct Built {
        public let writer: PackedSegmentWriter
        public let offset: Int
        public let frame: AlignedBuffer
        public let base: (segmentID: UInt64, prevHash: [UInt8])
    }
    /// nil when it could not be built ahead (the writer builds it, and throws what it finds, when
    /// it prepares it).
    public fileprivate(set) var built: Built?

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
    /// Jobs queued and not taken: what the thread polls before it sleeps.
    private let queued = Atomic<Int>(0)

    /// How long either side polls for the other before it sleeps. Waking a sleeping thread costs
    /// about 35 µs on the bench's VM, a third of a large frame's work, and the writer pays the
    /// wake's system call when it submits: in a burst the next frame comes within one write and
    /// flush (about 100 µs there), so the thread polls longer than that (at 60 µs, 6 to 20 % of
    /// the writer's submissions took more than 5 µs; at 250 µs, 1 to 2 %). Between bursts it
    /// sleeps after this long.
    static let pollNs: Int64 = 250_000

    /// Whether a thread can work beside the writer: with one CPU it would only take turns with it.
    public static var worthwhile: Bool { sysconf(Int32(_SC_NPROCESSORS_ONLN)) > 1 }

    public init() {
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
        queue.append(job)
        queued.add(1, ordering: .releasing)
        monitor.broadcast()
        return job
    }

    /// Waits for `job`; then its `built` holds what came of it.
    public func wait(_ job: StagingJob) {
        let deadline = Monitor.monotonicNs() + Self.pollNs
        while !job.done.load(ordering: .acquiring) && Monitor.monotonicNs() < deadline { edgelog_spin_hint() }
        monitor.lock()
        defer { monitor.unlock() }
        while !job.done.load(ordering: .acquiring) { monitor.wait() }
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

    private func run() {
        let compressor = Deflate.Compressor()
        while true {
            let deadline = Monitor.monotonicNs() + Self.pollNs
            while queued.load(ordering: .acquiring) == 0 && Monitor.monotonicNs() < deadline { edgelog_spin_hint() }
            monitor.lock()
            while queue.isEmpty && !stopping { monitor.wait() }
            guard !queue.isEmpty else {
                running = false
                monitor.broadcast()
                monitor.unlock()
                return
            }
            let job = queue.removeFirst()
            queued.subtract(1, ordering: .releasing)
            let previous = job.previous
            job.previous = nil
            let skip = job.cancelled
            monitor.unlock()
            // The job before is done (jobs are taken in order); what it built is read-only now.
            var built: StagingJob.Built?
            if !skip, var w = job.writer ?? previous?.built?.writer {
                let base = (w.header.segmentID, w.prevHash)
                // The thread's own compressor: the writer's is the writer thread's.
                if let result = try? w.append(job.records, changes: job.changes, sign: job.sign, compressor: compressor) {
                    built = StagingJob.Built(writer: w, offset: result.offset, frame: AlignedBuffer(copying: result.bytes), base: base)
                }
            }
            monitor.lock()
            job.built = built
            job.done.store(true, ordering: .releasing)
            monitor.broadcast()
            monitor.unlock()
        }
    }
}
