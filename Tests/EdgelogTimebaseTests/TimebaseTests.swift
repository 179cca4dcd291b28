// The time path with controllable clocks: steps forward and backward, a leap-second-like repeat,
// a reset to 1970, slew, sync changes, a long offline period, an RTC or none, and a restart in the
// middle of each. mono_ctr is the store's (not this module's): its restart rule is tested with the
// store and the kill tests.

import EdgelogCore
import EdgelogStore
import EdgelogTimebase
import Testing

/// 2026-11-23 in ns.
let today: Int64 = 1_795_400_000_000_000_000
let second: Int64 = 1_000_000_000

struct Captured {
    var time: CaptureTime
    var records: [(type: RecordType, payload: String)]
}

func capture(_ timebase: Timebase) -> Captured {
    var before: [TimeRecord] = []
    let time = timebase.capture(before: &before)
    return Captured(time: time, records: before.map { ($0.type, String(decoding: $0.payload, as: UTF8.self)) })
}

let synced = SyncState(synchronized: true, maxErrorUs: 20_000, estErrorUs: 1_000)

@Suite("Timebase")
struct TimebaseTests {
    @Test("steps forward and backward are clock_step records with direction and magnitude; slew is drift")
    func steps() {
        let clock = ManualTimeSource(wallNs: today, state: synced)
        let timebase = Timebase(source: clock)
        #expect(capture(timebase).records.isEmpty)
        clock.advance(second)
        clock.step(50_000_000) // 50 ms: below the threshold, slew
        #expect(capture(timebase).records.isEmpty)
        clock.advance(second)
        clock.step(5 * second)
        let forward = capture(timebase)
        #expect(forward.records.count == 1)
        #expect(forward.records.first?.type == .clockStep)
        #expect(forward.records.first?.payload.contains("\"direction\":\"forward\",\"magnitude_ns\":5000000000") == true)
        #expect(forward.time.flags.contains(.afterStep))
        clock.advance(second)
        clock.step(-3 * second)
        let backward = capture(timebase)
        #expect(backward.records.first?.payload.contains("\"direction\":\"backward\",\"magnitude_ns\":3000000000") == true)
        #expect(timebase.stats.clockSteps == 2)
        #expect(timebase.stats.largestStepNs == UInt64(5 * second))
        // The next time_state reports the 50 ms slew as drift.
        clock.advance(601 * second)
        let periodic = capture(timebase)
        #expect(periodic.records.contains { $0.type == .timeState && $0.payload.contains("\"reason\":\"periodic\"") && $0.payload.contains("\"drift_ns\":50000000") })
    }

    @Test("a leap-second-like repeat of one second is a backward step, and ordering does not depend on it")
    func leapSecond() {
        let clock = ManualTimeSource(wallNs: today, state: synced)
        let timebase = Timebase(source: clock)
        _ = capture(timebase)
        clock.advance(second)
        clock.step(-second)
        let repeatCapture = capture(timebase)
        #expect(repeatCapture.records.first?.payload.contains("\"direction\":\"backward\",\"magnitude_ns\":1000000000") == true)
        // Wall time repeats; boot time still goes forward.
        #expect(repeatCapture.time.wallNs == today)
        #expect(repeatCapture.time.bootNs > 10_000_000_000)
    }

    @Test("a reset to 1970 is a step and flags wall time untrusted; so does a date before the build")
    func resetTo1970() {
        let clock = ManualTimeSource(wallNs: today, state: synced)
        var config = TimebaseConfig()
        config.notBeforeWallNs = today - 86_400 * second
        let timebase = Timebase(source: clock, config: config)
        #expect(!capture(timebase).time.flags.contains(.wallUntrusted))
        clock.advance(second)
        clock.step(-today + 5 * second) // RTC lost power: 1970-01-01 00:00:05
        let reset = capture(timebase)
        #expect(reset.time.flags.contains(.wallUntrusted))
        #expect(reset.records.first?.payload.contains("\"direction\":\"backward\"") == true)
        clock.advance(second)
        clock.step(today - 10 * 86_400 * second) // a date before the executable was built
        #expect(capture(timebase).time.flags.contains(.wallUntrusted))
    }

    @Test("unsynchronized past the error bound is untrusted; a sync change is recorded with last_sync_ts and its step attributed to sync")
    func syncChanges() {
        let clock = ManualTimeSource(wallNs: today, state: SyncState(synchronized: false, maxErrorUs: 16_000_000, estErrorUs: 16_000_000))
        let timebase = Timebase(source: clock)
        let first = capture(timebase)
        #expect(first.time.flags.contains(.wallUntrusted))
        #expect(!first.time.flags.contains(.synced))
        clock.advance(2 * second)
        // NTP steps the clock and the kernel reports synchronized.
        clock.step(40 * second)
        clock.state = synced
        let stepped = capture(timebase)
        #expect(stepped.records.map(\.type) == [.clockStep, .timeState])
        #expect(stepped.records[0].payload.contains("\"source\":\"sync\""))
        #expect(stepped.records[1].payload.contains("\"reason\":\"sync_change\",\"synced\":true"))
        #expect(stepped.time.flags.contains(.synced))
        #expect(!stepped.time.flags.contains(.wallUntrusted))
        #expect(timebase.stats.lastSyncWallNs == clock.wallNs)
        #expect(timebase.stats.unsyncNs == UInt64(2 * second))
    }

    @Test("every record carries the kernel's errors and the last sync of the sample in effect at its capture")
    func perRecordQuality() {
        let unsynced = SyncState(synchronized: false, maxErrorUs: 16_000_000, estErrorUs: 16_000_000)
        let clock = ManualTimeSource(wallNs: today, state: unsynced)
        let timebase = Timebase(source: clock)
        let first = capture(timebase).time
        #expect(first.maxErrorUs == 16_000_000 && first.estErrorUs == 16_000_000)
        #expect(first.lastSyncNs == 0, "never synchronized: no last sync")
        // The kernel synchronizes; records within the same second still carry the old sample.
        clock.state = SyncState(synchronized: true, maxErrorUs: 35_000, estErrorUs: 800)
        clock.advance(500_000_000)
        let sameSample = capture(timebase).time
        #expect(sameSample.maxErrorUs == 16_000_000 && sameSample.lastSyncNs == 0)
        clock.advance(600_000_000)
        let syncedAt = clock.wallNs
        let fresh = capture(timebase)
        #expect(fresh.time.maxErrorUs == 35_000 && fresh.time.estErrorUs == 800)
        #expect(fresh.time.lastSyncNs == syncedAt)
        #expect(fresh.time.flags.contains(.synced))
        // The time_state written for the change carries the same quality as the record after it.
        #expect(fresh.records.map(\.type) == [.timeState])
        // Sync lost: the errors grow, the last sync stays where it was.
        clock.state = SyncState(synchronized: false, maxErrorUs: 37_000, estErrorUs: 900)
        clock.advance(2 * second)
        let lost = capture(timebase).time
        #expect(lost.maxErrorUs == 37_000 && lost.estErrorUs == 900)
        #expect(lost.lastSyncNs == syncedAt)
        #expect(!lost.flags.contains(.synced) && !lost.flags.contains(.wallUntrusted), "37 ms is within the 1 s bound")
        // Out-of-range kernel values are stored saturated, never as "not sampled".
        #expect(CaptureTime.storedError(-5) == 0)
        #expect(CaptureTime.storedError(Int64.max) == CaptureTime.notSampled - 1)
        // The engine's one-shot capture takes a sample of its own.
        let engine = Timebase.oneShot(source: clock, config: TimebaseConfig())
        #expect(engine.maxErrorUs == 37_000 && engine.lastSyncNs == 0 && engine.wallNs == clock.wallNs)
    }

    @Test("adjtimex is sampled once a second of boot time, not per record")
    func syncSampling() {
        let clock = ManualTimeSource(wallNs: today, state: synced)
        let timebase = Timebase(source: clock)
        let calls = clock.syncCalls
        for _ in 0..<1000 {
            clock.advance(100_000) // 1000 records in 0.1 s
            _ = capture(timebase)
        }
        #expect(clock.syncCalls == calls)
        clock.advance(second)
        _ = capture(timebase)
        #expect(clock.syncCalls == calls + 1)
    }

    @Test("an RTC step is attributed to the RTC; a missing RTC is noted once, never per record")
    func rtc() {
        let clock = ManualTimeSource(wallNs: today, state: SyncState(synchronized: false, maxErrorUs: 500_000, estErrorUs: 500_000),
                                     rtcNs: today + 30 * second)
        let timebase = Timebase(source: clock)
        #expect(timebase.stats.rtcState == .read)
        #expect(timebase.stats.rtcOffsetNs == 30 * second)
        _ = capture(timebase)
        clock.advance(second)
        clock.step(30 * second) // hwclock --hctosys
        #expect(capture(timebase).records.first?.payload.contains("\"source\":\"rtc\"") == true)

        let none = ManualTimeSource(wallNs: today)
        let quiet = Timebase(source: none)
        #expect(quiet.stats.rtcState == .absent)
        let boot = quiet.start(bootID: Array(repeating: 1, count: 16), bootSeq: 1, unexpectedReset: false, monoResume: 0)
        #expect(boot.last?.type == .boot)
        let bootText = String(decoding: boot.last?.payload ?? [], as: UTF8.self)
        #expect(bootText.contains("\"rtc_offset_ns\":null"))
        for _ in 0..<100 {
            none.advance(second)
            #expect(capture(quiet).records.isEmpty)
        }
    }

    @Test("a restart in the same boot sees a step made while no writer ran; a long offline period across boots is no step")
    func restartMidStep() {
        let clock = ManualTimeSource(wallNs: today, state: synced)
        let before = Timebase(source: clock)
        _ = capture(before)
        let saved = before.stats
        // The writer stops; the wall clock is set back 2 h; the writer starts again (same boot).
        clock.advance(10 * second)
        clock.step(-7200 * second)
        let after = Timebase(source: clock, stats: saved, resumeOffsetNs: saved.lastOffsetNs)
        let start = after.start(bootID: Array(repeating: 2, count: 16), bootSeq: 1, unexpectedReset: true, monoResume: 41)
        #expect(start.map(\.type) == [.clockStep, .boot])
        #expect(String(decoding: start[0].payload, as: UTF8.self).contains("\"direction\":\"backward\",\"magnitude_ns\":7200000000000"))
        let boot = String(decoding: start[1].payload, as: UTF8.self)
        #expect(boot.contains("\"boot_seq\":1,\"unexpected_reset\":true,\"mono_resume\":41"))

        // A new boot (boot time restarts, three days offline): no resume offset, no step.
        let rebooted = ManualTimeSource(wallNs: today + 3 * 86_400 * second, bootNs: 5 * second, state: synced)
        let fresh = Timebase(source: rebooted, stats: after.stats, resumeOffsetNs: nil)
        let records = fresh.start(bootID: Array(repeating: 3, count: 16), bootSeq: 2, unexpectedReset: false, monoResume: 99)
        #expect(records.map(\.type) == [.boot])
        #expect(fresh.stats.clockSteps == 1)
    }
}

@Suite("Timebase across a restart")
struct TimebaseRestartTests {
    /// Each kind of step, made while no writer ran (same kernel boot): the restarted writer records it.
    @Test("a step of each kind while the writer was down is recorded at restart", arguments: [
        (5 * second, "forward"), (-3 * second, "backward"), (-second, "backward"), (-today + 5 * second, "backward"),
    ])
    func stepWhileDown(step: Int64, direction: String) {
        let clock = ManualTimeSource(wallNs: today, state: synced)
        let first = Timebase(source: clock)
        _ = capture(first)
        clock.advance(30 * second)
        clock.step(step)
        let second_ = Timebase(source: clock, stats: first.stats, resumeOffsetNs: first.stats.lastOffsetNs)
        let records = second_.start(bootID: Array(repeating: 9, count: 16), bootSeq: 4, unexpectedReset: false, monoResume: 7)
        #expect(records.map(\.type) == [.clockStep, .boot])
        let text = String(decoding: records[0].payload, as: UTF8.self)
        #expect(text.contains("\"direction\":\"\(direction)\",\"magnitude_ns\":\(step.magnitude)"), "\(text)")
        #expect(second_.stats.clockSteps == 1)
        // After a reset to 1970 the boot record itself says wall time is not to be trusted.
        if step < -today / 2 {
            #expect(String(decoding: records[1].payload, as: UTF8.self).contains("\"wall_untrusted\":true"))
        }
    }
}
