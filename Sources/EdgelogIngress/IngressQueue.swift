// The stamping queue between the sources and the writer. A reading is stamped (the time path's
// capture: the canonical evidence entry time) and queued under one lock, so the order of the queue
// is the order of ingress, and the writer gives mono_ctr in that order. Each source has its own
// bound and its declared overload policy; the evidence records those policies write go in the same
// queue, in order, and never count against the bound (they are few: one per change of state).

import EdgelogCore
import EdgelogHAL
import EdgelogStore
import EdgelogTimebase

public struct QueuedRecord: Sendable {
    public var source: String
    public var type: RecordType
    public var payload: [UInt8]
    public var time: CaptureTime
    /// Index of the source in the queue's table; -1 for the time path's own records.
    var index: Int
}

/// What happened to an offered reading.
public enum OfferOutcome: Equatable, Sendable {
    case queued
    /// Decimation kept another reading of this window instead.
    case decimated
    /// The queue was full: counted in the next ingress_drop record.
    case dropped
    /// The queue is closed (the job is stopping).
    case closed
}

public final class IngressQueue: @unchecked Sendable {
    struct SourceState {
        let name: String
        let policy: OverloadPolicy
        let limits: QueueLimits
        var queued = 0
        var dropCount: UInt64 = 0
        var dropFirstNs: Int64 = 0
        var dropLastNs: Int64 = 0
        var decimating = false
        var decimationSinceNs: Int64 = 0
        var seen: UInt64 = 0
        var kept: UInt64 = 0
        var discarded: UInt64 = 0
        var backpressured = false
        var backpressureSinceNs: Int64 = 0
        var skipped: UInt64 = 0
        // Counters for status and tests.
        var totalDropped: UInt64 = 0
        var totalDecimated: UInt64 = 0
        var totalSkipped: UInt64 = 0
    }

    public struct SourceCounters: Equatable, Sendable {
        public var queued: Int
        public var dropped: UInt64
        public var decimated: UInt64
        public var skippedPolls: UInt64
        public var backpressured: Bool
        public var decimating: Bool
    }

    private let monitor = Monitor()
    private var sources: [SourceState] = []
    private var records: [QueuedRecord] = []
    private var head = 0
    private var closed = false
    private let timebase: Timebase
    private var timeRecords: [TimeRecord] = []

    public init(timebase: Timebase) {
        self.timebase = timebase
    }

    /// Adds a source; returns its index for `offer`.
    public func register(name: String, policy: OverloadPolicy, limits: QueueLimits) -> Int {
        monitor.lock()
        defer { monitor.unlock() }
        sources.append(SourceState(name: name, policy: policy, limits: limits))
        return sources.count - 1
    }

    public var depth: Int {
        monitor.lock()
        defer { monitor.unlock() }
        return records.count - head
    }

    public func counters(_ index: Int) -> SourceCounters {
        monitor.lock()
        defer { monitor.unlock() }
        let s = sources[index]
        return SourceCounters(queued: s.queued, dropped: s.totalDropped, decimated: s.totalDecimated, skippedPolls: s.totalSkipped,
                              backpressured: s.backpressured, decimating: s.decimating)
    }

    /// The time path's statistics, read under the queue's lock (the writer stores them at commit).
    public func timeStats() -> TimeStats {
        monitor.lock()
        defer { monitor.unlock() }
        return timebase.stats
    }

    /// Before a poll: false while a backpressure source is held back (the poll is skipped).
    public func admit(_ index: Int, nowNs: Int64) -> Bool {
        monitor.lock()
        defer { monitor.unlock() }
        guard !closed else { return false }
        guard case .backpressure = sources[index].policy else { return true }
        var s = sources[index]
        if !s.backpressured && s.queued >= s.limits.highWater {
            s.backpressured = true
            s.backpressureSinceNs = nowNs
            s.skipped = 0
            sources[index] = s
            enqueue(index, .backpressure, IngressEvidence.backpressure(on: true, depth: s.queued, limit: s.limits.capacity, skippedPolls: 0, durationNs: nil))
        } else if s.backpressured && s.queued <= s.limits.lowWater {
            s.backpressured = false
            sources[index] = s
            enqueue(index, .backpressure, IngressEvidence.backpressure(on: false, depth: s.queued, limit: s.limits.capacity,
                                                                              skippedPolls: s.skipped, durationNs: nowNs - s.backpressureSinceNs))
        }
        if sources[index].backpressured {
            sources[index].skipped += 1
            sources[index].totalSkipped += 1
            return false
        }
        return true
    }

    /// Offers a reading's payload; stamps it if it is queued.
    @discardableResult
    public func offer(_ index: Int, payload: [UInt8], nowNs: Int64) -> OfferOutcome {
        monitor.lock()
        defer { monitor.unlock() }
        guard !closed else { return .closed }
        var s = sources[index]
        if s.queued >= s.limits.capacity {
            if s.dropCount == 0 { s.dropFirstNs = nowNs }
            s.dropCount += 1
            s.dropLastNs = nowNs
            s.totalDropped += 1
            sources[index] = s
            return .dropped
        }
        if case .decimate(let declared) = s.policy {
            let factor = max(declared, 2)
            if !s.decimating && s.queued >= s.limits.highWater {
                s.decimating = true
                s.decimationSinceNs = nowNs
                s.seen = 0
                s.kept = 0
                s.discarded = 0
                sources[index] = s
                enqueue(index, .decimation, IngressEvidence.decimation(start: true, factor: factor, depth: s.queued, kept: 0, discarded: 0, windowNs: nil))
            } else if s.decimating && s.queued <= s.limits.lowWater {
                s.decimating = false
                sources[index] = s
                enqueue(index, .decimation, IngressEvidence.decimation(start: false, factor: factor, depth: s.queued, kept: s.kept,
                                                                              discarded: s.discarded, windowNs: nowNs - s.decimationSinceNs))
            }
            s = sources[index]
            if s.decimating {
                s.seen += 1
                if (s.seen - 1) % UInt64(factor) != 0 {
                    s.discarded += 1
                    s.totalDecimated += 1
                    sources[index] = s
                    return .decimated
                }
                s.kept += 1
                sources[index] = s
            }
        }
        flushDrops(index)
        enqueue(index, .data, payload)
        return .queued
    }

    /// Queues an evidence record of a source (a fault, a recovery, an overrun, a rejected message).
    public func note(_ index: Int, _ type: RecordType, payload: [UInt8]) {
        monitor.lock()
        defer { monitor.unlock() }
        guard !closed else { return }
        flushDrops(index)
        enqueue(index, type, payload)
    }

    /// The next record for the writer, waiting at most `timeoutNs`; nil on timeout or when closed
    /// and empty.
    public func take(timeoutNs: Int64) -> QueuedRecord? {
        monitor.lock()
        defer { monitor.unlock() }
        if head == records.count && !closed { monitor.wait(ns: timeoutNs) }
        guard head < records.count else { return nil }
        let record = records[head]
        head += 1
        if record.index >= 0 && record.type == .data { sources[record.index].queued -= 1 }
        if head == records.count {
            records.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 4096 {
            records.removeFirst(head)
            head = 0
        }
        return record
    }

    /// No more offers: what is queued is still taken; pending drop counts become records now.
    public func close() {
        monitor.lock()
        defer { monitor.unlock() }
        guard !closed else { return }
        let now = Monitor.monotonicNs()
        for index in sources.indices {
            flushDrops(index)
            // A degradation still in force at the end is closed by its record: no open window.
            let s = sources[index]
            if s.backpressured {
                sources[index].backpressured = false
                enqueue(index, .backpressure, IngressEvidence.backpressure(on: false, depth: s.queued, limit: s.limits.capacity,
                                                                                  skippedPolls: s.skipped, durationNs: now - s.backpressureSinceNs))
            }
            if s.decimating, case .decimate(let factor) = s.policy {
                sources[index].decimating = false
                enqueue(index, .decimation, IngressEvidence.decimation(start: false, factor: factor, depth: s.queued, kept: s.kept,
                                                                              discarded: s.discarded, windowNs: now - s.decimationSinceNs))
            }
        }
        closed = true
        monitor.broadcast()
    }

    public var isClosedAndEmpty: Bool {
        monitor.lock()
        defer { monitor.unlock() }
        return closed && head == records.count
    }

    // MARK: under the lock

    private func flushDrops(_ index: Int) {
        let s = sources[index]
        guard s.dropCount > 0 else { return }
        sources[index].dropCount = 0
        enqueue(index, .ingressDrop, IngressEvidence.drop(count: s.dropCount, reasonCode: "queue_full", windowNs: s.dropLastNs - s.dropFirstNs))
    }

    private func enqueue(_ index: Int, _ type: RecordType, _ payload: [UInt8]) {
        // The feeder waits only on an empty queue: waking it once per batch is enough.
        let wasEmpty = head == records.count
        let time = timebase.capture(before: &timeRecords)
        if !timeRecords.isEmpty {
            // A clock step or a time_state goes in right before the record it explains.
            for record in timeRecords {
                records.append(QueuedRecord(source: SourceName.time, type: record.type, payload: record.payload, time: record.time, index: -1))
            }
            timeRecords.removeAll(keepingCapacity: true)
        }
        records.append(QueuedRecord(source: sources[index].name, type: type, payload: payload, time: time, index: index))
        // Only readings count against the bound: evidence records are few and never refused.
        if type == .data { sources[index].queued += 1 }
        if wasEmpty { monitor.broadcast() }
    }
}
