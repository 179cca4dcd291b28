// Bosch BME280 humidity, pressure and temperature sensor over I2C (address 0x76 or 0x77).
// Source: BME280 data sheet BST-BME280-DS002 rev. 1.6: memory map (5.3-5.4), trimming parameter
// readout (4.2.2, table 16: dig_H4/dig_H5 are 12-bit signed packed around 0xE5), compensation
// formulas (4.2.3: 32-bit temperature and humidity, 64-bit pressure), measurement time (appendix
// 9.1), forced and normal mode (3.3). The temperature/pressure formulas are the BMP280's, whose data
// sheet (BST-BMP280-DS001, 3.12) gives the worked example used in the tests.

import EdgelogHAL

public final class BME280: PolledSensor {
    public enum Mode: String, Sendable, CaseIterable {
        /// One measurement per read: ctrl_meas mode 01, wait, poll the measuring bit.
        case forced
        /// The part measures continuously (t_standby apart); a read takes the latest result.
        case normal
    }

    public static let chipID: UInt8 = 0x60
    public static let addresses: [UInt8] = [0x76, 0x77]
    /// Oversampling factors and their register code (0: measurement skipped).
    static let oversamplingCodes: [Int: UInt8] = [0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5]
    static let filterCodes: [Int: UInt8] = [0: 0, 2: 1, 4: 2, 8: 3, 16: 4]
    /// t_standby in normal mode, ms, and its config code (table 27).
    static let standbyCodes: [(ms: Double, code: UInt8)] = [
        (0.5, 0), (62.5, 1), (125, 2), (250, 3), (500, 4), (1000, 5), (10, 6), (20, 7),
    ]

    enum Register {
        static let calibration1: UInt8 = 0x88  // 0x88...0xA1, 26 bytes (dig_T1...dig_P9, 0xA0 unused, dig_H1)
        static let chipID: UInt8 = 0xD0
        static let reset: UInt8 = 0xE0
        static let calibration2: UInt8 = 0xE1  // 0xE1...0xE7, 7 bytes (dig_H2...dig_H6)
        static let ctrlHum: UInt8 = 0xF2
        static let status: UInt8 = 0xF3
        static let ctrlMeas: UInt8 = 0xF4
        static let config: UInt8 = 0xF5
        static let data: UInt8 = 0xF7  // 0xF7...0xFE: press msb/lsb/xlsb, temp msb/lsb/xlsb, hum msb/lsb
    }

    public let bus: I2CBus
    public let address: UInt8
    public let mode: Mode
    public let temperatureOversampling: Int
    public let pressureOversampling: Int
    public let humidityOversampling: Int
    public let filter: Int
    public let standbyMs: Double
    public let softReset: Bool
    public let statusPolls: Int
    private let sleep: SleepMilliseconds
    public private(set) var calibration: BME280Calibration?

    public var location: String { "\(bus.path) \(address.hex)" }

    /// Settings (board file names in docs/SENSORS.md): `address` 0x76 or 0x77; `mode` forced or
    /// normal; `oversampling_t` 1, 2, 4, 8, 16 (temperature is needed by the other two);
    /// `oversampling_p` and `oversampling_h` 0 (skipped, field left out), 1, 2, 4, 8, 16; `filter`
    /// IIR coefficient 0 (off), 2, 4, 8, 16; `standby_ms` (normal mode) 0.5, 10, 20, 62.5, 125, 250,
    /// 500, 1000; `soft_reset` before configuring; `status_polls` 1...1000: how many times, 1 ms apart,
    /// the measuring bit is polled after the datasheet's maximum measurement time.
    public init(bus: I2CBus, address: UInt8 = 0x76, mode: Mode = .forced,
                temperatureOversampling: Int = 1, pressureOversampling: Int = 1, humidityOversampling: Int = 1,
                filter: Int = 0, standbyMs: Double = 1000, softReset: Bool = true, statusPolls: Int = 20,
                sleep: @escaping SleepMilliseconds = { _ in }) throws(HardwareError) {
        let place = address.hex
        guard Self.addresses.contains(address) else {
            throw invalidSetting(bus.path, place, "BME280 address must be 0x76 or 0x77")
        }
        guard temperatureOversampling != 0, Self.oversamplingCodes[temperatureOversampling] != nil else {
            throw invalidSetting(bus.path, place, "oversampling_t \(temperatureOversampling): must be 1, 2, 4, 8 or 16 (pressure and humidity need the temperature)")
        }
        guard Self.oversamplingCodes[pressureOversampling] != nil else {
            throw invalidSetting(bus.path, place, "oversampling_p \(pressureOversampling): must be 0 (skip), 1, 2, 4, 8 or 16")
        }
        guard Self.oversamplingCodes[humidityOversampling] != nil else {
            throw invalidSetting(bus.path, place, "oversampling_h \(humidityOversampling): must be 0 (skip), 1, 2, 4, 8 or 16")
        }
        guard Self.filterCodes[filter] != nil else {
            throw invalidSetting(bus.path, place, "filter \(filter): must be 0 (off), 2, 4, 8 or 16")
        }
        guard Self.standbyCodes.contains(where: { $0.ms == standbyMs }) else {
            throw invalidSetting(bus.path, place, "standby_ms \(standbyMs): must be 0.5, 10, 20, 62.5, 125, 250, 500 or 1000")
        }
        guard (1...1000).contains(statusPolls) else {
            throw invalidSetting(bus.path, place, "status_polls \(statusPolls): must be 1...1000")
        }
        self.bus = bus
        self.address = address
        self.mode = mode
        self.temperatureOversampling = temperatureOversampling
        self.pressureOversampling = pressureOversampling
        self.humidityOversampling = humidityOversampling
        self.filter = filter
        self.standbyMs = standbyMs
        self.softReset = softReset
        self.statusPolls = statusPolls
        self.sleep = sleep
    }

    // MARK: Register values

    var ctrlHum: UInt8 { Self.oversamplingCodes[humidityOversampling] ?? 0 }

    func ctrlMeas(mode bits: UInt8) -> UInt8 {
        (Self.oversamplingCodes[temperatureOversampling] ?? 1) << 5 | (Self.oversamplingCodes[pressureOversampling] ?? 0) << 2 | bits
    }

    var configByte: UInt8 {
        let standby = Self.standbyCodes.first { $0.ms == standbyMs }?.code ?? 5
        return standby << 5 | (Self.filterCodes[filter] ?? 0) << 2
    }

    /// The datasheet's maximum measurement time (appendix 9.1), in microseconds:
    /// 1.25 ms + 2.3 ms · osrs_t + (2.3 ms · osrs_p + 0.575 ms) + (2.3 ms · osrs_h + 0.575 ms),
    /// the pressure and humidity terms only when measured.
    public var maxMeasurementMicroseconds: Int {
        var t = 1250 + 2300 * temperatureOversampling
        if pressureOversampling > 0 { t += 2300 * pressureOversampling + 575 }
        if humidityOversampling > 0 { t += 2300 * humidityOversampling + 575 }
        return t
    }

    // MARK: Bus access naming the register

    private func readByte(_ register: UInt8) throws(HardwareError) -> UInt8 {
        do { return try bus.readByte(address: address, register: register) } catch {
            throw error.at(address: address.hex, register: "register \(register.hex)")
        }
    }

    private func writeByte(_ register: UInt8, _ value: UInt8) throws(HardwareError) {
        do { try bus.writeByte(address: address, register: register, value: value) } catch {
            throw error.at(address: address.hex, register: "register \(register.hex)")
        }
    }

    private func readBlock(_ register: UInt8, _ count: Int) throws(HardwareError) -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = try bus.readBlock(address: address, register: register, count: count) } catch {
            throw error.at(address: address.hex, register: "register \(register.hex)")
        }
        guard bytes.count == count else {
            throw HardwareError(.badFrame, device: bus.path, address: address.hex, register: "register \(register.hex)",
                                detail: "block read returned \(bytes.count) bytes, \(count) asked")
        }
        return bytes
    }

    // MARK: PolledSensor

    public func start() throws(HardwareError) {
        calibration = nil
        let id = try readByte(Register.chipID)
        guard id == Self.chipID else {
            throw HardwareError(.wrongChip, device: bus.path, address: address.hex, register: "register \(Register.chipID.hex)",
                                detail: "chip id \(id.hex), a BME280 reads 0x60" + (id == 0x58 ? " (0x58 is a BMP280, which has no humidity)" : ""))
        }
        if softReset {
            try writeByte(Register.reset, 0xB6)
            // Start-up time after reset is 2 ms; then the NVM copy (im_update, status bit 0) must be done.
            sleep(2)
            try waitStatusClear(mask: 0x01, what: "NVM copy after soft reset (im_update)")
        }
        let block1 = try readBlock(Register.calibration1, 26)
        let block2 = try readBlock(Register.calibration2, 7)
        let parsed = BME280Calibration(block1: block1, block2: block2)
        if let problem = parsed.implausibility {
            throw HardwareError(.sensorFault, device: bus.path, address: address.hex, register: "register \(Register.calibration1.hex)",
                                detail: "calibration data not usable: \(problem)")
        }
        // ctrl_hum takes effect only with the next ctrl_meas write, so it goes first (5.4.3). The part is
        // put to sleep before config, which normal mode may ignore (5.4.6).
        try writeByte(Register.ctrlHum, ctrlHum)
        try writeByte(Register.ctrlMeas, ctrlMeas(mode: 0b00))
        try writeByte(Register.config, configByte)
        if mode == .normal {
            try writeByte(Register.ctrlMeas, ctrlMeas(mode: 0b11))
        }
        calibration = parsed
    }

    private func waitStatusClear(mask: UInt8, what: String) throws(HardwareError) {
        for poll in 0..<statusPolls {
            if try readByte(Register.status) & mask == 0 { return }
            if poll < statusPolls - 1 { sleep(1) }
        }
        throw HardwareError(.timeout, device: bus.path, address: address.hex, register: "register \(Register.status.hex)",
                            detail: "\(what) not done after \(statusPolls) polls")
    }

    public func read() throws(HardwareError) -> Reading {
        guard let calibration else {
            throw HardwareError(.invalidArgument, device: bus.path, address: address.hex, detail: "read before a successful start")
        }
        switch mode {
        case .forced:
            try writeByte(Register.ctrlMeas, ctrlMeas(mode: 0b01))
            sleep((maxMeasurementMicroseconds + 999) / 1000)
            try waitStatusClear(mask: 0x08, what: "forced measurement (measuring bit)")
        case .normal:
            // A power cycle puts the part back to sleep mode with reset values in the data registers.
            let meas = try readByte(Register.ctrlMeas)
            guard meas & 0x03 == 0x03 else {
                throw HardwareError(.sensorFault, device: bus.path, address: address.hex, register: "register \(Register.ctrlMeas.hex)",
                                    detail: "the part left normal mode (ctrl_meas \(meas.hex)): reset or power cycle")
            }
        }
        let data = try readBlock(Register.data, 8)
        return Self.reading(raw: BME280Raw(data: data), calibration: calibration,
                            pressure: pressureOversampling > 0, humidity: humidityOversampling > 0)
    }

    // MARK: Compensation (data sheet 4.2.3)

    /// The payload: temperature_c (0.01 °C), pressure_pa (Q24.8 / 256, exact at scale 8) and
    /// humidity_pct (Q22.10 / 1024, exact at scale 10); a field skipped by its oversampling setting is
    /// left out. A raw value that reads "skipped" (0x80000, 0x8000) gives null and quality "skipped";
    /// a computation that would overflow the datasheet's integer types, or a result outside the
    /// operating range (-40...85 °C, 300...1100 hPa), gives quality "out_of_range" (null if overflowed).
    public static func reading(raw: BME280Raw, calibration: BME280Calibration, pressure: Bool = true, humidity: Bool = true) -> Reading {
        var fields: [(name: String, value: Value)] = []
        var skipped = false
        var outOfRange = false
        var tFine: Int32?
        if raw.temperature == BME280Raw.skippedTP {
            skipped = true
            fields.append(("temperature_c", .null))
        } else if let t = compensateTemperature(adcT: raw.temperature, calibration) {
            tFine = t.tFine
            if !(-4000...8500).contains(t.centidegrees) { outOfRange = true }
            fields.append(("temperature_c", .fixed(Int64(t.centidegrees), scale: 2)))
        } else {
            outOfRange = true
            fields.append(("temperature_c", .null))
        }
        if pressure {
            if raw.pressure == BME280Raw.skippedTP {
                skipped = true
                fields.append(("pressure_pa", .null))
            } else if let tFine, let q = compensatePressure(adcP: raw.pressure, tFine: tFine, calibration) {
                if !(30000 * 256...110000 * 256).contains(q) { outOfRange = true }
                fields.append(("pressure_pa", .fixed(Int64(q) * 390625, scale: 8)))
            } else {
                if tFine != nil { outOfRange = true }
                fields.append(("pressure_pa", .null))
            }
        }
        if humidity {
            if raw.humidity == BME280Raw.skippedH {
                skipped = true
                fields.append(("humidity_pct", .null))
            } else if let tFine, let q = compensateHumidity(adcH: raw.humidity, tFine: tFine, calibration) {
                fields.append(("humidity_pct", .fixed(Int64(q) * 9765625, scale: 10)))
            } else {
                if tFine != nil { outOfRange = true }
                fields.append(("humidity_pct", .null))
            }
        }
        return Reading(fields, quality: outOfRange ? "out_of_range" : (skipped ? "skipped" : nil))
    }

    /// Temperature in 0.01 °C and t_fine (BME280_compensate_T_int32). nil if a step overflows.
    public static func compensateTemperature(adcT: Int32, _ c: BME280Calibration) -> (centidegrees: Int32, tFine: Int32)? {
        do {
            let adc = S32(integerLiteral: Int64(adcT))
            let t1 = S32(integerLiteral: Int64(c.digT1)), t2 = S32(integerLiteral: Int64(c.digT2)), t3 = S32(integerLiteral: Int64(c.digT3))
            let var1 = try (((adc >> 3) - (t1 << 1)) * t2) >> 11
            let d = try (adc >> 4) - t1
            let var2 = try (((d * d) >> 12) * t3) >> 14
            let tFine = try var1 + var2
            let t = try ((tFine * 5) + 128) >> 8
            return (Int32(t.value), Int32(tFine.value))
        } catch {
            return nil
        }
    }

    /// Pressure in Pa as Q24.8 (BME280_compensate_P_int64). nil if a step overflows, var1 is zero
    /// (the datasheet returns 0 there) or the result does not fit its unsigned 32-bit type.
    public static func compensatePressure(adcP: Int32, tFine: Int32, _ c: BME280Calibration) -> UInt32? {
        do {
            let p1 = S64(integerLiteral: Int64(c.digP1)), p2 = S64(integerLiteral: Int64(c.digP2)), p3 = S64(integerLiteral: Int64(c.digP3))
            let p4 = S64(integerLiteral: Int64(c.digP4)), p5 = S64(integerLiteral: Int64(c.digP5)), p6 = S64(integerLiteral: Int64(c.digP6))
            let p7 = S64(integerLiteral: Int64(c.digP7)), p8 = S64(integerLiteral: Int64(c.digP8)), p9 = S64(integerLiteral: Int64(c.digP9))
            var var1 = try S64(integerLiteral: Int64(tFine)) - 128000
            var var2 = try var1 * var1 * p6
            var2 = try var2 + ((var1 * p5) << 17)
            var2 = try var2 + (p4 << 35)
            let a = try (var1 * var1 * p3) >> 8
            let b = try (var1 * p2) << 12
            var1 = try a + b
            var1 = try (((S64(integerLiteral: 1) << 47) + var1) * p1) >> 33
            guard var1 != 0 else { return nil }
            var p = try 1048576 - S64(integerLiteral: Int64(adcP))
            p = try (((p << 31) - var2) * 3125) / var1
            var1 = try (p9 * (p >> 13) * (p >> 13)) >> 25
            var2 = try (p8 * p) >> 19
            p = try ((p + var1 + var2) >> 8) + (p7 << 4)
            return UInt32(exactly: p.value)
        } catch {
            return nil
        }
    }

    /// Humidity in %RH as Q22.10 (BME280_compensate_H_int32). nil if a step overflows.
    public static func compensateHumidity(adcH: Int32, tFine: Int32, _ c: BME280Calibration) -> UInt32? {
        do {
            let h1 = S32(integerLiteral: Int64(c.digH1)), h2 = S32(integerLiteral: Int64(c.digH2)), h3 = S32(integerLiteral: Int64(c.digH3))
            let h4 = S32(integerLiteral: Int64(c.digH4)), h5 = S32(integerLiteral: Int64(c.digH5)), h6 = S32(integerLiteral: Int64(c.digH6))
            let adc = S32(integerLiteral: Int64(adcH))
            var v = try S32(integerLiteral: Int64(tFine)) - 76800
            let left = try ((((adc << 14) - (h4 << 20)) - (h5 * v)) + 16384) >> 15
            let inner = try ((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152
            let right = try ((inner * h2) + 8192) >> 14
            v = try left * right
            let square = try ((v >> 15) * (v >> 15)) >> 7
            v = try v - ((square * h1) >> 4)
            if v.value < 0 { v = 0 }
            if v.value > 419_430_400 { v = 419_430_400 }
            return UInt32(exactly: (v >> 12).value)
        } catch {
            return nil
        }
    }
}

/// The trimming parameters (data sheet table 16).
public struct BME280Calibration: Equatable, Sendable {
    public var digT1: UInt16, digT2: Int16, digT3: Int16
    public var digP1: UInt16, digP2: Int16, digP3: Int16, digP4: Int16, digP5: Int16
    public var digP6: Int16, digP7: Int16, digP8: Int16, digP9: Int16
    public var digH1: UInt8, digH2: Int16, digH3: UInt8
    /// 12-bit signed values, sign-extended.
    public var digH4: Int16, digH5: Int16
    public var digH6: Int8

    public init(digT1: UInt16, digT2: Int16, digT3: Int16,
                digP1: UInt16, digP2: Int16, digP3: Int16, digP4: Int16, digP5: Int16,
                digP6: Int16, digP7: Int16, digP8: Int16, digP9: Int16,
                digH1: UInt8 = 0, digH2: Int16 = 0, digH3: UInt8 = 0, digH4: Int16 = 0, digH5: Int16 = 0, digH6: Int8 = 0) {
        self.digT1 = digT1; self.digT2 = digT2; self.digT3 = digT3
        self.digP1 = digP1; self.digP2 = digP2; self.digP3 = digP3; self.digP4 = digP4; self.digP5 = digP5
        self.digP6 = digP6; self.digP7 = digP7; self.digP8 = digP8; self.digP9 = digP9
        self.digH1 = digH1; self.digH2 = digH2; self.digH3 = digH3; self.digH4 = digH4; self.digH5 = digH5; self.digH6 = digH6
    }

    /// From the registers 0x88...0xA1 (26 bytes) and 0xE1...0xE7 (7 bytes). Words are LSB first.
    /// dig_H4 is 0xE4 (bits 11:4) and 0xE5 bits 3:0; dig_H5 is 0xE6 (bits 11:4) and 0xE5 bits 7:4;
    /// both are 12-bit two's complement, the sign in bit 7 of 0xE4 and 0xE6 respectively.
    public init(block1 b: [UInt8], block2 h: [UInt8]) {
        func u16(_ i: Int) -> UInt16 { i + 1 < b.count ? UInt16(b[i]) | UInt16(b[i + 1]) << 8 : 0 }
        func s16(_ i: Int) -> Int16 { Int16(bitPattern: u16(i)) }
        func hb(_ i: Int) -> UInt8 { i < h.count ? h[i] : 0 }
        self.init(digT1: u16(0), digT2: s16(2), digT3: s16(4),
                  digP1: u16(6), digP2: s16(8), digP3: s16(10), digP4: s16(12), digP5: s16(14),
                  digP6: s16(16), digP7: s16(18), digP8: s16(20), digP9: s16(22),
                  digH1: b.count > 25 ? b[25] : 0,
                  digH2: Int16(bitPattern: UInt16(hb(0)) | UInt16(hb(1)) << 8),
                  digH3: hb(2),
                  digH4: Int16(Int8(bitPattern: hb(3))) * 16 | Int16(hb(4) & 0x0F),
                  digH5: Int16(Int8(bitPattern: hb(5))) * 16 | Int16(hb(4) >> 4),
                  digH6: Int8(bitPattern: hb(6)))
    }

    /// The registers this calibration is read from: 26 bytes at 0x88 and 7 bytes at 0xE1.
    public var registerImage: (block1: [UInt8], block2: [UInt8]) {
        func le(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func les(_ v: Int16) -> [UInt8] { le(UInt16(bitPattern: v)) }
        var b = le(digT1) + les(digT2) + les(digT3) + le(digP1)
        for p in [digP2, digP3, digP4, digP5, digP6, digP7, digP8, digP9] { b += les(p) }
        b += [0, digH1]
        let h4 = UInt16(bitPattern: digH4), h5 = UInt16(bitPattern: digH5)
        let h: [UInt8] = les(digH2) + [digH3, UInt8((h4 >> 4) & 0xFF), UInt8(h4 & 0x0F) | UInt8((h5 & 0x0F) << 4), UInt8((h5 >> 4) & 0xFF), UInt8(bitPattern: digH6)]
        return (b, h)
    }

    /// Why the calibration cannot be right (an unprogrammed or unreadable NVM), or nil.
    var implausibility: String? {
        if digT1 == 0 { return "dig_T1 is 0" }
        if digP1 == 0 { return "dig_P1 is 0 (the pressure formula divides by it)" }
        return nil
    }
}

/// The raw ADC values of one measurement (registers 0xF7...0xFE).
public struct BME280Raw: Equatable, Sendable {
    /// What a skipped temperature or pressure measurement reads (20 bits), and a skipped humidity (16).
    public static let skippedTP: Int32 = 0x80000
    public static let skippedH: Int32 = 0x8000

    public var pressure: Int32
    public var temperature: Int32
    public var humidity: Int32

    public init(pressure: Int32, temperature: Int32, humidity: Int32) {
        self.pressure = pressure
        self.temperature = temperature
        self.humidity = humidity
    }

    /// press_msb, press_lsb, press_xlsb (bits 7:4), temp likewise, hum_msb, hum_lsb.
    public init(data d: [UInt8]) {
        func at(_ i: Int) -> Int32 { i < d.count ? Int32(d[i]) : 0 }
        pressure = at(0) << 12 | at(1) << 4 | at(2) >> 4
        temperature = at(3) << 12 | at(4) << 4 | at(5) >> 4
        humidity = at(6) << 8 | at(7)
    }

    public var registerImage: [UInt8] {
        func three(_ v: Int32) -> [UInt8] { [UInt8((v >> 12) & 0xFF), UInt8((v >> 4) & 0xFF), UInt8((v & 0x0F) << 4)] }
        return three(pressure) + three(temperature) + [UInt8((humidity >> 8) & 0xFF), UInt8(humidity & 0xFF)]
    }
}
