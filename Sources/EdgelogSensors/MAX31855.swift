// Maxim MAX31855 cold-junction compensated thermocouple-to-digital converter over SPI (read only).
// Source: MAX31855 data sheet 19-5793: memory map (table 2/3): D[31:18] signed 14-bit thermocouple
// temperature, 0.25 °C; D17 reserved (reads 0); D16 fault (1 when SCV, SCG or OC is set); D[15:4]
// signed 12-bit internal (cold-junction) temperature, 0.0625 °C; D3 reserved (reads 0); D2 SCV
// short to VCC; D1 SCG short to GND; D0 OC open circuit. Data formats: tables 4 and 5. SPI mode 0,
// clock up to 5 MHz, 32 bits read MSB first.

import EdgelogHAL

public final class MAX31855: PolledSensor {
    public static let spiConfig = SPIConfig(mode: 0, speedHz: 4_000_000)

    public let device: SPIDevice

    public var location: String { device.path }

    /// No settings: the thermocouple type is fixed by the part number (MAX31855K, J, N, T, S, R, E).
    public init(device: SPIDevice) {
        self.device = device
    }

    public func start() throws(HardwareError) {}

    public func read() throws(HardwareError) -> Reading {
        let rx: [UInt8]
        do {
            rx = try device.transfer([0, 0, 0, 0])
        } catch {
            throw error.at(register: "frame")
        }
        return try Self.decode(rx, device: device.path)
    }

    /// thermocouple_c (scale 2) and cold_junction_c (scale 4). With the fault bit set: quality
    /// "sensor_fault", faults in bit order ("open_circuit", "short_to_gnd", "short_to_vcc"),
    /// thermocouple_c null, cold_junction_c still given. A frame whose reserved bits are set, or whose
    /// fault bit disagrees with the fault flags, is not a MAX31855 frame: `.badFrame`.
    public static func decode(_ rx: [UInt8], device: String) throws(HardwareError) -> Reading {
        guard rx.count == 4 else {
            throw HardwareError(.badFrame, device: device, register: "frame", detail: "read \(rx.count) bytes, a frame is 4")
        }
        let word = UInt32(rx[0]) << 24 | UInt32(rx[1]) << 16 | UInt32(rx[2]) << 8 | UInt32(rx[3])
        let text = "0x" + String(word, radix: 16, uppercase: true)
        guard word & 0x0002_0008 == 0 else {
            throw HardwareError(.badFrame, device: device, register: "frame",
                                detail: "reserved bit D17 or D3 is 1 in \(text)" + (word == 0xFFFF_FFFF ? ": nothing answering (MISO high)" : ""))
        }
        let faultBit = word & 0x0001_0000 != 0
        let flags = word & 0x7
        guard faultBit == (flags != 0) else {
            throw HardwareError(.badFrame, device: device, register: "frame", detail: "fault bit D16 disagrees with the fault flags D2...D0 in \(text)")
        }
        // Arithmetic shifts of the word as signed sign-extend the two fields.
        let thermocouple = Int64(Int32(bitPattern: word) >> 18)
        let junction = Int64(Int32(bitPattern: word << 16) >> 20)
        let coldJunction = Value.fixed(junction * 625, scale: 4)
        guard faultBit else {
            return Reading([("thermocouple_c", .fixed(thermocouple * 25, scale: 2)), ("cold_junction_c", coldJunction)])
        }
        var faults: [String] = []
        if flags & 1 != 0 { faults.append("open_circuit") }
        if flags & 2 != 0 { faults.append("short_to_gnd") }
        if flags & 4 != 0 { faults.append("short_to_vcc") }
        return Reading([("thermocouple_c", .null), ("cold_junction_c", coldJunction)], quality: "sensor_fault", faults: faults)
    }
}
