// Sensirion SHT3x-DIS humidity and temperature sensor over I2C (address 0x44 or 0x45).
// Source: Datasheet SHT3x-DIS (version 5, 2018): single shot commands without clock stretching
// (4.3, table 9: 0x2400 high, 0x240B medium, 0x2416 low repeatability), measurement duration
// (2.2, table 4: max 15 / 6 / 4 ms), readout of T word, CRC, RH word, CRC (4.4), CRC-8 polynomial
// 0x31 init 0xFF with the example CRC(0xBEEF) = 0x92 (4.12, table 20), conversion formulas (4.13):
// T = -45 + 175 · S_T / (2^16 - 1) °C, RH = 100 · S_RH / (2^16 - 1) %.

import EdgelogHAL

public final class SHT3x: PolledSensor {
    public enum Repeatability: String, Sendable, CaseIterable {
        case high, medium, low

        /// Single shot, clock stretching disabled (the adapter need not support stretching).
        public var command: UInt16 {
            switch self {
            case .high: 0x2400
            case .medium: 0x240B
            case .low: 0x2416
            }
        }

        /// The datasheet's maximum measurement duration plus 1 ms, in ms.
        public var waitMs: Int {
            switch self {
            case .high: 16
            case .medium: 7
            case .low: 5
            }
        }
    }

    public static let addresses: [UInt8] = [0x44, 0x45]

    public let bus: I2CBus
    public let address: UInt8
    public let repeatability: Repeatability
    private let sleep: SleepMilliseconds

    public var location: String { "\(bus.path) \(address.hex)" }

    /// Settings: `address` 0x44 or 0x45; `repeatability` high, medium or low.
    public init(bus: I2CBus, address: UInt8 = 0x44, repeatability: Repeatability = .high,
                sleep: @escaping SleepMilliseconds = { _ in }) throws(HardwareError) {
        guard Self.addresses.contains(address) else {
            throw invalidSetting(bus.path, address.hex, "SHT3x address must be 0x44 or 0x45")
        }
        self.bus = bus
        self.address = address
        self.repeatability = repeatability
        self.sleep = sleep
    }

    /// The part has no identity register; start reads the status register (command 0xF32D: one
    /// word and its CRC), which checks that a part answering the SHT3x protocol is there.
    public func start() throws(HardwareError) {
        let name = "command 0xF32D"
        let bytes: [UInt8]
        do {
            _ = try bus.transfer(address: address, write: [0xF3, 0x2D], readCount: 0)
            bytes = try bus.transfer(address: address, write: [], readCount: 3)
        } catch {
            throw error.at(address: address.hex, register: name)
        }
        guard bytes.count == 3 else {
            throw HardwareError(.badFrame, device: bus.path, address: address.hex, register: name, detail: "read \(bytes.count) bytes, the status is 3")
        }
        let expected = Self.crc8(bytes[0..<2])
        guard bytes[2] == expected else {
            throw HardwareError(.checksum, device: bus.path, address: address.hex, register: name,
                                detail: "status word has CRC \(bytes[2].hex), computed \(expected.hex)")
        }
    }

    public func read() throws(HardwareError) -> Reading {
        let command = repeatability.command
        let name = "command \(command.hex)"
        do {
            _ = try bus.transfer(address: address, write: [UInt8(command >> 8), UInt8(command & 0xFF)], readCount: 0)
        } catch {
            throw error.at(address: address.hex, register: name)
        }
        sleep(repeatability.waitMs)
        let bytes: [UInt8]
        do {
            bytes = try bus.transfer(address: address, write: [], readCount: 6)
        } catch {
            throw error.at(address: address.hex, register: name)
        }
        return try Self.decode(bytes, device: bus.path, address: address.hex, register: name)
    }

    /// Checks both words' CRC and converts: temperature_c and humidity_pct, each rounded half away
    /// from zero to 0.01 (the datasheet's resolution) from the exact rational value.
    public static func decode(_ bytes: [UInt8], device: String, address: String, register: String) throws(HardwareError) -> Reading {
        guard bytes.count == 6 else {
            throw HardwareError(.badFrame, device: device, address: address, register: register, detail: "read \(bytes.count) bytes, a measurement is 6")
        }
        for (index, word) in ["temperature", "humidity"].enumerated() {
            let at = index * 3
            let expected = crc8(bytes[at..<at + 2])
            guard bytes[at + 2] == expected else {
                throw HardwareError(.checksum, device: device, address: address, register: register,
                                    detail: "\(word) word 0x\(hex(bytes[at]))\(hex(bytes[at + 1])) has CRC \(bytes[at + 2].hex), computed \(expected.hex)")
            }
        }
        let st = Int64(bytes[0]) << 8 | Int64(bytes[1])
        let srh = Int64(bytes[3]) << 8 | Int64(bytes[4])
        return Reading([
            ("temperature_c", .fixed(centiCelsius(st), scale: 2)),
            ("humidity_pct", .fixed(centiPercent(srh), scale: 2)),
        ])
    }

    /// 100 · (-45 + 175 · S / 65535), rounded.
    public static func centiCelsius(_ s: Int64) -> Int64 {
        ExactDecimal.roundedDivision(17500 * s - 4500 * 65535, 65535)
    }

    /// 100 · 100 · S / 65535, rounded.
    public static func centiPercent(_ s: Int64) -> Int64 {
        ExactDecimal.roundedDivision(10000 * s, 65535)
    }

    /// CRC-8: polynomial 0x31, initialization 0xFF, no reflection, no final XOR.
    public static func crc8<C: Collection>(_ data: C) -> UInt8 where C.Element == UInt8 {
        var crc: UInt8 = 0xFF
        for byte in data {
            crc ^= byte
            for _ in 0..<8 {
                crc = crc & 0x80 != 0 ? (crc << 1) ^ 0x31 : crc << 1
            }
        }
        return crc
    }

    private static func hex(_ b: UInt8) -> String { String(b.hex.dropFirst(2)) }
}
