// What a device, a bus or a wire can do wrong, as one typed error that names where it happened.
// A technician reads `description` in a log line or a quality record; the runtime counts by `kind`.

public struct HardwareError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        /// The device did not acknowledge its address (nothing there, or it is busy).
        case nack
        /// The bus or device reported an I/O error (EIO, EREMOTEIO other than a NACK).
        case io
        /// No answer in time (ETIMEDOUT, a serial reply that never came).
        case timeout
        /// The device file is gone (ENODEV, ENXIO, ENOENT after open): unplugged or unloaded.
        case vanished
        /// The process may not open or use the device (EACCES, EPERM).
        case permission
        /// Someone else holds it (EBUSY, a serial port locked by another process).
        case busy
        /// A device answered but is not the part the board file names (chip id).
        case wrongChip = "wrong_chip"
        /// A checksum over received bytes did not match (SHT3x CRC-8, Modbus CRC-16, NMEA).
        case checksum
        /// Bytes arrived that do not form a valid frame (truncated, garbage, wrong length or echo).
        case badFrame = "bad_frame"
        /// The slave answered with a Modbus exception response.
        case exception
        /// The sensor reports a fault of its own (MAX31855 open circuit, a stuck conversion).
        case sensorFault = "sensor_fault"
        /// The adapter or driver lacks a needed capability (I2C_FUNCS, a baud rate).
        case unsupported
        /// A setting the caller passed is not valid for this device.
        case invalidArgument = "invalid_argument"
    }

    public var kind: Kind
    /// The errno behind it, when a syscall failed.
    public var errno: Int32?
    /// The device path or name: /dev/i2c-1, /dev/spidev0.0, /dev/ttyS1, gpiochip0.
    public var device: String
    /// Where on that device: "0x76", "slave 3", "line PWR_FAIL".
    public var address: String?
    /// What was being accessed: "register 0xD0", "input register 30001", "command 0x2400".
    public var register: String?
    public var detail: String

    public init(_ kind: Kind, device: String, address: String? = nil, register: String? = nil, errno: Int32? = nil, detail: String) {
        self.kind = kind
        self.errno = errno
        self.device = device
        self.address = address
        self.register = register
        self.detail = detail
    }

    public var description: String {
        var text = "\(kind.rawValue) on \(device)"
        if let address { text += " \(address)" }
        if let register { text += " \(register)" }
        text += ": \(detail)"
        if let errno { text += " (errno \(errno))" }
        return text
    }

    /// The same error with the place filled in where the bus could not know it.
    public func at(address: String? = nil, register: String? = nil) -> HardwareError {
        var copy = self
        if copy.address == nil { copy.address = address }
        if copy.register == nil { copy.register = register }
        return copy
    }
}

extension UInt8 {
    /// "0x76": how addresses and registers are written in datasheets and board files.
    public var hex: String { "0x" + (self < 16 ? "0" : "") + String(self, radix: 16, uppercase: true) }
}

extension UInt16 {
    public var hex: String {
        let digits = String(self, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: Swift.max(0, 4 - digits.count)) + digits
    }
}
