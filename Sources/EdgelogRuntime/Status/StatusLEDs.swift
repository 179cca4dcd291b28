// The board's `leds:` section as LED objects: LED-class LEDs through /sys/class/leds, GPIO LEDs as
// output lines requested low. An LED that cannot be opened is left out with a message: the job
// runs without it (the plan draws the others; docs/LEDS.md says which LED shows what then).

import EdgelogHAL
import EdgelogLinux

public enum StatusLEDs {
    /// Opens the LEDs `specs` name. `colours` gives a colour per role where the board says it.
    public static func open(_ specs: [Board.LEDSpec], colours: [LEDRole: LEDColour] = [:], sysfsRoot: String = "/sys/class/leds")
        -> (entries: [LEDDriver.Entry], problems: [String]) {
        var entries: [LEDDriver.Entry] = []
        var problems: [String] = []
        for spec in specs {
            guard let role = LEDRole(rawValue: spec.role) else {
                problems.append("LED role \(spec.role) is not one of status, fault, power: left out")
                continue
            }
            do throws(HardwareError) {
                let led: LED
                if spec.kind == "gpio" {
                    led = GPIOLED(try LinuxGPIOOutput(chip: spec.chip ?? "", line: spec.name, initial: false, consumer: "edgelog-led"))
                } else {
                    led = try LinuxClassLED(name: spec.name, root: sysfsRoot)
                }
                entries.append(LEDDriver.Entry(spec: StatusLEDSpec(role: role, colour: colours[role]), led: led))
            } catch {
                problems.append("\(role.rawValue) LED \(spec.name) left out: \(error)")
            }
        }
        return (entries, problems)
    }
}
