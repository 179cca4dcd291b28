// What each status LED shows for a set of active conditions (docs/LEDS.md is the technician's
// table; this file is its source). A board has one to three LEDs in the roles status, fault and
// power. One of them, the code LED (status if present, else fault, else power), shows everything:
// a heartbeat while all is well, else the blink code of the most urgent condition, so a board with
// one LED can still tell every state apart. A separate fault LED (red, IEC 60073) also shows the
// category at a glance: steady for Failure, blinking for Out of specification. A separate power
// LED (yellow or amber) is steady during power_fail_hold and blinks for brownout_loop.

public enum LEDRole: String, CaseIterable, Sendable, Codable {
    case status, fault, power
}

/// IEC 60073 colours an LED may be declared with.
public enum LEDColour: String, CaseIterable, Sendable, Codable {
    case red, yellow, amber, green, blue, white
}

/// An LED the board has: its role and, when known, its colour.
public struct StatusLEDSpec: Equatable, Sendable {
    public var role: LEDRole
    public var colour: LEDColour?
    public init(role: LEDRole, colour: LEDColour? = nil) {
        self.role = role
        self.colour = colour
    }
}

/// Every duration of the patterns, in ms. `standard` is what docs/LEDS.md documents.
public struct LEDTimings: Equatable, Sendable {
    /// Heartbeat: on, off, on, off (one period).
    public var heartbeat = [100, 150, 100, 650]
    public var longOnMs = 1200
    public var shortOnMs = 300
    /// Off between two flashes of one group.
    public var gapMs = 400
    /// Off between the long group and the short group.
    public var groupGapMs = 800
    /// Off after the code, before it repeats.
    public var pauseMs = 3000
    /// On and off of a blinking fault or power LED (1 Hz).
    public var blinkMs = 500

    public static let standard = LEDTimings()
    public init() {}

    /// Every duration divided by `factor` (at least 1 ms): faster patterns for tests.
    public func faster(by factor: Int) -> LEDTimings {
        let f = max(1, factor)
        func s(_ v: Int) -> Int { max(1, v / f) }
        var t = self
        t.heartbeat = heartbeat.map(s)
        t.longOnMs = s(longOnMs)
        t.shortOnMs = s(shortOnMs)
        t.gapMs = s(gapMs)
        t.groupGapMs = s(groupGapMs)
        t.pauseMs = s(pauseMs)
        t.blinkMs = s(blinkMs)
        return t
    }
}

/// A repeating on/off pattern for one LED.
public struct LEDPattern: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case off, steady, heartbeat, blink
        case code(BlinkCode)
    }

    public struct Step: Equatable, Sendable {
        public var on: Bool
        public var ms: Int
    }

    public var kind: Kind
    /// One period; empty for off and steady.
    public var steps: [Step]

    public static let off = LEDPattern(kind: .off, steps: [])
    public static let steady = LEDPattern(kind: .steady, steps: [])

    public static func heartbeat(_ t: LEDTimings = .standard) -> LEDPattern {
        LEDPattern(kind: .heartbeat, steps: t.heartbeat.enumerated().map { Step(on: $0.offset % 2 == 0, ms: $0.element) })
    }

    public static func blink(_ t: LEDTimings = .standard) -> LEDPattern {
        LEDPattern(kind: .blink, steps: [Step(on: true, ms: t.blinkMs), Step(on: false, ms: t.blinkMs)])
    }

    /// `code.long` long flashes, a longer gap, `code.short` short flashes, then the pause.
    public static func code(_ code: BlinkCode, _ t: LEDTimings = .standard) -> LEDPattern {
        var steps: [Step] = []
        for i in 0..<max(1, code.long) {
            steps.append(Step(on: true, ms: t.longOnMs))
            steps.append(Step(on: false, ms: i == code.long - 1 ? t.groupGapMs : t.gapMs))
        }
        for i in 0..<max(1, code.short) {
            steps.append(Step(on: true, ms: t.shortOnMs))
            steps.append(Step(on: false, ms: i == code.short - 1 ? t.pauseMs : t.gapMs))
        }
        return LEDPattern(kind: .code(code), steps: steps)
    }

    /// Off or steady: one write, nothing to time.
    public var isConstant: Bool { steps.isEmpty || steps.count < 2 }
    public var constantLevel: Bool { kind == .steady }
    public var periodMs: Int { steps.reduce(0) { $0 + $1.ms } }

    /// The heartbeat means "this process is alive": only software draws it, so that it stops
    /// when the process dies or hangs. Codes and blinking may go to the kernel (docs/LEDS.md).
    public var kernelAllowed: Bool {
        switch kind {
        case .code, .blink: true
        default: false
        }
    }

    public var code: BlinkCode? {
        if case .code(let c) = kind { return c }
        return nil
    }

    /// Whether the LED is on `elapsedNs` after the pattern started, and how long (ns) until the
    /// next step begins (nil for a constant pattern).
    public func level(atNs elapsedNs: Int64) -> (on: Bool, nextChangeInNs: Int64?) {
        guard !isConstant else { return (constantLevel, nil) }
        let period = Int64(periodMs) * 1_000_000
        guard period > 0 else { return (false, nil) }
        var t = max(0, elapsedNs) % period
        for step in steps {
            let d = Int64(step.ms) * 1_000_000
            if t < d { return (step.on, d - t) }
            t -= d
        }
        return (steps.last?.on ?? false, 1)
    }

    public var description: String {
        switch kind {
        case .off: "off"
        case .steady: "steady on"
        case .heartbeat: "heartbeat"
        case .blink: "blinking"
        case .code(let c): "code \(c) (\(c.words))"
        }
    }
}

public enum LEDPlan {
    /// The LED that shows the heartbeat and the blink codes: status, else fault, else power.
    public static func codeRole(_ roles: [LEDRole]) -> LEDRole? {
        LEDRole.allCases.first { roles.contains($0) }
    }

    /// The code LED's pattern alone: the heartbeat, or the most urgent condition's code.
    public static func codePattern(_ active: [StatusCondition], _ t: LEDTimings = .standard) -> LEDPattern {
        guard let top = active.min() else { return .heartbeat(t) }
        return .code(top.blinkCode, t)
    }

    /// The pattern of every LED of the board for the active conditions (order does not matter).
    public static func patterns(active: [StatusCondition], leds: [StatusLEDSpec], timings t: LEDTimings = .standard) -> [LEDRole: LEDPattern] {
        let roles = leds.map(\.role)
        let codeLED = codeRole(roles)
        let categories = Set(active.map(\.category))
        var out: [LEDRole: LEDPattern] = [:]
        for role in roles {
            if role == codeLED {
                out[role] = codePattern(active, t)
                continue
            }
            switch role {
            case .fault:
                out[role] = categories.contains(.failure) ? .steady : categories.contains(.outOfSpecification) ? .blink(t) : .off
            case .power:
                out[role] = active.contains(.powerFailHold) ? .steady : active.contains(.brownoutLoop) ? .blink(t) : .off
            case .status:
                // Only the code LED can be status (it comes first).
                out[role] = codePattern(active, t)
            }
        }
        return out
    }

    /// Colours that read wrongly under IEC 60073 (red: alarm; yellow/amber: abnormal; green: normal).
    public static func warnings(_ leds: [StatusLEDSpec]) -> [String] {
        var out: [String] = []
        let codeLED = codeRole(leds.map(\.role))
        for led in leds {
            guard let colour = led.colour else { continue }
            if led.role == .fault && led.role != codeLED && colour != .red {
                out.append("the fault LED is \(colour.rawValue): IEC 60073 gives red to faults, and a steady \(colour.rawValue) light may be read as normal")
            }
            if led.role == .power && led.role != codeLED && colour != .yellow && colour != .amber {
                out.append("the power LED is \(colour.rawValue): IEC 60073 gives yellow or amber to an abnormal condition such as a power failure")
            }
        }
        return out
    }
}
