// An LED of the kernel's LED class: /sys/class/leds/NAME/brightness takes 0...max_brightness.
// When the kernel has the pattern trigger (ledtrig-pattern, Linux 4.20+), a repeating pattern can
// be handed to it: `pattern` into `trigger`, the cycle count into `repeat`, then
// "brightness duration" pairs into `pattern` (docs/LEDS.md says when edgelog does this).

import EdgelogHAL
import Glibc

public final class LinuxClassLED: PatternTriggerLED, @unchecked Sendable {
    public let name: String
    public let maxBrightness: Int
    /// /sys/class/leds/NAME.
    public let directory: String

    public init(name: String, root: String = "/sys/class/leds") throws(HardwareError) {
        self.name = name
        let base = root + "/" + name
        directory = base
        let text: [UInt8]
        do { text = try LocalFile.read(base + "/max_brightness", limit: 4096).bytes } catch {
            throw HardwareError(.vanished, device: base, detail: "no LED of this name: \(error)")
        }
        let digits = String(decoding: text, as: UTF8.self).trimmingCharacters(in: "\n ")
        guard let max = Int(digits), max > 0, max <= 1 << 20 else {
            throw HardwareError(.badFrame, device: base + "/max_brightness", detail: "not a brightness: \"\(digits.prefix(16))\"")
        }
        maxBrightness = max
    }

    public func set(brightness: Int) throws(HardwareError) {
        let value = min(max(brightness, 0), maxBrightness)
        try write("brightness", String(value) + "\n", doing: "write brightness")
    }

    /// Writes one sysfs attribute of the LED in one write(2), as the kernel expects.
    private func write(_ attribute: String, _ text: String, doing: String) throws(HardwareError) {
        let path = directory + "/" + attribute
        var text = text
        guard text.utf8.count < 4096 else {
            throw HardwareError(.invalidArgument, device: path, detail: "\(doing): \(text.utf8.count) bytes, more than a sysfs attribute takes")
        }
        let fd: Int32
        switch Sys.open(path, O_WRONLY | O_TRUNC | O_CLOEXEC) {
        case .success(let f): fd = f
        case .failure(let e): throw .errno(e, device: path, doing: "open")
        }
        defer { Sys.close(fd) }
        let result = text.withUTF8 { Sys.write(fd, UnsafeRawBufferPointer($0)) }
        if case .failure(let e) = result { throw .errno(e, device: path, doing: doing) }
    }

    /// The triggers the kernel offers for this LED (`trigger` lists them, the active one in brackets).
    public func triggers() -> [String] {
        guard let text = try? LocalFile.read(directory + "/trigger", limit: 1 << 16).bytes else { return [] }
        return String(decoding: text, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map {
            String($0.filter { $0 != "[" && $0 != "]" })
        }
    }

    public func patternTriggerAvailable() -> Bool { triggers().contains("pattern") }

    /// Steps as the pattern trigger reads them: each brightness with its duration, then the same
    /// brightness with duration 0, which makes every change a step instead of a ramp.
    static func patternText(_ steps: [LEDStep], maxBrightness: Int) -> String {
        steps.map { step in
            let b = min(max(step.brightness, 0), maxBrightness)
            return "\(b) \(max(step.ms, 0)) \(b) 0"
        }.joined(separator: " ") + "\n"
    }

    public func startPattern(_ steps: [LEDStep], repeat count: Int) throws(HardwareError) {
        // ledtrig-pattern keeps at most 1024 tuples; each step is two.
        guard !steps.isEmpty, steps.count <= 512, steps.allSatisfy({ $0.ms >= 0 && $0.ms <= 3_600_000 }) else {
            throw HardwareError(.invalidArgument, device: directory, detail: "pattern of \(steps.count) steps is not one the kernel takes")
        }
        do {
            try write("trigger", "pattern\n", doing: "select the pattern trigger")
            // repeat first: writing pattern starts it with the repeat count already set.
            try write("repeat", String(max(1, count)) + "\n", doing: "write pattern repeat")
            try write("pattern", Self.patternText(steps, maxBrightness: maxBrightness), doing: "write pattern")
        } catch {
            try? stopPattern()
            throw error
        }
    }

    public func renewPattern(repeat count: Int) throws(HardwareError) {
        // Writing repeat restarts the pattern from its first step with the new count.
        try write("repeat", String(max(1, count)) + "\n", doing: "write pattern repeat")
    }

    public func stopPattern() throws(HardwareError) {
        try write("trigger", "none\n", doing: "select no trigger")
    }
}
