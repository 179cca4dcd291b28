// Sources -> scheduler -> stamping queue -> one feeder thread -> the commit pipeline. The feeder is
// the only thread that appends, so the pipeline's mono_ctr follows the queue's ingress order. When
// the store stops accepting (a full ring under pause, a device error) the engine reports it and the
// job stops: nothing is appended after a refusal.

import Dispatch
import EdgelogCore
import EdgelogStore
import Synchronization

public final class IngressEngine: @unchecked Sendable {
    public let queue: IngressQueue
    public let scheduler: Scheduler
    private let pipeline: any RecordPipeline
    private let monitor = Monitor()
    private var feederDone = false
    private var failure: StoreError?
    private let appended = Atomic<UInt64>(0)
    /// Readings larger than a segment holds: never committed, counted here and reported.
    public private(set) var oversized: UInt64 = 0
    private let onFailure: @Sendable (StoreError) -> Void
    private let onOversized: @Sendable (String, StoreError) -> Void

    public init(pipeline: any RecordPipeline, queue: IngressQueue, clock: IngressClock = MonotonicClock(),
                onFailure: @escaping @Sendable (StoreError) -> Void = { _ in },
                onOversized: @escaping @Sendable (String, StoreError) -> Void = { _, _ in }) {
        self.pipeline = pipeline
        self.queue = queue
        self.scheduler = Scheduler(queue: queue, clock: clock)
        self.onFailure = onFailure
        self.onOversized = onOversized
    }

    public func start(_ sources: [SourceSpec]) {
        DispatchQueue(label: "edgelog.feeder").async { self.feed() }
        scheduler.start(sources)
    }

    /// Stops the sources, lets the feeder hand everything queued to the pipeline, and returns the
    /// store's refusal if there was one. The caller closes the pipeline.
    public func stop() throws(StoreError) {
        scheduler.stop()
        queue.close()
        monitor.lock()
        while !feederDone { monitor.wait() }
        let failure = self.failure
        monitor.unlock()
        if let failure { throw failure }
    }

    /// Records handed to the pipeline so far.
    public var recordsAppended: UInt64 { appended.load(ordering: .relaxed) }

    public var storeFailure: StoreError? {
        monitor.lock()
        defer { monitor.unlock() }
        return failure
    }

    private func feed() {
        var sinceTime = 0
        while true {
            guard let record = queue.take(timeoutNs: 200_000_000) else {
                if queue.isClosedAndEmpty { break }
                continue
            }
            let result = record.payload.withUnsafeBytes {
                pipeline.append(source: record.source, type: record.type, payload: $0, time: record.time)
            }
            // Frozen for a power failure: the pipeline counts a refused reading (it never got a seq)
            // and keeps evidence records for the resume.
            if case .frozen = result { continue }
            if case .deferred = result { continue }
            if case .refused(let error) = result {
                if case .recordTooLarge = error {
                    // One oversized reading (a misconfigured register count) does not stop the job;
                    // it is counted and reported (the segment size is the board's to change).
                    monitor.lock()
                    oversized += 1
                    monitor.unlock()
                    if record.index >= 0 {
                        queue.note(record.index, .ingressDrop, payload: IngressEvidence.drop(count: 1, reasonCode: "record_too_large", windowNs: 0))
                    }
                    onOversized(record.source, error)
                    continue
                }
                monitor.lock()
                failure = error
                monitor.unlock()
                onFailure(error)
                break
            }
            // The time path's bookkeeping goes to the next commit after each of its own records (a
            // step, a time_state) and every 256 records: not a lock of the queue per record.
            sinceTime += 1
            if record.source == SourceName.time || sinceTime >= 256 {
                pipeline.noteTime(queue.timeStats())
                sinceTime = 0
            }
            appended.wrappingAdd(1, ordering: .relaxed)
        }
        pipeline.noteTime(queue.timeStats())
        monitor.lock()
        feederDone = true
        monitor.broadcast()
        monitor.unlock()
    }
}
