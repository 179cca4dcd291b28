// Texas Instruments ADS1115 16-bit ADC over I2C (address 0x48...0x4B by the ADDR pin).
// Source: ADS111x data sheet SBAS444: register pointer (8.6.1: 0x00 conversion, 0x01 config), config
// register bits (8.6.3, table 8: OS[15], MUX[14:12], PGA[11:9], MODE[8], DR[7:5], COMP_*[4:0],
// reset value 0x8583), full-scale range and LSB size (8.3.3, table 3), ideal output codes (8.3.4,
// table 4: 0x7FFF = +FS·(2^15-1)/2^15, 0x0001 = +FS/2^15, 0xFFFF = -FS/2^15, 0x8000 = -FS; the output
// clips at these codes), single-shot mode (8.4.2: write OS=1, OS reads 0 while converting).
// Registers are 16 bits, most significant byte first; an SMBus word is least significant byte
// first, so every word is byte-swapped.

import EdgelogHAL

public final class ADS1115: PolledSensor {
    /// MUX[14:12]: the input pair measured.
    public enum Input: String, Sendable, CaseIterable {
        case ain0Ain1 = "ain0-ain1", ain0Ain3 = "ain0-ain3", ain1Ain3 = "ain1-ain3", ain2Ain3 = "ain2-ain3"
        case ain0 = "ain0", ain1 = "ain1", ain2 = "ain2", ain3 = "ain3"

        public var mux: UInt16 {
            switch self {
            case .ain0Ain1: 0
            case .ain0Ain3: 1
            case .ain1Ain3: 2
            case .ain2Ain3: 3
            case .ain0: 4
            case .ain1: 5
            case .ain2: 6
            case .ain3: 7
            }
        }
    }

    /// PGA[11:9] by full-scale range in millivolts.
    static let fullScales: [(millivolts: Int64, pga: UInt16)] = [
        (6144, 0), (4096, 1), (2048, 2), (1024, 3), (512, 4), (256, 5),
    ]
    /// DR[7:5] by samples per second.
    static let rates: [(sps: Int, code: UInt16)] = [
        (8, 0), (16, 1), (32, 2), (64, 3), (128, 4), (250, 5), (475, 6), (860, 7),
    ]
    public static let addresses: [UInt8] = [0x48, 0x49, 0x4A, 0x4B]

    public let bus: I2CBus
    public let address: UInt8
    public let input: Input
    public let fullScaleMillivolts: Int64
    public let rate: Int
    private let sleep: SleepMilliseconds
    /// One code step in volts, as an exact decimal.
    let step: (mantissa: Int64, scale: Int)

    public var location: String { "\(bus.path) \(address.hex)" }

    /// Settings: `address` 0x48...0x4B; `input` ain0, ain1, ain2, ain3 (single-ended, against GND) or
    /// ain0-ain1, ain0-ain3, ain1-ain3, ain2-ain3 (differential); `full_scale_v` (the PGA) 6.144, 4.096,
    /// 2.048, 1.024, 0.512, 0.256; `rate` 8, 16, 32, 64, 128, 250, 475, 860 samples per second.
    public init(bus: I2CBus, address: UInt8 = 0x48, input: Input = .ain0, fullScaleVolts: Double = 2.048, rate: Int = 128,
                sleep: @escaping SleepMilliseconds = { _ in }) throws(HardwareError) {
        guard Self.addresses.contains(address) else {
            throw invalidSetting(bus.path, address.hex, "ADS1115 address must be 0x48, 0x49, 0x4A or 0x4B")
        }
        let millivolts = fullScaleVolts.isFinite ? (fullScaleVolts * 1000).rounded() : -1
        guard abs(fullScaleVolts * 1000 - millivolts) < 1e-6, let fs = Self.fullScales.first(where: { Double($0.millivolts) == millivolts }) else {
            throw invalidSetting(bus.path, address.hex, "full_scale_v \(fullScaleVolts): must be 6.144, 4.096, 2.048, 1.024, 0.512 or 0.256")
        }
        guard Self.rates.contains(where: { $0.sps == rate }) else {
            throw invalidSetting(bus.path, address.hex, "rate \(rate): must be 8, 16, 32, 64, 128, 250, 475 or 860 samples per second")
        }
        guard let step = ExactDecimal.step(microvolts: fs.millivolts * 1000, shift: 15) else {
            throw invalidSetting(bus.path, address.hex, "full_scale_v \(fullScaleVolts) has no exact step")
        }
        self.bus = bus
        self.address = address
        self.input = input
        self.fullScaleMillivolts = fs.millivolts
        self.rate = rate
        self.sleep = sleep
        self.step = step
    }

    /// The config word (chip order, MSB first) for a conversion: OS, MUX, PGA, MODE (1 single-shot),
    /// DR, and the comparator at its reset state (traditional, active low, not latching, disabled: 0b00011).
    public static func configWord(start: Bool, input: Input, fullScaleMillivolts: Int64, rate: Int, singleShot: Bool = true) -> UInt16? {
        guard let pga = fullScales.first(where: { $0.millivolts == fullScaleMillivolts })?.pga,
              let dr = rates.first(where: { $0.sps == rate })?.code else { return nil }
        return (start ? 0x8000 : 0) | input.mux << 12 | pga << 9 | (singleShot ? 0x0100 : 0) | dr << 5 | 0x0003
    }

    var config: UInt16 {
        Self.configWord(start: false, input: input, fullScaleMillivolts: fullScaleMillivolts, rate: rate) ?? 0x0583
    }

    /// Conversion time bound in ms: 1/DR with the oscillator's ±10 % tolerance, plus 1 ms.
    public var conversionBudgetMs: Int { (1100 + rate - 1) / rate + 1 }

    private func readRegister(_ pointer: UInt8) throws(HardwareError) -> UInt16 {
        do {
            return try bus.readWord(address: address, register: pointer).byteSwapped
        } catch {
            throw error.at(address: address.hex, register: "register \(pointer.hex)")
        }
    }

    private func writeRegister(_ pointer: UInt8, _ value: UInt16) throws(HardwareError) {
        do {
            try bus.writeWord(address: address, register: pointer, value: value.byteSwapped)
        } catch {
            throw error.at(address: address.hex, register: "register \(pointer.hex)")
        }
    }

    /// Writes the configuration without starting a conversion and reads it back: the part has no
    /// identity register, so a config that does not read back is the sign of another part.
    public func start() throws(HardwareError) {
        try writeRegister(0x01, config)
        let back = try readRegister(0x01)
        guard back & 0x7FFF == config & 0x7FFF else {
            throw HardwareError(.wrongChip, device: bus.path, address: address.hex, register: "register 0x01",
                                detail: "config reads back \(back.hex) after writing \(config.hex): not an ADS1115")
        }
    }

    public func read() throws(HardwareError) -> Reading {
        try writeRegister(0x01, config | 0x8000)
        let nominal = (1000 + rate - 1) / rate
        sleep(nominal)
        var waited = nominal
        var ready = false
        var back: UInt16 = 0
        while true {
            back = try readRegister(0x01)
            if back & 0x8000 != 0 {
                ready = true
                break
            }
            if waited >= conversionBudgetMs { break }
            sleep(1)
            waited += 1
        }
        guard ready else {
            throw HardwareError(.timeout, device: bus.path, address: address.hex, register: "register 0x01",
                                detail: "conversion not done (OS still 0) after \(waited) ms at \(rate) SPS")
        }
        guard back & 0x7FFF == config & 0x7FFF else {
            throw HardwareError(.sensorFault, device: bus.path, address: address.hex, register: "register 0x01",
                                detail: "config reads \(back.hex) during the conversion, \(config.hex) written: reset or another master")
        }
        let code = Int16(bitPattern: try readRegister(0x00))
        return reading(code: code)
    }

    /// volts (code × FSR / 32768, exact) and raw (the signed code); quality "saturated" at the
    /// clipping codes 0x7FFF and 0x8000.
    public func reading(code: Int16) -> Reading {
        Reading([("volts", .fixed(Int64(code) * step.mantissa, scale: step.scale)), ("raw", .int(Int64(code)))],
                quality: code == .max || code == .min ? "saturated" : nil)
    }
}
