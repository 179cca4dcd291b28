// Key events from /dev/input/eventN (evdev): the power button of an ACPI machine, Raspberry Pi's
// gpio-shutdown overlay, gpio-keys. Found by path or by the device's name in sysfs; event times
// are switched to CLOCK_MONOTONIC so they compare with the writer's clock.

import CLinuxShims
import EdgelogHAL
import Glibc

public final class LinuxInputKey: KeyInput, @unchecked Sendable {
    public let name: String
    public let path: String
    private let fd: Int32

    /// `device` is a /dev/input/eventN path or an input device's name
    /// (/sys/class/input/eventN/device/name, "Power Button" for ACPI).
    public init(device: String, sysRoot: String = "/sys/class/input") throws(HardwareError) {
        let path = device.hasPrefix("/") ? device : try Self.find(named: device, sysRoot: sysRoot)
        self.path = path
        self.name = device
        switch Sys.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) {
        case .success(let f): fd = f
        case .failure(let e): throw .errno(e, device: path, doing: "open input device")
        }
        if edgelog_evdev_monotonic(fd) != 0 {
            let e = Errno(errno)
            Sys.close(fd)
            throw .errno(e, device: path, doing: "set event clock (EVIOCSCLOCKID): not an input event device?")
        }
    }

    deinit { Sys.close(fd) }

    /// The /dev/input/eventN whose device has this name: the first in number order.
    static func find(named wanted: String, sysRoot: String) throws(HardwareError) -> String {
        let events = Sys.listDirectory(sysRoot).filter { $0.hasPrefix("event") }
            .sorted { (Int($0.dropFirst(5)) ?? Int.max) < (Int($1.dropFirst(5)) ?? Int.max) }
        var seen: [String] = []
        for event in events {
            guard let bytes = try? LocalFile.read(sysRoot + "/" + event + "/device/name", limit: 4096).bytes else { continue }
            let name = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: "\n ")
            if name == wanted { return "/dev/input/" + event }
            seen.append(name)
        }
        throw HardwareError(.vanished, device: sysRoot, detail: "no input device named \"\(wanted)\"; present: "
            + (seen.isEmpty ? "none" : seen.prefix(16).map { "\"\($0)\"" }.joined(separator: ", ")))
    }

    public func waitKey(timeoutMs: Int) throws(HardwareError) -> KeyEvent? {
        let deadline = Sys.clock(CLOCK_MONOTONIC) + Int64(max(timeoutMs, 0)) * 1_000_000
        while true {
            var sec: Int64 = 0, usec: Int64 = 0, type: UInt16 = 0, code: UInt16 = 0, value: Int32 = 0
            let r = edgelog_evdev_read(fd, &sec, &usec, &type, &code, &value)
            if r == 1 {
                // EV_KEY only: EV_SYN and the rest are framing.
                guard type == 1 else { continue }
                let ns = sec.multipliedReportingOverflow(by: 1_000_000_000)
                let stamp = ns.overflow ? Int64.max : ns.partialValue &+ min(max(usec, 0), 999_999) &* 1000
                return KeyEvent(code: code, value: value, timestampNs: stamp)
            }
            if r < 0 && errno != EAGAIN && errno != EINTR { throw .errno(Errno(errno), device: path, doing: "read input event") }
            let left = deadline - Sys.clock(CLOCK_MONOTONIC)
            guard left > 0 else { return nil }
            switch Sys.pollReadable(fd, timeoutMs: Int32(clamping: (left + 999_999) / 1_000_000)) {
            case .success: continue
            case .failure(let e): throw .errno(e, device: path, doing: "wait for input event")
            }
        }
    }
}
