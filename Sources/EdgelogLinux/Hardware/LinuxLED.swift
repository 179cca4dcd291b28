// An LED of the kernel's LED class: /sys/class/leds/NAME/brightness takes 0...max_brightness.

import EdgelogHAL
import Glibc

public final class LinuxClassLED: LED, @unchecked Sendable {
    public let name: String
    public let maxBrightness: Int
    private let path: String

    public init(name: String, root: String = "/sys/class/leds") throws(HardwareError) {
        self.name = name
        let base = root + "/" + name
        path = base + "/brightness"
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
        let fd: Int32
        switch Sys.open(path, O_WRONLY | O_CLOEXEC) {
        case .success(let f): fd = f
        case .failure(let e): throw .errno(e, device: path, doing: "open")
        }
        defer { Sys.close(fd) }
        var text = String(value) + "\n"
        let result = text.withUTF8 { Sys.write(fd, UnsafeRawBufferPointer($0)) }
        if case .failure(let e) = result { throw .errno(e, device: path, doing: "write brightness") }
    }
}
