// Polls the sources. One thread owns each bus and polls its sources in order of due time, so two
// devices on one bus (or the slaves on one Modbus line) never talk over each other, and a device
// that times out delays only the sources of its own bus. Event sources run on threads of their own.
// Every read is stamped at ingress by the queue; every failure becomes a source_fault record and a
// backoff; the first good read after failures becomes a source_recovered record. A failed read is
// never replaced by the last good value: the record says it failed.

import Dispatch
import Synchronization
import EdgelogHAL
import EdgelogStore

public final class Scheduler: @unchecked Sendable {
    public struct SourceStatus: Sendable, Equatable {
        public var name: String
        public var location: String
        public var reads: UInt64
        public var failures: UInt64
        /// Failures since the last good read (0: healthy).
        public var failing: Int
        public var lastError: String?
        public var rejected: UInt64
    }

    final class Run: @unchecked Sendable {
        let spec: SourceSpec
        let index: Int
        var dueNs: Int64 = 0
        var needsStart = true
        var failing = 0
        var retryAtNs: Int64 = 0
        var downSinceNs: Int64 = 0
        var reads: UInt64 = 0
        var failures: UInt64 = 0
        var rejected: UInt64 = 0
        /// Rejected messages not yet in a rejected_input record (at most one record a second).
        var rejectedUnrecorded: UInt64 = 0
        var lastRejectedRecordNs: Int64?
        var lastRejected: HardwareError?
        var lastError: String?
        // Poll lateness past the bound, gathered for at most one poll_overrun record a second.
        var latePolls: UInt64 = 0
        var missedPolls: UInt64 = 0
        var maxLateNs: Int64 = 0
        var overrunSinceNs: Int64 = 0
        init(spec: SourceSpec, index: Int) {
            self.spec = spec
            self.index = index
        }
    }

    private let queue: IngressQueue
    private let clock: IngressClock
    /// Counters and the thread count. Sleeping is on each thread's own waker: bus threads never
    /// contend for one lock to wait.
    private let monitor = Monitor()
    private var wakers: [Monitor] = []
    private let stopFlag = Atomic<Bool>(false)
    private var runs: [Run] = []
    private var running = 0
    private var latenessNs: [Int64] = []
    private var random = SystemRandomNumberGenerator()
    /// How many lateness samples are kept for the percentiles (the newest overwrite the oldest).
    static let sampleLimit = 100_000
    private var sampleCursor = 0

    /// Told of each fault, recovery and rejected message as it is recorded (the daemon logs them).
    public var onEvent: (@Sendable (_ source: String, _ event: RecordType, _ detail: String) -> Void)?

    public init(queue: IngressQueue, clock: IngressClock = MonotonicClock()) {
        self.queue = queue
        self.clock = clock
    }

    /// Registers every source with the queue and starts one thread per bus and per event source.
    public func start(_ specs: [SourceSpec]) {
        var byBus: [String: [Run]] = [:]
        var busOrder: [String] = []
        var events: [Run] = []
        let now = clock.nowNs()
        for spec in specs {
            let run = Run(spec: spec, index: queue.register(name: spec.name, policy: spec.policy, limits: spec.limits))
            run.dueNs = now
            runs.append(run)
            switch spec.kind {
            case .polled:
                if byBus[spec.bus] == nil { busOrder.append(spec.bus) }
                byBus[spec.bus, default: []].append(run)
            case .event:
                events.append(run)
            }
        }
        let threadWakers = (0..<(busOrder.count + events.count)).map { _ in Monitor() }
        monitor.lock()
        running = busOrder.count + events.count
        wakers = threadWakers
        monitor.unlock()
        for (i, bus) in busOrder.enumerated() {
            let owned = byBus[bus] ?? []
            let waker = threadWakers[i]
            DispatchQueue(label: "edgelog.bus.\(bus)").async { self.pollLoop(owned, waker) }
        }
        for (i, run) in events.enumerated() {
            let waker = threadWakers[busOrder.count + i]
            DispatchQueue(label: "edgelog.event.\(run.spec.name)").async { self.eventLoop(run, waker) }
        }
    }

    /// Stops polling and waits until every thread has finished its current read. Late polls not
    /// yet reported (the window of a poll_overrun record is a second) are recorded now.
    public func stop() {
        stopFlag.store(true, ordering: .sequentiallyConsistent)
        monitor.lock()
        let all = wakers
        monitor.unlock()
        for waker in all {
            waker.lock()
            waker.broadcast()
            waker.unlock()
        }
        monitor.lock()
        while running > 0 { monitor.wait() }
        var pending: [(Int, RecordType, [UInt8])] = []
        for run in runs where run.rejectedUnrecorded > 0 {
            if let error = run.lastRejected {
                pending.append((run.index, .rejectedInput, IngressEvidence.rejected(error, count: run.rejectedUnrecorded, total: run.rejected)))
            }
            run.rejectedUnrecorded = 0
        }
        for run in runs where run.latePolls > 0 || run.missedPolls > 0 {
            guard case .polled(_, let periodNs) = run.spec.kind else { continue }
            pending.append((run.index, .pollOverrun, IngressEvidence.overrun(polls: run.latePolls, missed: run.missedPolls, maxLateNs: run.maxLateNs,
                                                               boundNs: run.spec.jitterBoundNs, periodNs: periodNs)))
            run.latePolls = 0
            run.missedPolls = 0
        }
        monitor.unlock()
        for (index, type, payload) in pending { queue.note(index, type, payload: payload) }
    }

    public func status() -> [SourceStatus] {
        monitor.lock()
        defer { monitor.unlock() }
        return runs.map {
            SourceStatus(name: $0.spec.name, location: $0.spec.location, reads: $0.reads, failures: $0.failures, failing: $0.failing,
                         lastError: $0.lastError, rejected: $0.rejected)
        }
    }

    /// Poll lateness (start of the poll minus its due time) at the given quantiles, in nanoseconds.
    public func latenessPercentiles(_ quantiles: [Double]) -> [Int64] {
        monitor.lock()
        let samples = latenessNs.sorted()
        monitor.unlock()
        guard !samples.isEmpty else { return quantiles.map { _ in 0 } }
        return quantiles.map { q in samples[min(samples.count - 1, max(0, Int((Double(samples.count) * q).rounded(.up)) - 1))] }
    }

    // MARK: threads

    private var isStopping: Bool { stopFlag.load(ordering: .sequentiallyConsistent) }

    /// Sleeps on the thread's own waker until `deadlineNs` or until stop; false when stopping.
    private func sleep(until deadlineNs: Int64, _ waker: Monitor) -> Bool {
        waker.lock()
        defer { waker.unlock() }
        while !isStopping {
            let left = deadlineNs - clock.nowNs()
            if left <= 0 { return true }
            waker.wait(ns: left)
        }
        return false
    }

    private func finished() {
        monitor.lock()
        running -= 1
        monitor.broadcast()
        monitor.unlock()
    }

    private func pollLoop(_ owned: [Run], _ waker: Monitor) {
        defer { finished() }
        guard !owned.isEmpty else { return }
        while true {
            // The source due first; ties go in board order.
            var next = owned[0]
            for run in owned.dropFirst() where run.dueNs < next.dueNs { next = run }
            guard sleep(until: next.dueNs, waker) else { return }
            guard case .polled(let sensor, let declaredPeriodNs) = next.spec.kind else { return }
            let periodNs = max(declaredPeriodNs, 1_000_000)
            let startNs = clock.nowNs()
            noteLateness(next, lateNs: startNs - next.dueNs, periodNs: periodNs, nowNs: startNs)
            // The next due time keeps the period's phase; polls that could not happen are counted.
            next.dueNs += periodNs
            if next.dueNs <= startNs {
                let missed = (startNs - next.dueNs) / periodNs + 1
                let (total, overflow) = next.missedPolls.addingReportingOverflow(UInt64(clamping: missed))
                next.missedPolls = overflow ? .max : total
                next.dueNs += missed * periodNs
            }
            poll(next, sensor, nowNs: startNs)
        }
    }

    private func poll(_ run: Run, _ sensor: PolledSensor, nowNs: Int64) {
        if run.failing > 0 && nowNs < run.retryAtNs { return }
        guard queue.admit(run.index, nowNs: nowNs) else { return }
        do throws(HardwareError) {
            if run.needsStart {
                try sensor.start()
                run.needsStart = false
            }
            let reading = try sensor.read()
            let now = clock.nowNs()
            succeeded(run, nowNs: now)
            queue.offer(run.index, payload: reading.json, nowNs: now)
        } catch {
            failed(run, error, nowNs: clock.nowNs())
        }
    }

    private func eventLoop(_ run: Run, _ waker: Monitor) {
        defer { finished() }
        guard case .event(let sensor) = run.spec.kind else { return }
        defer { drain(run, sensor) }
        while !isStopping {
            let now = clock.nowNs()
            flushRejected(run, nowNs: now)
            if run.failing > 0 && now < run.retryAtNs {
                guard sleep(until: min(run.retryAtNs, now + 100_000_000), waker) else { return }
                continue
            }
            // Held back: leave the bytes in the kernel's buffer (and the peer's flow control).
            guard queue.admit(run.index, nowNs: now) else {
                guard sleep(until: now + 20_000_000, waker) else { return }
                continue
            }
            do throws(HardwareError) {
                if run.needsStart {
                    try sensor.start()
                    run.needsStart = false
                }
                switch try sensor.next(timeoutMs: 100) {
                case nil: continue
                case .reading(let reading)?:
                    let now = clock.nowNs()
                    succeeded(run, nowNs: now)
                    queue.offer(run.index, payload: reading.json, nowNs: now)
                case .rejected(let error)?:
                    // A talker sending garbage must not flood the store: one record a second at
                    // most, counting every rejected message since the previous one.
                    let now = clock.nowNs()
                    monitor.lock()
                    run.rejected += 1
                    run.rejectedUnrecorded += 1
                    run.lastError = error.description
                    run.lastRejected = error
                    var payload: [UInt8]?
                    if run.lastRejectedRecordNs.map({ now - $0 >= 1_000_000_000 }) ?? true {
                        payload = IngressEvidence.rejected(error, count: run.rejectedUnrecorded, total: run.rejected)
                        run.rejectedUnrecorded = 0
                        run.lastRejectedRecordNs = now
                    }
                    monitor.unlock()
                    if let payload {
                        queue.note(run.index, .rejectedInput, payload: payload)
                        onEvent?(run.spec.name, .rejectedInput, error.description)
                    }
                }
            } catch {
                failed(run, error, nowNs: clock.nowNs())
            }
        }
    }

    /// Rejected messages counted but not yet recorded get their record once a second has passed,
    /// whether or not another message comes.
    private func flushRejected(_ run: Run, nowNs: Int64) {
        monitor.lock()
        var payload: [UInt8]?
        if run.rejectedUnrecorded > 0, let error = run.lastRejected,
           run.lastRejectedRecordNs.map({ nowNs - $0 >= 1_000_000_000 }) ?? true {
            payload = IngressEvidence.rejected(error, count: run.rejectedUnrecorded, total: run.rejected)
            run.rejectedUnrecorded = 0
            run.lastRejectedRecordNs = nowNs
        }
        monitor.unlock()
        if let payload { queue.note(run.index, .rejectedInput, payload: payload) }
    }

    /// At stop: readings an event source already received (parsed lines of its last read) are
    /// handed over, not dropped. Bounded: a source that keeps producing stops after 10,000.
    private func drain(_ run: Run, _ sensor: EventSensor) {
        guard !run.needsStart else { return }
        for _ in 0..<10_000 {
            guard let outcome = try? sensor.next(timeoutMs: 0) else { return }
            switch outcome {
            case .reading(let reading):
                monitor.lock()
                run.reads += 1
                monitor.unlock()
                queue.offer(run.index, payload: reading.json, nowNs: clock.nowNs())
            case .rejected(let error):
                monitor.lock()
                run.rejected += 1
                run.rejectedUnrecorded += 1
                run.lastRejected = error
                monitor.unlock()
            }
        }
    }

    private func succeeded(_ run: Run, nowNs: Int64) {
        monitor.lock()
        run.reads += 1
        let failures = run.failing
        run.failing = 0
        monitor.unlock()
        if failures > 0 {
            queue.note(run.index, .sourceRecovered, payload: IngressEvidence.recovered(failures: failures, downNs: nowNs - run.downSinceNs))
            onEvent?(run.spec.name, .sourceRecovered, "after \(failures) failed attempt(s)")
        }
    }

    private func failed(_ run: Run, _ error: HardwareError, nowNs: Int64) {
        monitor.lock()
        run.failures += 1
        run.failing += 1
        if run.failing == 1 { run.downSinceNs = nowNs }
        run.lastError = error.description
        let delay = run.spec.backoff.delayNs(failures: run.failing, using: &random)
        run.retryAtNs = nowNs + delay
        // A device that failed is set up again before its next read (it may have been reset).
        run.needsStart = true
        let failing = run.failing
        monitor.unlock()
        queue.note(run.index, .sourceFault, payload: IngressEvidence.fault(error, failures: failing, retryInNs: delay))
        onEvent?(run.spec.name, .sourceFault, "\(error) (failure \(failing) in a row; next try in \(delay / 1_000_000) ms)")
    }

    private func noteLateness(_ run: Run, lateNs: Int64, periodNs: Int64, nowNs: Int64) {
        monitor.lock()
        if latenessNs.count < Scheduler.sampleLimit {
            latenessNs.append(lateNs)
        } else {
            latenessNs[sampleCursor] = lateNs
            sampleCursor = (sampleCursor + 1) % Scheduler.sampleLimit
        }
        let bound = run.spec.jitterBoundNs
        var payload: [UInt8]?
        if lateNs > bound || run.missedPolls > 0 {
            if run.latePolls == 0 && run.missedPolls == 0 { run.overrunSinceNs = nowNs }
            if lateNs > bound { run.latePolls += 1 }
            run.maxLateNs = max(run.maxLateNs, lateNs)
        }
        if (run.latePolls > 0 || run.missedPolls > 0) && nowNs - run.overrunSinceNs >= 1_000_000_000 {
            payload = IngressEvidence.overrun(polls: run.latePolls, missed: run.missedPolls, maxLateNs: run.maxLateNs, boundNs: bound, periodNs: periodNs)
            run.latePolls = 0
            run.missedPolls = 0
            run.maxLateNs = 0
        }
        monitor.unlock()
        if let payload { queue.note(run.index, .pollOverrun, payload: payload) }
    }
}
