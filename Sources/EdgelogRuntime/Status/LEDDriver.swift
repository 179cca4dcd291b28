// One thread draws the LED plan (LEDPlan.swift) on the board's LEDs: it wakes at each change of
// level and whenever the active conditions change, and sleeps otherwise. GPIO LEDs and LED-class
// LEDs are drawn the same way, by brightness writes. Codes and blinking may instead be handed to
// the kernel's pattern trigger where an LED-class LED offers it; such a pattern is given a lease of
// a finite repeat count that this thread renews, so a pattern outlives its process by at most the
// lease. The heartbeat is never handed over: it must stop when the process dies or hangs.
//
// An LED that cannot be written is retried every second and counted; the first failure and the
// recovery are logged, nothing else: LEDs never stop the job.

import Dispatch
import EdgelogCore
import EdgelogHAL
import EdgelogStore
import Synchronization

public final class LEDDriver: @unchecked Sendable {
    public struct Options: Sendable {
        public var timings = LEDTimings.standard
        /// Hand codes and blinking to the kernel's pattern trigger where an LED offers it.
        public var useKernelPatterns = true
        /// A kernel pattern stops by itself at most this long after the last renewal.
        public var kernelLeaseMs = 30_000
        /// Once the job has called `StatusBoard.alive()`, this long without another call shows a
        /// stall (the code LED steady on). nil: no stall detection.
        public var stallAfterMs: Int? = 10_000
        /// A failed write is tried again after this long.
        public var retryMs = 1_000
        public init() {}
    }

    /// What the LEDs show after `stop`.
    public enum StopState: Sendable {
        /// Every LED off: the job ended normally.
        case off
        /// The fault LED (else the code LED) steady on, the others off: the job ended on an error.
        case failed
    }

    /// An LED of the board with its role.
    public struct Entry {
        public var spec: StatusLEDSpec
        public var led: LED
        public init(spec: StatusLEDSpec, led: LED) {
            self.spec = spec
            self.led = led
        }
    }

    final class Slot {
        let spec: StatusLEDSpec
        let led: LED
        var kernelCapable = false
        var kernelBroken = false
        var pattern: LEDPattern?
        var phaseStartNs: Int64 = 0
        /// What was last written (nil: unknown, or the last write failed).
        var level: Bool?
        var kernel: (startNs: Int64, repeatCount: Int, renewAtNs: Int64)?
        var writeErrors: UInt64 = 0
        var failing = false
        init(_ entry: Entry) {
            spec = entry.spec
            led = entry.led
        }
    }

    private let slots: [Slot]
    private let board: StatusBoard
    private let options: Options
    private let log: @Sendable (String) -> Void
    private let clock: @Sendable () -> Int64
    private let monitor = Monitor()
    private var stopping = false
    private var kicked = false
    private var started = false
    private var finalState = StopState.off
    private let done = DispatchSemaphore(value: 0)
    private let published = Mutex<[LEDReport]>([])
    private let errorCount = Atomic<UInt64>(0)

    /// `leds`: at most one per role (a later duplicate is ignored). `log` gets one line per
    /// failure episode of an LED and one per recovery.
    public init(leds: [Entry], board: StatusBoard, options: Options = Options(),
                clock: @escaping @Sendable () -> Int64 = { Monitor.monotonicNs() }, log: @escaping @Sendable (String) -> Void) {
        var seen = Set<LEDRole>()
        slots = leds.filter { seen.insert($0.spec.role).inserted }.map(Slot.init)
        self.board = board
        self.options = options
        self.clock = clock
        self.log = log
    }

    /// The LEDs' roles and colours.
    public var specs: [StatusLEDSpec] { slots.map(\.spec) }

    /// Failed LED writes (and failed pattern-trigger calls) since start.
    public var writeErrors: UInt64 { errorCount.load(ordering: .relaxed) }

    /// What each LED shows now.
    public var reports: [LEDReport] { published.withLock { $0 } }

    /// Starts the thread. The board's snapshot reports the LEDs from then on.
    public func start() {
        monitor.lock()
        guard !started, !stopping else {
            monitor.unlock()
            return
        }
        started = true
        monitor.unlock()
        for slot in slots {
            if options.useKernelPatterns, let p = slot.led as? PatternTriggerLED { slot.kernelCapable = p.patternTriggerAvailable() }
        }
        board.onChange { [weak self] in self?.kick() }
        board.setLEDReporter { [weak self] in self?.reports ?? [] }
        DispatchQueue(label: "edgelog.leds").async { self.loop() }
    }

    /// Stops the thread and leaves the LEDs in `state` (docs/LEDS.md). Returns when done.
    public func stop(leaving state: StopState = .off) {
        monitor.lock()
        let wasStarted = started
        let already = stopping
        stopping = true
        finalState = state
        monitor.broadcast()
        monitor.unlock()
        if already { return }
        if wasStarted { done.wait() } else { finish(state) }
    }

    private func kick() {
        monitor.lock()
        kicked = true
        monitor.broadcast()
        monitor.unlock()
    }

    private func loop() {
        // Off first: a brightness write of 0 also ends any trigger a previous run or the boot left.
        let now = clock()
        for slot in slots { write(slot, on: false, now: now) }
        monitor.lock()
        while !stopping {
            kicked = false
            monitor.unlock()
            let wake = render(now: clock())
            monitor.lock()
            if stopping || kicked { continue }
            let left = wake - clock()
            if left > 0 { monitor.wait(ns: left) }
        }
        let state = finalState
        monitor.unlock()
        finish(state)
        done.signal()
    }

    /// Draws every LED for `now`; returns when it must run again (monotonic ns).
    private func render(now: Int64) -> Int64 {
        var patterns = LEDPlan.patterns(active: board.activeConditions, leds: slots.map(\.spec), timings: options.timings)
        var wake = now + 3_600_000_000_000
        if let stallMs = options.stallAfterMs {
            let alive = board.lastAliveNs
            let limit = Int64(stallMs) * 1_000_000
            if alive != 0 {
                if now - alive > limit, let role = LEDPlan.codeRole(slots.map(\.spec.role)) {
                    patterns[role] = .steady
                    // Look again soon: alive() does not wake this thread.
                    wake = min(wake, now + 500_000_000)
                } else {
                    wake = min(wake, alive + limit + 1_000_000)
                }
            }
        }
        var changed = false
        for slot in slots {
            let before = (slot.pattern, slot.kernel != nil, slot.writeErrors)
            wake = min(wake, draw(slot, patterns[slot.spec.role] ?? .off, now: now))
            if before.0 != slot.pattern || before.1 != (slot.kernel != nil) || before.2 != slot.writeErrors { changed = true }
        }
        if changed { publish() }
        return wake
    }

    private func draw(_ slot: Slot, _ pattern: LEDPattern, now: Int64) -> Int64 {
        if slot.pattern != pattern {
            if slot.kernel != nil { leaveKernel(slot) }
            slot.pattern = pattern
            slot.phaseStartNs = now
            if slot.kernelCapable, !slot.kernelBroken, pattern.kernelAllowed, let p = slot.led as? PatternTriggerLED {
                let count = repeatCount(pattern)
                do {
                    try p.startPattern(pattern.steps.map { LEDStep(brightness: $0.on ? slot.led.maxBrightness : 0, ms: $0.ms) }, repeat: count)
                    slot.kernel = (now, count, renewAt(pattern, from: now, count: count))
                    slot.level = nil
                } catch {
                    kernelFailed(slot, error, now: now)
                }
            }
        }
        if let k = slot.kernel, let p = slot.led as? PatternTriggerLED {
            guard now >= k.renewAtNs else { return k.renewAtNs }
            do {
                try p.renewPattern(repeat: k.repeatCount)
                let renewed = renewAt(pattern, from: now, count: k.repeatCount)
                slot.kernel = (now, k.repeatCount, renewed)
                return renewed
            } catch {
                kernelFailed(slot, error, now: now)
            }
        }
        let (on, next) = pattern.level(atNs: now - slot.phaseStartNs)
        if slot.level != on { write(slot, on: on, now: now) }
        var wake = next.map { now + $0 } ?? now + 3_600_000_000_000
        if slot.level == nil { wake = min(wake, now + Int64(options.retryMs) * 1_000_000) }
        return wake
    }

    /// Enough cycles to cover the lease, at least two.
    private func repeatCount(_ pattern: LEDPattern) -> Int {
        let period = max(1, pattern.periodMs)
        return max(2, (options.kernelLeaseMs + period - 1) / period)
    }

    /// Renewal restarts the pattern from its first step. It is due half a step (at most 500 ms)
    /// before the end of the lease's last cycle, inside that cycle's final off step (the pause):
    /// the pause shortens by that much, and a thread that runs late still lands in it.
    private func renewAt(_ pattern: LEDPattern, from start: Int64, count: Int) -> Int64 {
        let period = Int64(pattern.periodMs) * 1_000_000
        let margin = Int64(min((pattern.steps.last?.ms ?? 0) / 2, 500)) * 1_000_000
        return start + Int64(count - 1) * period + period - margin
    }

    private func leaveKernel(_ slot: Slot) {
        slot.kernel = nil
        slot.level = nil
        guard let p = slot.led as? PatternTriggerLED else { return }
        do { try p.stopPattern() } catch { noteFailure(slot, error) }
    }

    private func kernelFailed(_ slot: Slot, _ error: HardwareError, now: Int64) {
        slot.kernelBroken = true
        errorCount.wrappingAdd(1, ordering: .relaxed)
        slot.writeErrors &+= 1
        log("LED \(slot.spec.role.rawValue) (\(slot.led.name)): the kernel's pattern trigger failed (\(error)); drawing it in software from now on")
        if slot.kernel != nil, let p = slot.led as? PatternTriggerLED { try? p.stopPattern() }
        slot.kernel = nil
        slot.level = nil
        slot.phaseStartNs = now
    }

    private func write(_ slot: Slot, on: Bool, now: Int64) {
        do {
            try slot.led.set(brightness: on ? slot.led.maxBrightness : 0)
            slot.level = on
            if slot.failing {
                slot.failing = false
                log("LED \(slot.spec.role.rawValue) (\(slot.led.name)) works again after \(slot.writeErrors) failed write(s)")
            }
        } catch {
            slot.level = nil
            noteFailure(slot, error)
        }
    }

    private func noteFailure(_ slot: Slot, _ error: HardwareError) {
        errorCount.wrappingAdd(1, ordering: .relaxed)
        slot.writeErrors &+= 1
        if !slot.failing {
            slot.failing = true
            log("LED \(slot.spec.role.rawValue) (\(slot.led.name)) cannot be written: \(error); retrying every \(options.retryMs) ms, the job goes on")
        }
    }

    private func publish() {
        let reports = slots.map { slot in
            LEDReport(role: slot.spec.role, colour: slot.spec.colour, name: slot.led.name, shows: slot.pattern?.description ?? "off",
                      code: slot.pattern?.code?.description, mode: slot.kernel != nil ? "kernel" : "software", writeErrors: slot.writeErrors)
        }
        published.withLock { $0 = reports }
    }

    /// The state after stop: kernel patterns ended, then one write per LED (tried twice).
    private func finish(_ state: StopState) {
        let roles = slots.map(\.spec.role)
        let lit: LEDRole? = state == .failed ? (roles.contains(.fault) ? .fault : LEDPlan.codeRole(roles)) : nil
        let now = clock()
        for slot in slots {
            if slot.kernel != nil { leaveKernel(slot) }
            let on = slot.spec.role == lit
            slot.pattern = on ? .steady : .off
            write(slot, on: on, now: now)
            if slot.level == nil { write(slot, on: on, now: now) }
        }
        publish()
    }
}
