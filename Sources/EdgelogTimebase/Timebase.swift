// The time path (docs/FORMAT.md sections 3.2 and 4, docs/DESIGN.md): every record gets its wall
// and boot times and the time quality at capture; wall-clock steps become clock_step records
// (direction, magnitude, both clocks before and after, likely source); slew is counted as drift;
// the sync status, last sync and RTC offset are recorded at start, on change and periodically.
// mono_ctr is not here: it is the store's ordering key and never depends on these clocks.
//
// Per record this costs two vDSO clock reads and a few comparisons; adjtimex is sampled once a
// second of boot time, the RTC at start and with each periodic time_state.

import EdgelogCore
import EdgelogStore

public struct TimebaseConfig: Sendable {
    /// A change of wall − boot larger than this between two captures is a step (default 100 ms).
    public var stepThresholdNs: Int64 = 100_000_000
    /// Unsynchronized with the kernel's maxerror above this, wall time is not trusted (default 1 s,
    /// the drift an audit tolerates).
    public var untrustedMaxErrorUs: Int64 = 1_000_000
    /// Wall times before this are obviously wrong (the executable's build time; 0: unknown).
    public var notBeforeWallNs: Int64 = 0
    /// How often the kernel's sync status is sampled (boot-clock ns).
    public var syncSampleNs: Int64 = 1_000_000_000
    /// How often a periodic time_state record is written (boot-clock ns).
    public var stateIntervalNs: Int64 = 600_000_000_000

    public init() {}
}

/// A time record to write before the record being captured.
public struct TimeRecord: Sendable {
    public var type: RecordType
    public var payload: [UInt8]
    public var time: CaptureTime
}

public final class Timebase {
    /// Wall times before 2001-01-01 are a reset clock (1970 or 2000 after RTC power loss).
    public static let resetBeforeNs: Int64 = 978_307_200_000_000_000

    public let config: TimebaseConfig
    private let source: TimeSource
    private var counters: TimeStats
    private var sync: SyncState
    private var lastSyncSampleBootNs: Int64
    private var lastStateBootNs: Int64
    /// The earliest of the next sync sample and the next periodic state: one comparison per capture.
    private var nextSlowPathBootNs: Int64 = 0
    private var last: (wallNs: Int64, bootNs: Int64)?
    private var driftNs: Int64 = 0
    private var pending: [TimeRecord] = []
    /// Flags that hold until the next sync sample (synced, or untrusted for want of sync).
    private var syncFlags: TimeFlags = []
    /// The sample's errors as records store them (FORMAT.md 3.2), cached with the flags.
    private var sampleMaxErrorUs = CaptureTime.notSampled
    private var sampleEstErrorUs = CaptureTime.notSampled
    /// Wall times below this are untrusted whatever the sync status.
    private let minTrustedWallNs: Int64

    /// The bookkeeping the metadata keeps (with the last capture's offset).
    public var stats: TimeStats {
        var s = counters
        if let last { s.lastOffsetNs = last.wallNs &- last.bootNs }
        return s
    }

    /// `resumeOffsetNs`: wall − boot of the last capture before a restart in the same kernel boot,
    /// so that a step while the writer was down is still seen.
    public init(source: TimeSource, config: TimebaseConfig = TimebaseConfig(), stats: TimeStats = TimeStats(),
                resumeOffsetNs: Int64? = nil) {
        self.source = source
        self.config = config
        self.counters = stats
        minTrustedWallNs = Self.minTrustedWallNs(config)
        let now = source.now()
        sync = source.sync()
        lastSyncSampleBootNs = now.bootNs
        lastStateBootNs = now.bootNs
        if sync.synchronized { counters.lastSyncWallNs = now.wallNs }
        if let resumeOffsetNs { last = (now.bootNs + resumeOffsetNs, now.bootNs) }
        noteSample()
        scheduleSlowPath()
        readRTC(wallNs: now.wallNs)
    }

    /// One capture with a sync sample of its own and no step bookkeeping: for the records the engine
    /// writes outside a writer's time path (recovery, gap, drop, key rotation), which are rare.
    public static func oneShot(source: TimeSource, config: TimebaseConfig) -> CaptureTime {
        let now = source.now()
        let sync = source.sync()
        var flags = flags(for: sync, config: config)
        if now.wallNs < minTrustedWallNs(config) { flags.insert(.wallUntrusted) }
        return CaptureTime(wallNs: now.wallNs, bootNs: now.bootNs, flags: flags,
                           maxErrorUs: CaptureTime.storedError(sync.maxErrorUs), estErrorUs: CaptureTime.storedError(sync.estErrorUs),
                           lastSyncNs: sync.synchronized ? now.wallNs : 0)
    }

    /// Wall times below this are an obviously reset clock or older than the executable.
    private static func minTrustedWallNs(_ config: TimebaseConfig) -> Int64 {
        max(resetBeforeNs, config.notBeforeWallNs)
    }

    private static func flags(for sync: SyncState, config: TimebaseConfig) -> TimeFlags {
        if sync.synchronized { return .synced }
        return sync.maxErrorUs > config.untrustedMaxErrorUs ? .wallUntrusted : []
    }

    /// Caches what every record captured until the next sample carries.
    private func noteSample() {
        syncFlags = Self.flags(for: sync, config: config)
        sampleMaxErrorUs = CaptureTime.storedError(sync.maxErrorUs)
        sampleEstErrorUs = CaptureTime.storedError(sync.estErrorUs)
    }

    /// A capture time with the quality of the sample in effect.
    private func stamp(_ now: (wallNs: Int64, bootNs: Int64), flags: TimeFlags) -> CaptureTime {
        CaptureTime(wallNs: now.wallNs, bootNs: now.bootNs, flags: flags, maxErrorUs: sampleMaxErrorUs,
                    estErrorUs: sampleEstErrorUs, lastSyncNs: counters.lastSyncWallNs)
    }

    private func scheduleSlowPath() {
        nextSlowPathBootNs = min(lastSyncSampleBootNs &+ config.syncSampleNs, lastStateBootNs &+ config.stateIntervalNs)
    }

    /// The records a writer starts with: a clock_step if the wall clock stepped while no writer ran
    /// (same kernel boot), then the boot record (type 6).
    public func start(bootID: [UInt8], bootSeq: UInt32, unexpectedReset: Bool, monoResume: UInt64) -> [TimeRecord] {
        var records: [TimeRecord] = []
        let time = capture(before: &records)
        var json = EvidenceJSON()
        json.add("boot_id", .word(Hex.encode(bootID)))
        json.add("boot_seq", .uint(UInt64(bootSeq)))
        json.add("unexpected_reset", .bool(unexpectedReset))
        json.add("mono_resume", .uint(monoResume))
        addState(&json, reason: "start", time: time)
        lastStateBootNs = time.bootNs
        scheduleSlowPath()
        records.append(TimeRecord(type: .boot, payload: json.bytes, time: time))
        return records
    }

    /// Captures a record's time. Time records that must come first (a step, a sync change, a
    /// periodic state) are returned in `before`, in order.
    public func capture(before: inout [TimeRecord]) -> CaptureTime {
        let now = source.now()
        var stepped = false
        if let last {
            let delta = (now.wallNs &- now.bootNs) &- (last.wallNs &- last.bootNs)
            if delta > config.stepThresholdNs || delta < -config.stepThresholdNs {
                let previousSync = sync
                sampleSync(now: now, force: true)
                before.append(stepRecord(from: last, to: now, delta: delta, previousSync: previousSync))
                stepped = true
            } else {
                driftNs &+= delta
            }
        }
        // The hot path ends here for almost every record: one comparison decides whether the sync
        // status or a periodic state is due.
        if now.bootNs >= nextSlowPathBootNs {
            sampleSync(now: now, force: false)
            if now.bootNs &- lastStateBootNs >= config.stateIntervalNs {
                readRTC(wallNs: now.wallNs)
                before.append(stateRecord(reason: "periodic", now: now))
            }
            scheduleSlowPath()
        }
        if !pending.isEmpty {
            before.append(contentsOf: pending)
            pending.removeAll()
        }
        last = now
        var flags = syncFlags
        if stepped { flags.insert(.afterStep) }
        if now.wallNs < minTrustedWallNs { flags.insert(.wallUntrusted) }
        return stamp(now, flags: flags)
    }

    // MARK: internals

    private func quality(wallNs: Int64) -> TimeFlags {
        var flags = syncFlags
        if wallNs < minTrustedWallNs { flags.insert(.wallUntrusted) }
        return flags
    }

    /// Samples adjtimex at most once per syncSampleNs (or now when `force`); a change of status
    /// queues a time_state record.
    private func sampleSync(now: (wallNs: Int64, bootNs: Int64), force: Bool) {
        let elapsed = now.bootNs - lastSyncSampleBootNs
        guard force || elapsed >= config.syncSampleNs else { return }
        let fresh = source.sync()
        if !sync.synchronized && elapsed > 0 { counters.unsyncNs &+= UInt64(elapsed) }
        lastSyncSampleBootNs = now.bootNs
        let changed = fresh.synchronized != sync.synchronized
        sync = fresh
        noteSample()
        scheduleSlowPath()
        if fresh.synchronized { counters.lastSyncWallNs = now.wallNs }
        if changed { pending.append(stateRecord(reason: "sync_change", now: now)) }
    }

    private func stepRecord(from before: (wallNs: Int64, bootNs: Int64), to after: (wallNs: Int64, bootNs: Int64),
                            delta: Int64, previousSync: SyncState) -> TimeRecord {
        let magnitude = delta.magnitude
        counters.clockSteps &+= 1
        counters.largestStepNs = max(counters.largestStepNs, magnitude)
        var cause = "manual"
        if previousSync.synchronized != sync.synchronized {
            cause = "sync"
        } else if let rtc = source.rtcWallNs() {
            // Wall time now agrees with the RTC, and the clock as it ran on before did not.
            let expected = before.wallNs + (after.bootNs - before.bootNs)
            if abs(after.wallNs - rtc) < 1_000_000_000 && abs(expected - rtc) >= 1_000_000_000 { cause = "rtc" }
        }
        var json = EvidenceJSON()
        json.add("direction", .word(delta > 0 ? "forward" : "backward"))
        json.add("magnitude_ns", .uint(magnitude))
        json.add("wall_before_ns", .int(before.wallNs))
        json.add("boot_before_ns", .int(before.bootNs))
        json.add("wall_after_ns", .int(after.wallNs))
        json.add("boot_after_ns", .int(after.bootNs))
        json.add("source", .word(cause))
        return TimeRecord(type: .clockStep, payload: json.bytes,
                          time: stamp(after, flags: quality(wallNs: after.wallNs)))
    }

    private func stateRecord(reason: String, now: (wallNs: Int64, bootNs: Int64)) -> TimeRecord {
        let time = stamp(now, flags: quality(wallNs: now.wallNs))
        var json = EvidenceJSON()
        addState(&json, reason: reason, time: time)
        lastStateBootNs = now.bootNs
        scheduleSlowPath()
        return TimeRecord(type: .timeState, payload: json.bytes, time: time)
    }

    private func addState(_ json: inout EvidenceJSON, reason: String, time: CaptureTime) {
        json.add("reason", .word(reason))
        json.add("synced", .bool(sync.synchronized))
        json.add("maxerror_us", .int(sync.maxErrorUs))
        json.add("esterror_us", .int(sync.estErrorUs))
        json.add("last_sync_wall_ns", counters.lastSyncWallNs == 0 ? .null : .int(counters.lastSyncWallNs))
        json.add("unsync_ns", .uint(counters.unsyncNs))
        json.add("drift_ns", .int(driftNs))
        json.add("rtc_offset_ns", counters.rtcState == .read ? .int(counters.rtcOffsetNs) : .null)
        json.add("wall_untrusted", .bool(time.flags.contains(.wallUntrusted)))
        driftNs = 0
    }

    /// Reads the RTC; a system without one is noted once (rtc_state absent), never as an error.
    private func readRTC(wallNs: Int64) {
        if let rtc = source.rtcWallNs() {
            counters.rtcOffsetNs = rtc - wallNs
            counters.rtcState = .read
        } else {
            counters.rtcState = .absent
        }
    }
}
