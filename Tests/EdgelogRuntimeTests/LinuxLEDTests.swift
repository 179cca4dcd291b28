// LinuxClassLED over an LED class directory made of plain files (the layout of
// /sys/class/leds/NAME): brightness writes, the trigger list, and what is written to hand a code to
// the kernel's pattern trigger; the board's LEDs opened with one that is missing left out.

import EdgelogHAL
import EdgelogLinux
import EdgelogRuntime
import Foundation
import Testing

final class FakeLEDClass {
    let root: String
    init(leds: [String: String]) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-leds-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        for (name, triggers) in leds {
            let dir = root + "/" + name
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for (file, text) in [("max_brightness", "255\n"), ("brightness", "0\n"), ("trigger", triggers), ("pattern", ""), ("repeat", "-1\n")] {
                try text.write(toFile: dir + "/" + file, atomically: false, encoding: .utf8)
            }
        }
    }
    deinit { try? FileManager.default.removeItem(atPath: root) }
    func read(_ led: String, _ file: String) -> String { (try? String(contentsOfFile: root + "/" + led + "/" + file, encoding: .utf8)) ?? "" }
}

@Suite("Linux LED class")
struct LinuxLEDTests {
    @Test("brightness, the trigger list and a pattern handed to the kernel as step changes")
    func patternTrigger() throws {
        let fake = try FakeLEDClass(leds: ["led0": "none [mmc0] timer heartbeat pattern\n", "led1": "none [mmc0] timer\n"])
        let led = try LinuxClassLED(name: "led0", root: fake.root)
        #expect(led.maxBrightness == 255)
        try led.set(brightness: 300)
        #expect(fake.read("led0", "brightness") == "255\n")
        try led.set(brightness: 0)
        #expect(fake.read("led0", "brightness") == "0\n", "a shorter value replaces a longer one whole")
        #expect(led.patternTriggerAvailable())
        #expect(try !LinuxClassLED(name: "led1", root: fake.root).patternTriggerAvailable())

        try led.startPattern([LEDStep(brightness: 255, ms: 1200), LEDStep(brightness: 0, ms: 3000)], repeat: 6)
        #expect(fake.read("led0", "trigger") == "pattern\n")
        #expect(fake.read("led0", "repeat") == "6\n")
        #expect(fake.read("led0", "pattern") == "255 1200 255 0 0 3000 0 0\n")
        try led.renewPattern(repeat: 6)
        try led.stopPattern()
        #expect(fake.read("led0", "trigger") == "none\n")
        #expect(throws: HardwareError.self) { try led.startPattern([], repeat: 1) }
    }

    @Test("the LED driver hands a code to a class LED that offers the trigger, and draws the heartbeat itself")
    func driverOnClassLED() throws {
        let fake = try FakeLEDClass(leds: ["led0": "none pattern\n"])
        let led = try LinuxClassLED(name: "led0", root: fake.root)
        let board = StatusBoard()
        board.set(.timeNotSynchronized, active: true)
        var options = LEDDriver.Options()
        options.stallAfterMs = nil
        let driver = LEDDriver(leds: [.init(spec: StatusLEDSpec(role: .status), led: led)], board: board, options: options, log: { _ in })
        driver.start()
        Thread.sleep(forTimeInterval: 0.3)
        #expect(fake.read("led0", "trigger") == "pattern\n")
        #expect(fake.read("led0", "repeat") == "3\n", "30 s of a 10.1 s code")
        #expect(fake.read("led0", "pattern").hasPrefix("255 1200 255 0 0 400 0 0 255 1200"))
        board.set(.timeNotSynchronized, active: false)
        Thread.sleep(forTimeInterval: 0.3)
        #expect(fake.read("led0", "trigger") == "none\n" && driver.reports.first?.shows == "heartbeat")
        driver.stop()
        #expect(fake.read("led0", "brightness") == "0\n")
    }

    @Test("the board's LEDs: a class LED that does not exist is left out with a reason")
    func openFromBoard() throws {
        let fake = try FakeLEDClass(leds: ["ACT": "none\n"])
        let board = try Board.parse("board: t\nleds:\n  status: {name: ACT}\n  fault: {name: missing}\n", file: "t.yaml")
        let (entries, problems) = StatusLEDs.open(board.leds, colours: [.fault: .red], sysfsRoot: fake.root)
        #expect(entries.map(\.spec.role) == [.status] && entries.first?.led.name == "ACT")
        #expect(problems.count == 1 && problems[0].contains("fault LED missing left out"), "\(problems)")
    }
}
