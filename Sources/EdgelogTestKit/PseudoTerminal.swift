// A serial line for tests: a pseudo-terminal whose slave path is opened as the port under test
// (LinuxSerialPort, with its termios, TIOCEXCL and flock) while the test plays the instrument or the
// Modbus slave on the master end.

import CLinuxShims
import Glibc

public final class PseudoTerminal {
    public let master: Int32
    public let path: String

    public init() throws {
        var name = [CChar](repeating: 0, count: 128)
        let fd = edgelog_open_pty(&name, Int32(name.count))
        guard fd >= 0 else { throw PseudoTerminalError(errno: errno) }
        master = fd
        path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { close(master) }

    /// Sends bytes as the far end.
    public func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
    }

    /// What the port wrote, waiting at most `timeoutMs` for the first byte.
    public func receive(max: Int = 256, timeoutMs: Int32 = 500) -> [UInt8] {
        var entry = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, timeoutMs) > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: max)
        let n = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress, max) }
        return n > 0 ? Array(buffer.prefix(n)) : []
    }
}

public struct PseudoTerminalError: Error {
    public let errno: Int32
}
