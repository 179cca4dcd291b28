// The conditions' priorities and codes, and the LED plan: every state readable on one LED, the
// category on the fault and power LEDs of a three-LED board, and docs/LEDS.md agreeing with both.

import EdgelogRuntime
import Foundation
import Testing

@Suite("Status conditions and the LED plan")
struct StatusPlanTests {
    /// Every set of active conditions (2^7).
    static var allSubsets: [[StatusCondition]] {
        let all = StatusCondition.allCases
        return (0..<(1 << all.count)).map { mask in all.indices.filter { mask & (1 << $0) != 0 }.map { all[$0] } }
    }

    @Test("priorities: F before C before S before M, a fixed order inside each, one code per condition")
    func priorities() {
        let all = StatusCondition.allCases
        #expect(all.map(\.rawValue) == ["storage_fault", "verification_failure", "power_fail_hold", "brownout_loop", "sensor_fault",
                                        "time_not_synchronized", "uplink_backlog"])
        #expect(all.map(\.category.letter) == ["F", "F", "C", "S", "S", "M", "M"])
        #expect(all.map(\.priority) == Array(1...7))
        for (a, b) in zip(all, all.dropFirst()) { #expect(a.category <= b.category && a < b) }
        #expect(all.map(\.blinkCode.description) == ["1-1", "1-2", "2-1", "3-1", "3-2", "4-1", "4-2"])
        #expect(Set(all.map(\.blinkCode)).count == all.count)
        #expect(LEDPlan.codePattern([.timeNotSynchronized, .sensorFault, .powerFailHold]).code == StatusCondition.powerFailHold.blinkCode)
        #expect(LEDPlan.codePattern([.uplinkBacklog, .verificationFailure]).code == StatusCondition.verificationFailure.blinkCode)
    }

    /// How a technician reads one period of a pattern: flashes of 1 s or more are long, 200 to
    /// 600 ms short, under 200 ms a heartbeat flash; the pause is an off time of 2 s or more.
    static func read(_ pattern: LEDPattern) -> String {
        if pattern.steps.isEmpty { return pattern.kind == .steady ? "steady" : "off" }
        var longs = 0, shorts = 0, flashes = 0, pauses = 0
        var sawShort = false
        for step in pattern.steps {
            if step.on {
                if step.ms >= 1000 {
                    if sawShort { return "long after short" }
                    longs += 1
                } else if step.ms >= 200 && step.ms <= 600 {
                    shorts += 1
                    sawShort = true
                } else if step.ms < 200 {
                    flashes += 1
                } else {
                    return "ambiguous flash of \(step.ms) ms"
                }
            } else if step.ms >= 2000 {
                pauses += 1
            }
        }
        if flashes > 0 { return longs == 0 && shorts == 0 && pauses == 0 ? "heartbeat" : "mixed" }
        guard pauses == 1, pattern.steps.last?.on == false, (pattern.steps.last?.ms ?? 0) >= 2000 else { return "no single pause at the end" }
        return "\(longs)-\(shorts)"
    }

    @Test("one LED: every state reads from the code alone, the most urgent condition's code")
    func oneLEDReadable() {
        var seen: [String: String] = [:]
        for active in Self.allSubsets {
            let plan = LEDPlan.patterns(active: active, leds: [StatusLEDSpec(role: .status)])
            let pattern = plan[.status]
            #expect(plan.count == 1)
            let reading = pattern.map(Self.read) ?? "none"
            let expected = active.min().map { $0.blinkCode.description } ?? "heartbeat"
            #expect(reading == expected, "\(active): read \(reading)")
            let state = active.min()?.rawValue ?? "ok"
            if let other = seen[reading] { #expect(other == state, "\(state) and \(other) both read \(reading)") }
            seen[reading] = state
        }
        #expect(seen.count == StatusCondition.allCases.count + 1)
        // A board whose only LED is the fault or the power LED shows the same codes on it.
        for role in [LEDRole.fault, .power] {
            #expect(LEDPlan.patterns(active: [.sensorFault], leds: [StatusLEDSpec(role: role)])[role]?.code?.description == "3-2")
            #expect(LEDPlan.patterns(active: [], leds: [StatusLEDSpec(role: role)])[role]?.kind == .heartbeat)
        }
    }

    @Test("three LEDs: the fault LED shows F steady and S blinking; the power LED shows the power conditions")
    func threeLEDs() {
        let leds = [StatusLEDSpec(role: .status, colour: .green), StatusLEDSpec(role: .fault, colour: .red), StatusLEDSpec(role: .power, colour: .amber)]
        for active in Self.allSubsets {
            let plan = LEDPlan.patterns(active: active, leds: leds)
            let categories = Set(active.map(\.category))
            #expect(plan[.status] == LEDPlan.codePattern(active))
            let fault = plan[.fault]?.kind
            if categories.contains(.failure) { #expect(fault == .steady) }
            else if categories.contains(.outOfSpecification) { #expect(fault == .blink) }
            else { #expect(fault == .off) }
            let power = plan[.power]?.kind
            if active.contains(.powerFailHold) { #expect(power == .steady) }
            else if active.contains(.brownoutLoop) { #expect(power == .blink) }
            else { #expect(power == .off) }
        }
        // Two LEDs without status: the fault LED carries the codes, the power LED its own state.
        let two = LEDPlan.patterns(active: [.powerFailHold], leds: [StatusLEDSpec(role: .fault), StatusLEDSpec(role: .power)])
        #expect(two[.fault]?.code?.description == "2-1" && two[.power]?.kind == .steady)
        #expect(LEDPlan.warnings(leds).isEmpty)
        #expect(LEDPlan.warnings([StatusLEDSpec(role: .status), StatusLEDSpec(role: .fault, colour: .green)]).count == 1)
    }

    @Test("the documented timings: heartbeat 1 s, codes of long 1.2 s and short 0.3 s flashes, a 3 s pause")
    func timings() {
        let t = LEDTimings.standard
        #expect(t.heartbeat == [100, 150, 100, 650] && LEDPattern.heartbeat().periodMs == 1000)
        #expect(t.longOnMs == 1200 && t.shortOnMs == 300 && t.gapMs == 400 && t.groupGapMs == 800 && t.pauseMs == 3000 && t.blinkMs == 500)
        #expect(LEDPattern.code(BlinkCode(long: 1, short: 1)).periodMs == 5300)
        #expect(LEDPattern.code(BlinkCode(long: 4, short: 2)).periodMs == 10_800)
        let code = LEDPattern.code(BlinkCode(long: 2, short: 1))
        #expect(code.steps.map(\.ms) == [1200, 400, 1200, 800, 300, 3000])
        #expect(code.level(atNs: 0).on && !code.level(atNs: 1_300_000_000).on && code.level(atNs: 1_600_000_000).on)
        #expect(code.level(atNs: Int64(code.periodMs) * 1_000_000 + 5_000_000).on, "the pattern repeats")
        #expect(!LEDPattern.heartbeat().kernelAllowed && code.kernelAllowed)
    }

    @Test("docs/LEDS.md lists every condition with its category, code and priority")
    func documented() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/LEDS.md"), encoding: .utf8)
        let rows = text.split(separator: "\n").filter { $0.hasPrefix("|") }
        for condition in StatusCondition.allCases {
            let row = try #require(rows.first { $0.contains("`\(condition.rawValue)`") }, "\(condition.rawValue) has no row")
            let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(cells.contains("\(condition.priority)"), "\(row)")
            #expect(cells.contains { $0.hasPrefix(condition.category.letter + " ") }, "\(row)")
            #expect(row.contains("\(condition.blinkCode.long) long, \(condition.blinkCode.short) short"), "\(row)")
        }
    }
}
