// GPIO lines through libgpiod 1.6 (the character device; never the deprecated /sys/class/gpio).
// A chip is named as its name (gpiochip0), path or label, a line by its name from the board
// file (PWR_FAIL, LED_STATUS). Inputs are requested for both edges and hand out the kernel's
// timestamp of each edge; outputs start at a given level.

import CGPIOD
import EdgelogHAL
import Glibc

public final class LinuxGPIOLine: @unchecked Sendable {
    public let name: String
    public let chipName: String
    private let chip: OpaquePointer
    private let line: OpaquePointer
    private var requested = false

    /// Finds line `name` on chip `chip` (name, path, label or number).
    public init(chip chipName: String, line name: String) throws(HardwareError) {
        self.name = name
        self.chipName = chipName
        guard let chip = gpiod_chip_open_lookup(chipName) else {
            throw .errno(Errno(errno), device: chipName, address: "line \(name)", doing: "open GPIO chip")
        }
        guard let line = gpiod_chip_find_line(chip, name) else {
            let e = errno
            gpiod_chip_close(chip)
            if e == ENOENT || e == 0 {
                throw HardwareError(.invalidArgument, device: chipName, address: "line \(name)", detail: "the chip has no line of this name")
            }
            throw .errno(Errno(e), device: chipName, address: "line \(name)", doing: "find GPIO line")
        }
        self.chip = chip
        self.line = line
    }

    deinit {
        if requested { gpiod_line_release(line) }
        gpiod_chip_close(chip)
    }

    func fail(_ doing: String) -> HardwareError { .errno(Errno(errno), device: chipName, address: "line \(name)", doing: doing) }

    func requestInput(consumer: String) throws(HardwareError) {
        guard gpiod_line_request_both_edges_events(line, consumer) == 0 else { throw fail("request both edges") }
        requested = true
    }

    func requestOutput(consumer: String, initial: Bool) throws(HardwareError) {
        guard gpiod_line_request_output(line, consumer, initial ? 1 : 0) == 0 else { throw fail("request output") }
        requested = true
    }

    func get() throws(HardwareError) -> Bool {
        let v = gpiod_line_get_value(line)
        guard v >= 0 else { throw fail("read value") }
        return v == 1
    }

    func set(_ value: Bool) throws(HardwareError) {
        guard gpiod_line_set_value(line, value ? 1 : 0) == 0 else { throw fail("set value") }
    }

    func waitEdge(timeoutMs: Int) throws(HardwareError) -> GPIOEdge? {
        var timeout = timespec(tv_sec: timeoutMs / 1000, tv_nsec: (timeoutMs % 1000) * 1_000_000)
        while true {
            let r = gpiod_line_event_wait(line, &timeout)
            if r == 0 { return nil }
            if r < 0 {
                if errno == EINTR { continue }
                throw fail("wait for edge")
            }
            var event = gpiod_line_event()
            guard gpiod_line_event_read(line, &event) == 0 else { throw fail("read edge") }
            let ns = UInt64(max(0, event.ts.tv_sec)) &* 1_000_000_000 &+ UInt64(max(0, event.ts.tv_nsec))
            return GPIOEdge(rising: event.event_type == Int32(GPIOD_LINE_EVENT_RISING_EDGE), timestampNs: ns)
        }
    }
}

public final class LinuxGPIOInput: GPIOInput, @unchecked Sendable {
    private let line: LinuxGPIOLine
    public var name: String { line.name }

    public init(chip: String, line name: String, consumer: String = "edgelog") throws(HardwareError) {
        line = try LinuxGPIOLine(chip: chip, line: name)
        try line.requestInput(consumer: consumer)
    }

    public func value() throws(HardwareError) -> Bool { try line.get() }
    public func waitEdge(timeoutMs: Int) throws(HardwareError) -> GPIOEdge? { try line.waitEdge(timeoutMs: timeoutMs) }
}

public final class LinuxGPIOOutput: GPIOOutput, @unchecked Sendable {
    private let line: LinuxGPIOLine
    public var name: String { line.name }

    public init(chip: String, line name: String, initial: Bool = false, consumer: String = "edgelog") throws(HardwareError) {
        line = try LinuxGPIOLine(chip: chip, line: name)
        try line.requestOutput(consumer: consumer, initial: initial)
    }

    public func set(_ value: Bool) throws(HardwareError) { try line.set(value) }
}

/// An LED wired to a GPIO output: on at any brightness above zero.
public final class GPIOLED: LED, @unchecked Sendable {
    private let output: GPIOOutput
    public var name: String { output.name }
    public let maxBrightness = 1
    public init(_ output: GPIOOutput) { self.output = output }
    public func set(brightness: Int) throws(HardwareError) { try output.set(brightness > 0) }
}
