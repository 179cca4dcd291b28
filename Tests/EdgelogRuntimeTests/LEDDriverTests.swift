// The LED thread on simulated LEDs: when each change of brightness happens against the pattern's
// schedule (never early, and late by at most a loaded machine's scheduling delay, which does not
// add up over a pattern), codes that follow a condition at once, the kernel's pattern trigger with
// its lease and its fallback, write errors that are counted and logged once, stalls and the state
// left at stop.

import EdgelogCore
import EdgelogHAL
import EdgelogRuntime
import EdgelogStore
import Foundation
import Synchronization
import Testing

final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

@Suite("LED driver", .serialized)
struct LEDDriverTests {
    /// Lateness a busy two-core machine may add to one change (the schedule does not drift).
    static let lateMs: Int64 = 150

    static func led(_ name: String = "status", trigger: Bool = false) -> SimulatedLED {
        SimulatedLED(name: name, patternTrigger: trigger, clock: { Monitor.monotonicNs() })
    }

    static func options(_ t: LEDTimings = .standard, kernel: Bool = true) -> LEDDriver.Options {
        var o = LEDDriver.Options()
        o.timings = t
        o.useKernelPatterns = kernel
        o.stallAfterMs = nil
        o.retryMs = 50
        return o
    }

    /// Checks the changes from index `from` (the pattern's first on) against `steps` repeated:
    /// each change at its scheduled offset from that first one, not early, at most `lateMs` late.
    static func expectSchedule(_ changes: [SimulatedLED.Change], from: Int, steps: [LEDPattern.Step], count: Int,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        guard changes.count >= from + count else {
            Issue.record("only \(changes.count - from) changes, expected \(count): \(changes)", sourceLocation: sourceLocation)
            return
        }
        let t0 = changes[from].timeNs
        var offsetMs: Int64 = 0
        var level = true
        var k = 0
        for i in 0..<count {
            let change = changes[from + i]
            let actualMs = (change.timeNs - t0) / 1_000_000
            #expect((change.brightness > 0) == level, "change \(i) has brightness \(change.brightness)", sourceLocation: sourceLocation)
            #expect(actualMs >= offsetMs - 20 && actualMs <= offsetMs + lateMs,
                    "change \(i) at \(actualMs) ms, scheduled at \(offsetMs) ms", sourceLocation: sourceLocation)
            // Consecutive steps of one level merge into one change.
            repeat {
                offsetMs += Int64(steps[k % steps.count].ms)
                k += 1
            } while steps[k % steps.count].on == level
            level.toggle()
        }
    }

    @Test("one LED, nothing active: the heartbeat on the documented schedule, drawn in software even where the kernel could")
    func heartbeat() throws {
        let led = Self.led(trigger: true)
        let board = StatusBoard()
        let driver = LEDDriver(leds: [.init(spec: StatusLEDSpec(role: .status), led: led)], board: board, options: Self.options(), log: { _ in })
        driver.start()
        Thread.sleep(forTimeInterval: 2.3)
        driver.stop()
        let changes = led.changes
        #expect(changes.first?.brightness == 0, "starts from off")
        Self.expectSchedule(changes, from: 1, steps: LEDPattern.heartbeat().steps, count: 8)
        #expect(led.patternEvents.isEmpty, "the heartbeat never goes to the kernel")
        #expect(led.brightness == 0, "off after a normal stop")
    }

    @Test("a condition starts its code at once, with long and short flashes on schedule; clearing it brings the heartbeat back")
    func codeFollowsCondition() throws {
        let t = LEDTimings.standard.faster(by: 4)
        let led = Self.led()
        let board = StatusBoard()
        let driver = LEDDriver(leds: [.init(spec: StatusLEDSpec(role: .status), led: led)], board: board, options: Self.options(t), log: { _ in })
        driver.start()
        Thread.sleep(forTimeInterval: 0.3)
        let setAt = Monitor.monotonicNs()
        board.set(.sensorFault, active: true, detail: "env.bme280 (3 in a row)")
        Thread.sleep(forTimeInterval: 2.5)
        let during = led.changes
        let first = try #require(during.firstIndex { $0.timeNs >= setAt && $0.brightness > 0 && $0.timeNs - setAt < 1_000_000_000 })
        #expect((during[first].timeNs - setAt) / 1_000_000 <= Self.lateMs, "the code starts when the condition is set")
        let code = LEDPattern.code(StatusCondition.sensorFault.blinkCode, t)
        Self.expectSchedule(during, from: first, steps: code.steps, count: 10)
        #expect(driver.reports.first?.code == "3-2" && driver.reports.first?.mode == "software")
        #expect(board.snapshot().leds?.first?.shows == "code 3-2 (3 long, 2 short)")
        board.set(.sensorFault, active: false)
        Thread.sleep(forTimeInterval: 0.4)
        #expect(driver.reports.first?.shows == "heartbeat")
        driver.stop()
    }

    @Test("the kernel's pattern trigger gets codes with a finite repeat count and renews it; the LED ends off without renewals")
    func kernelPatternLease() throws {
        let t = LEDTimings.standard.faster(by: 10)
        let led = Self.led(trigger: true)
        let board = StatusBoard()
        var o = Self.options(t)
        o.kernelLeaseMs = 1000
        board.set(.storageFault, active: true)
        let driver = LEDDriver(leds: [.init(spec: StatusLEDSpec(role: .status), led: led)], board: board, options: o, log: { _ in })
        driver.start()
        Thread.sleep(forTimeInterval: 1.5)
        let code = LEDPattern.code(StatusCondition.storageFault.blinkCode, t)
        let period = code.periodMs
        let count = max(2, (1000 + period - 1) / period)
        let events = led.patternEvents
        #expect(events.first == .start(code.steps.map { LEDStep(brightness: $0.on ? 1 : 0, ms: $0.ms) }, repeat: count))
        #expect(events.contains(.renew(repeat: count)), "\(events)")
        #expect(driver.reports.first?.mode == "kernel")
        // A change of condition leaves the kernel for the heartbeat (software).
        board.set(.storageFault, active: false)
        Thread.sleep(forTimeInterval: 0.3)
        #expect(led.patternEvents.last == .stop && !led.patternActive)
        #expect(driver.reports.first?.mode == "software" && driver.reports.first?.shows == "heartbeat")
        driver.stop()
        #expect(led.brightness == 0)
    }

    @Test("a pattern trigger that fails: drawn in software from then on, counted, logged once")
    func kernelFallback() throws {
        let t = LEDTimings.standard.faster(by: 10)
        let led = Self.led(trigger: true)
        led.failPatterns(with: .permission)
        let board = StatusBoard()
        board.set(.verificationFailure, active: true)
        let log = LogLines()
        let driver = LEDDriver(leds: [.init(spec: StatusLEDSpec(role: .status), led: led)], board: board, options: Self.options(t), log: log.add)
        driver.start()
        Thread.sleep(forTimeInterval: 1.2)
        driver.stop()
        let first = try #require(led.changes.firstIndex { $0.brightness > 0 })
        Self.expectSchedule(led.changes, from: first, steps: LEDPattern.code(BlinkCode(long: 1, short: 2), t).steps, count: 6)
        #expect(driver.writeErrors == 1)
        #expect(log.all.count == 1 && log.all[0].contains("pattern trigger failed"), "\(log.all)")
    }

    @Test("write errors never stop the LEDs: retried, counted, one log line for the failure and one for the recovery")
    func writeErrors() throws {
        let led = Self.led()
        led.failNext(3)
        let board = StatusBoard()
        let log = LogLines()
        let driver = LEDDriver(leds: [.init(spec: StatusLEDSpec(role: .status), led: led)], board: board, options: Self.options(), log: log.add)
        driver.start()
        Thread.sleep(forTimeInterval: 1.2)
        #expect(driver.writeErrors == 3)
        #expect(log.all.count == 2 && log.all[0].contains("cannot be written") && log.all[1].contains("works again after 3"), "\(log.all)")
        #expect(led.changes.filter { $0.brightness > 0 }.count >= 2, "the heartbeat goes on after the errors")
        // An LED that never works: the driver still stops when asked.
        led.fail(with: .vanished)
        Thread.sleep(forTimeInterval: 0.3)
        driver.stop()
        #expect(driver.writeErrors > 3 && log.all.count == 3)
        #expect(board.snapshot().leds?.first?.writeErrors == driver.writeErrors)
    }

    @Test("three LEDs show their parts; at stop: all off, or the fault LED steady after a failure")
    func threeLEDsAndStop() throws {
        let status = Self.led("status"), fault = Self.led("fault"), power = Self.led("power")
        let board = StatusBoard()
        board.set(.storageFault, active: true)
        board.set(.powerFailHold, active: true)
        let entries: [LEDDriver.Entry] = [.init(spec: StatusLEDSpec(role: .status, colour: .green), led: status),
                                          .init(spec: StatusLEDSpec(role: .fault, colour: .red), led: fault),
                                          .init(spec: StatusLEDSpec(role: .power, colour: .amber), led: power)]
        let driver = LEDDriver(leds: entries, board: board, options: Self.options(), log: { _ in })
        driver.start()
        Thread.sleep(forTimeInterval: 0.5)
        #expect(fault.brightness == 1 && power.brightness == 1 && status.brightness == 1, "steady fault and power, the code's first long flash")
        #expect(driver.reports.map(\.shows) == ["code 1-1 (1 long, 1 short)", "steady on", "steady on"])
        driver.stop(leaving: .failed)
        #expect(fault.brightness == 1 && status.brightness == 0 && power.brightness == 0)

        let only = Self.led()
        let single = LEDDriver(leds: [.init(spec: StatusLEDSpec(role: .status), led: only)], board: StatusBoard(), options: Self.options(), log: { _ in })
        single.start()
        Thread.sleep(forTimeInterval: 0.2)
        single.stop(leaving: .failed)
        #expect(only.brightness == 1, "one LED: steady on after a failure")
    }

    @Test("a job that stops calling alive(): the code LED goes steady on, and back to the heartbeat when it calls again")
    func stall() throws {
        let led = Self.led()
        let board = StatusBoard()
        var o = Self.options()
        o.stallAfterMs = 300
        let driver = LEDDriver(leds: [.init(spec: StatusLEDSpec(role: .status), led: led)], board: board, options: o, log: { _ in })
        board.alive()
        driver.start()
        Thread.sleep(forTimeInterval: 1.0)
        #expect(driver.reports.first?.shows == "steady on" && led.brightness == 1)
        let before = led.changes.count
        Thread.sleep(forTimeInterval: 0.4)
        #expect(led.changes.count == before, "steady: no change")
        for _ in 0..<8 {
            board.alive()
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(driver.reports.first?.shows == "heartbeat")
        driver.stop()
    }
}
