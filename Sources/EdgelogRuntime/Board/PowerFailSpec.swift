// The board's `power_fail:` section (docs/BOARDS.md): where the power-fail signal comes from and
// how many milliseconds of guaranteed work the supply holds up after it (docs/DESIGN.md section 12).

import EdgelogLinux

public struct PowerFailSpec: Sendable, Equatable {
    /// A supervisor or UPS output on a GPIO line, read as kernel edge events through libgpiod.
    public struct GPIOLine: Sendable, Equatable {
        public var chip: String
        public var line: String
        /// The level that means "power is failing": a supervisor's PFO is usually active low.
        public var activeHigh: Bool
        /// An active level shorter than this is ripple, not a failure (0: act on the edge itself).
        public var debounceMs: Int
    }

    /// An input-event key (what Raspberry Pi's gpio-shutdown overlay and gpio-keys boards produce).
    public struct InputKey: Sendable, Equatable {
        /// The input device's name (/sys/class/input/eventN/device/name) or a /dev/input/eventN path.
        public var device: String
        /// The key code (KEY_POWER: 116).
        public var code: UInt16
        public var keyName: String
    }

    /// The supply's guaranteed hold-up after the signal: the window's budget.
    public var holdUpMs: Int
    /// The worst-case window times (1 + margin_pct/100) must fit the budget.
    public var marginPct: Int = 50
    /// Power good for this long ends a hold (GPIO line back to inactive, or SIGPWR with "O").
    public var resumeAfterMs: Int = 2000
    public var gpio: GPIOLine?
    public var inputKey: InputKey?
    /// SIGPWR as UPS daemons send it; /run/powerstatus ("F", "L" or "O") tells fail from restored.
    public var sigpwr = true
    /// Where a SIGPWR's meaning is read (sysvinit's convention).
    public var powerStatusFile = "/run/powerstatus"
    /// A brownout loop: this many unexpected resets (this start included) ...
    public var loopResets = 3
    /// ... within this many seconds.
    public var loopWithinS = 600

    /// Key names a board file may give (linux/input-event-codes.h).
    public static let keyCodes: [String: UInt16] = ["KEY_POWER": 116, "KEY_SLEEP": 142, "KEY_SUSPEND": 205, "KEY_POWER2": 0x164,
                                                   "KEY_BATTERY": 236]

    /// The same budget and loop rules with no input of its own (SIGPWR off): for tests and the
    /// start-up check of a board without a power-fail section.
    public init(holdUpMs: Int) { self.holdUpMs = holdUpMs }

    /// Names go into brownout records: bounded, so a record always fits a segment.
    static let maxName = 128

    static func name(_ f: inout YAMLFields, _ key: String) throws(BoardError) -> String {
        let v = try f.requiredString(key)
        guard v.utf8.count <= maxName else { throw f.fail(key, "at most \(maxName) bytes") }
        return v
    }

    static func parse(_ p: inout YAMLFields) throws(BoardError) -> PowerFailSpec {
        var spec = PowerFailSpec(holdUpMs: Int(try p.requiredInteger("hold_up_ms", in: 1...600_000)))
        if let v = try p.integer("margin_pct", in: 0...1000) { spec.marginPct = Int(v) }
        if let v = try p.integer("resume_after_ms", in: 0...3_600_000) { spec.resumeAfterMs = Int(v) }
        if var g = try p.mapping("gpio") {
            let active = try g.choice("active", ["low", "high"]) ?? "low"
            spec.gpio = GPIOLine(chip: try name(&g, "chip"), line: try name(&g, "line"), activeHigh: active == "high",
                                 debounceMs: Int(try g.integer("debounce_ms", in: 0...1000) ?? 0))
            try g.rejectUnknown(known: ["chip", "line", "active", "debounce_ms"])
        }
        if var k = try p.mapping("input_key") {
            let key = try k.choice("key", Array(keyCodes.keys).sorted()) ?? "KEY_POWER"
            spec.inputKey = InputKey(device: try name(&k, "device"), code: keyCodes[key] ?? 116, keyName: key)
            try k.rejectUnknown(known: ["device", "key"])
        }
        if let v = try p.bool("sigpwr") { spec.sigpwr = v }
        if let v = try p.string("power_status_file") { spec.powerStatusFile = v }
        if var l = try p.mapping("brownout_loop") {
            if let v = try l.integer("resets", in: 2...1000) { spec.loopResets = Int(v) }
            if let v = try l.integer("within_s", in: 1...31_536_000) { spec.loopWithinS = Int(v) }
            try l.rejectUnknown(known: ["resets", "within_s"])
        }
        try p.rejectUnknown(known: ["hold_up_ms", "margin_pct", "resume_after_ms", "gpio", "input_key", "sigpwr", "power_status_file",
                                    "brownout_loop"])
        return spec
    }
}
