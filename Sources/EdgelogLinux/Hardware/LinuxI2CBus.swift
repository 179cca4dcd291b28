// An I2C adapter through the kernel's i2c-dev (/dev/i2c-N): SMBus transfers by libi2c and raw
// combined messages by I2C_RDWR. The adapter is opened for each transaction, not held: a held file
// keeps the adapter's module loaded and a vanished USB adapter's number taken, so a device that
// goes away and comes back (rmmod and modprobe, a re-plugged adapter) is found again by the next
// poll. The adapter can be named by its path or by its name in /sys/class/i2c-adapter.

import CI2C
import CLinuxShims
import EdgelogHAL
import Glibc

public final class LinuxI2CBus: I2CBus, @unchecked Sendable {
    public enum Adapter: Equatable, Sendable {
        case path(String)
        /// The adapter whose /sys/class/i2c-adapter/i2c-N/name is this ("SMBus stub driver").
        case name(String)
    }

    public let adapter: Adapter
    /// What records and errors call the bus: the /dev path, or the adapter's name. Constant: the
    /// status thread reads it while the bus thread polls.
    public let path: String
    /// The /dev node an adapter given by name was found at; looked up again after it vanished.
    /// Used by the bus's owner thread only.
    private var node: String?
    private var checkedFuncs: UInt?

    public init(_ adapter: Adapter) {
        self.adapter = adapter
        switch adapter {
        case .path(let p):
            path = p
            node = p
        case .name(let n): path = "i2c adapter \"\(n)\""
        }
    }

    /// The /dev path of the adapter named `name`, if one is there now.
    public static func resolve(name: String) -> String? {
        for n in 0..<256 {
            let base = "/sys/class/i2c-adapter/i2c-\(n)"
            guard Sys.exists(base) else { continue }
            // sysfs files say 4096 bytes whatever they hold.
            guard let text = try? LocalFile.read(base + "/name", limit: 4096).bytes else { continue }
            if String(decoding: text, as: UTF8.self).trimmingCharacters(in: "\n ") == name { return "/dev/i2c-\(n)" }
        }
        return nil
    }

    /// `what` names the register for an error; it is built only when there is one.
    private func open(_ address: UInt8, _ what: @autoclosure () -> String) throws(HardwareError) -> Int32 {
        if node == nil, case .name(let name) = adapter {
            guard let found = LinuxI2CBus.resolve(name: name) else {
                throw HardwareError(.vanished, device: path, address: address.hex, register: what(), detail: "no I2C adapter named \"\(name)\" in /sys/class/i2c-adapter")
            }
            node = found
            // A re-plugged adapter may be another one: its functions are asked again.
            checkedFuncs = nil
        }
        let device = node ?? path
        let fd: Int32
        switch Sys.open(device, O_RDWR | O_CLOEXEC) {
        case .success(let f): fd = f
        case .failure(let e):
            if case .name = adapter { node = nil }
            throw .errno(e, device: path, address: address.hex, register: what(), doing: "open \(device)")
        }
        if checkedFuncs == nil {
            switch Sys.i2cFuncs(fd) {
            case .success(let funcs): checkedFuncs = funcs
            case .failure(let e):
                Sys.close(fd)
                throw .errno(e, device: path, doing: "I2C_FUNCS")
            }
        }
        if case .failure(let e) = Sys.i2cSetAddress(fd, address) {
            Sys.close(fd)
            throw .errno(e, device: path, address: address.hex, register: what(), doing: "I2C_SLAVE")
        }
        return fd
    }

    private func require(_ bit: UInt, _ name: String, _ address: UInt8, _ what: @autoclosure () -> String) throws(HardwareError) {
        if let funcs = checkedFuncs, funcs & bit == 0 {
            throw HardwareError(.unsupported, device: path, address: address.hex, register: what(), detail: "the adapter does not support \(name) (I2C_FUNCS)")
        }
    }

    private func smbus(_ address: UInt8, register: UInt8, func bit: UInt, _ name: String, _ body: (Int32) -> Int32) throws(HardwareError) -> Int32 {
        let fd = try open(address, "register \(register.hex)")
        defer { Sys.close(fd) }
        try require(bit, name, address, "register \(register.hex)")
        switch Sys.smbus({ body(fd) }) {
        case .success(let value): return value
        case .failure(let e): throw .errno(e, device: path, address: address.hex, register: "register \(register.hex)", doing: name)
        }
    }

    public func readByte(address: UInt8, register: UInt8) throws(HardwareError) -> UInt8 {
        UInt8(truncatingIfNeeded: try smbus(address, register: register, func: edgelog_i2c_func_smbus_byte_data(), "SMBus read byte") {
            i2c_smbus_read_byte_data($0, register)
        })
    }

    public func writeByte(address: UInt8, register: UInt8, value: UInt8) throws(HardwareError) {
        _ = try smbus(address, register: register, func: edgelog_i2c_func_smbus_byte_data(), "SMBus write byte") {
            i2c_smbus_write_byte_data($0, register, value)
        }
    }

    public func readWord(address: UInt8, register: UInt8) throws(HardwareError) -> UInt16 {
        UInt16(truncatingIfNeeded: try smbus(address, register: register, func: edgelog_i2c_func_smbus_word_data(), "SMBus read word") {
            i2c_smbus_read_word_data($0, register)
        })
    }

    public func writeWord(address: UInt8, register: UInt8, value: UInt16) throws(HardwareError) {
        _ = try smbus(address, register: register, func: edgelog_i2c_func_smbus_word_data(), "SMBus write word") {
            i2c_smbus_write_word_data($0, register, value)
        }
    }

    public func readBlock(address: UInt8, register: UInt8, count: Int) throws(HardwareError) -> [UInt8] {
        guard (1...32).contains(count) else {
            throw HardwareError(.invalidArgument, device: path, address: address.hex, register: "register \(register.hex)", detail: "SMBus block of \(count) bytes (1...32)")
        }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = try smbus(address, register: register, func: edgelog_i2c_func_smbus_i2c_block(), "SMBus read I2C block") { fd in
            buffer.withUnsafeMutableBufferPointer { i2c_smbus_read_i2c_block_data(fd, register, UInt8(count), $0.baseAddress) }
        }
        guard Int(n) == count else {
            throw HardwareError(.badFrame, device: path, address: address.hex, register: "register \(register.hex)", detail: "block read returned \(n) of \(count) bytes")
        }
        return Array(buffer.prefix(count))
    }

    public func transfer(address: UInt8, write: [UInt8], readCount: Int) throws(HardwareError) -> [UInt8] {
        let what = write.count >= 2 ? "command \((UInt16(write[0]) << 8 | UInt16(write[1])).hex)" : "raw transfer"
        guard write.count <= 4096, (0...4096).contains(readCount) else {
            throw HardwareError(.invalidArgument, device: path, address: address.hex, register: what, detail: "transfer of \(write.count)+\(readCount) bytes")
        }
        let fd = try open(address, what)
        defer { Sys.close(fd) }
        try require(edgelog_i2c_func_i2c(), "plain I2C messages (I2C_RDWR)", address, what)
        var read = [UInt8](repeating: 0, count: readCount)
        if case .failure(let e) = Sys.i2cTransfer(fd, address, write, &read) {
            throw .errno(e, device: path, address: address.hex, register: what, doing: "I2C_RDWR")
        }
        return read
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let drop = Set(set)
        return String(self.drop { drop.contains($0) }.reversed().drop { drop.contains($0) }.reversed())
    }
}
