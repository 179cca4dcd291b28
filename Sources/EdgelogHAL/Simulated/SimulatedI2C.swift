import Synchronization

// An I2C bus whose devices are register images (board/sim/*.yaml, or built by a test from datasheet
// values). The real drivers run over it unchanged. Faults are injected per address: a test or a
// board file says "the next N accesses fail with this", or removes the device altogether.

/// A device on the simulated bus: 256 byte registers, and optionally a handler for raw transfers
/// (for command-based parts such as the SHT3x) and writes with side effects.
public final class RegisterDevice: @unchecked Sendable {
    public var registers: [UInt8]
    /// Answers a raw transfer (written bytes, count to read); nil handler: raw transfers NACK.
    public var onTransfer: ((_ write: [UInt8], _ readCount: Int) -> [UInt8]?)?
    /// Called after a register write, to model a device's reaction (start a conversion, reset).
    public var onWrite: ((_ register: UInt8, _ value: UInt8, _ device: RegisterDevice) -> Void)?
    /// Called after an SMBus word write instead of onWrite, for devices whose registers are words.
    public var onWordWrite: ((_ register: UInt8, _ value: UInt16, _ device: RegisterDevice) -> Void)?
    /// Answers a register read of `count` bytes (readByte 1, readWord 2, readBlock n) in place of the
    /// image, to model a read with side effects (a status bit that clears after some polls) or
    /// registers wider than a byte (the ADS1115's 16-bit registers behind a pointer). nil, or a reply
    /// of another length: the image answers.
    public var onRead: ((_ register: UInt8, _ count: Int, _ device: RegisterDevice) -> [UInt8]?)?

    public init(registers: [UInt8: UInt8] = [:]) {
        self.registers = [UInt8](repeating: 0, count: 256)
        for (register, value) in registers { self.registers[Int(register)] = value }
    }

    /// Puts `bytes` at consecutive registers from `start` (wrapping at 0xFF like an auto-increment).
    public func load(_ start: UInt8, _ bytes: [UInt8]) {
        for (i, byte) in bytes.enumerated() { registers[(Int(start) + i) & 0xFF] = byte }
    }
}

public final class SimulatedI2CBus: I2CBus, @unchecked Sendable {
    public let path: String
    private var devices: [UInt8: RegisterDevice] = [:]
    private var faults: [UInt8: [HardwareError.Kind]] = [:]
    private var sticky: [UInt8: HardwareError.Kind] = [:]
    private let lock = SimLock()
    /// Every access, for tests that check what a driver did on the bus.
    public private(set) var accessCount = 0

    public init(path: String = "sim-i2c") { self.path = path }

    public func attach(_ device: RegisterDevice, at address: UInt8) {
        lock.locked { devices[address] = device }
    }

    public func detach(_ address: UInt8) {
        lock.locked { _ = devices.removeValue(forKey: address) }
    }

    public func device(at address: UInt8) -> RegisterDevice? { lock.locked { devices[address] } }

    /// The next `count` accesses to `address` fail with `kind`.
    public func inject(_ kind: HardwareError.Kind, at address: UInt8, count: Int = 1) {
        lock.locked { faults[address, default: []].append(contentsOf: repeatElement(kind, count: count)) }
    }

    /// Every access to `address` fails with `kind` until `clear` (nil clears).
    public func fail(_ address: UInt8, with kind: HardwareError.Kind?) {
        lock.locked { sticky[address] = kind }
    }

    /// `what` names the register for an error; it is built only when there is one.
    private func access(_ address: UInt8, _ what: @autoclosure () -> String) throws(HardwareError) -> RegisterDevice {
        let (device, fault): (RegisterDevice?, HardwareError.Kind?) = lock.locked {
            accessCount += 1
            if let kind = sticky[address] { return (nil, kind) }
            if var queue = faults[address], !queue.isEmpty {
                let kind = queue.removeFirst()
                faults[address] = queue
                return (nil, kind)
            }
            return (devices[address], nil)
        }
        if let fault { throw HardwareError(fault, device: path, address: address.hex, register: what(), detail: "injected fault") }
        guard let device else {
            throw HardwareError(.nack, device: path, address: address.hex, register: what(), detail: "no device acknowledged the address")
        }
        return device
    }

    private func hooked(_ device: RegisterDevice, _ register: UInt8, _ count: Int) -> [UInt8]? {
        guard let hook = device.onRead, let bytes = hook(register, count, device), bytes.count == count else { return nil }
        return bytes
    }

    public func readByte(address: UInt8, register: UInt8) throws(HardwareError) -> UInt8 {
        let device = try access(address, "register \(register.hex)")
        if let bytes = hooked(device, register, 1) { return bytes[0] }
        return lock.locked { device.registers[Int(register)] }
    }

    public func writeByte(address: UInt8, register: UInt8, value: UInt8) throws(HardwareError) {
        let device = try access(address, "register \(register.hex)")
        lock.locked { device.registers[Int(register)] = value }
        device.onWrite?(register, value, device)
    }

    public func readWord(address: UInt8, register: UInt8) throws(HardwareError) -> UInt16 {
        let device = try access(address, "register \(register.hex)")
        if let bytes = hooked(device, register, 2) { return UInt16(bytes[0]) | UInt16(bytes[1]) << 8 }
        return lock.locked {
            UInt16(device.registers[Int(register)]) | UInt16(device.registers[(Int(register) + 1) & 0xFF]) << 8
        }
    }

    public func writeWord(address: UInt8, register: UInt8, value: UInt16) throws(HardwareError) {
        let device = try access(address, "register \(register.hex)")
        lock.locked {
            device.registers[Int(register)] = UInt8(value & 0xFF)
            device.registers[(Int(register) + 1) & 0xFF] = UInt8(value >> 8)
        }
        if let hook = device.onWordWrite { hook(register, value, device) } else { device.onWrite?(register, UInt8(value & 0xFF), device) }
    }

    public func readBlock(address: UInt8, register: UInt8, count: Int) throws(HardwareError) -> [UInt8] {
        guard (1...32).contains(count) else {
            throw HardwareError(.invalidArgument, device: path, address: address.hex, register: "register \(register.hex)", detail: "SMBus block of \(count) bytes (1...32)")
        }
        let device = try access(address, "register \(register.hex)")
        if let bytes = hooked(device, register, count) { return bytes }
        return lock.locked { (0..<count).map { device.registers[(Int(register) + $0) & 0xFF] } }
    }

    public func transfer(address: UInt8, write: [UInt8], readCount: Int) throws(HardwareError) -> [UInt8] {
        let what = write.count >= 2 ? "command \((UInt16(write[0]) << 8 | UInt16(write[1])).hex)" : "raw transfer"
        let device = try access(address, what)
        guard let handler = device.onTransfer, let reply = handler(write, readCount), reply.count == readCount else {
            throw HardwareError(.nack, device: path, address: address.hex, register: what, detail: "the device did not acknowledge the transfer")
        }
        return reply
    }
}

/// A small mutex for the simulated parts (tests drive them from other threads).
final class SimLock: @unchecked Sendable {
    private let mutex = Mutex<Void>(())
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        try mutex.withLock { _ in try body() }
    }
}
