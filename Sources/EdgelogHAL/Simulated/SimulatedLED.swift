// An LED for tests and simulated boards: it records every change of brightness with the time it
// happened (from a clock the test gives), can fail on demand, and can act as an LED-class LED whose
// kernel offers the pattern trigger (recording what was handed to the kernel).

import Synchronization

public final class SimulatedLED: PatternTriggerLED, Sendable {
    /// A change of brightness at `timeNs` (the clock passed to init).
    public struct Change: Equatable, Sendable {
        public var timeNs: Int64
        public var brightness: Int
    }

    /// What was asked of the simulated kernel pattern trigger, in order.
    public enum PatternEvent: Equatable, Sendable {
        case start([LEDStep], repeat: Int)
        case renew(repeat: Int)
        case stop
    }

    struct State {
        var brightness = 0
        var changes: [Change] = []
        var writes = 0
        var fault: HardwareError.Kind?
        var failNext = 0
        var patternTrigger: Bool
        var patternFault: HardwareError.Kind?
        var patternEvents: [PatternEvent] = []
        var patternActive = false
    }

    public let name: String
    public let maxBrightness: Int
    private let clock: @Sendable () -> Int64
    private let state: Mutex<State>

    /// `clock` gives the time of each change in ns (tests pass the monotonic clock).
    /// `patternTrigger`: the LED offers the kernel's pattern trigger.
    public init(name: String, maxBrightness: Int = 1, patternTrigger: Bool = false, clock: @escaping @Sendable () -> Int64) {
        self.name = name
        self.maxBrightness = max(1, maxBrightness)
        self.clock = clock
        self.state = Mutex(State(patternTrigger: patternTrigger))
    }

    public func set(brightness: Int) throws(HardwareError) {
        let now = clock()
        let failure: HardwareError.Kind? = state.withLock { s in
            s.writes += 1
            if s.failNext > 0 {
                s.failNext -= 1
                return .io
            }
            if let fault = s.fault { return fault }
            let value = min(max(brightness, 0), maxBrightness)
            // As the kernel does: a brightness write ends a running pattern.
            s.patternActive = false
            if value != s.brightness || s.changes.isEmpty {
                s.brightness = value
                s.changes.append(Change(timeNs: now, brightness: value))
            }
            return nil
        }
        if let failure { throw HardwareError(failure, device: "sim-led", address: name, detail: "injected fault") }
    }

    /// Every write fails with `kind` until cleared (nil).
    public func fail(with kind: HardwareError.Kind?) { state.withLock { $0.fault = kind } }
    /// The next `count` writes fail with an I/O error.
    public func failNext(_ count: Int) { state.withLock { $0.failNext = max(0, count) } }
    /// Pattern-trigger calls fail with `kind` until cleared (nil).
    public func failPatterns(with kind: HardwareError.Kind?) { state.withLock { $0.patternFault = kind } }

    public var brightness: Int { state.withLock { $0.brightness } }
    /// Every change of brightness so far (the first write is recorded even when it sets 0).
    public var changes: [Change] { state.withLock { $0.changes } }
    /// Writes attempted, failed ones included.
    public var writes: Int { state.withLock { $0.writes } }
    public var patternEvents: [PatternEvent] { state.withLock { $0.patternEvents } }
    /// True while a pattern handed to the simulated kernel runs (until stopped or a brightness write).
    public var patternActive: Bool { state.withLock { $0.patternActive } }

    public func patternTriggerAvailable() -> Bool { state.withLock { $0.patternTrigger } }

    private func pattern(_ event: PatternEvent, active: Bool) throws(HardwareError) {
        let failure: HardwareError.Kind? = state.withLock { s in
            guard s.patternTrigger else { return .unsupported }
            if let fault = s.patternFault { return fault }
            s.patternEvents.append(event)
            s.patternActive = active
            if !active { s.brightness = 0 }
            return nil
        }
        if let failure { throw HardwareError(failure, device: "sim-led", address: name, detail: "pattern trigger: injected fault") }
    }

    public func startPattern(_ steps: [LEDStep], repeat count: Int) throws(HardwareError) {
        try pattern(.start(steps, repeat: count), active: true)
    }

    public func renewPattern(repeat count: Int) throws(HardwareError) {
        try pattern(.renew(repeat: count), active: true)
    }

    public func stopPattern() throws(HardwareError) {
        try pattern(.stop, active: false)
    }
}
