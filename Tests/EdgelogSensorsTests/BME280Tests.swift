import Testing
import EdgelogHAL
@testable import EdgelogSensors

/// The BMP280 data sheet's worked example (BST-BMP280-DS001, 3.12): the temperature and pressure
/// formulas of the BME280 are the same. Humidity values are a typical part's trimming.
let exampleCalibration = BME280Calibration(
    digT1: 27504, digT2: 26435, digT3: -1000,
    digP1: 36477, digP2: -10685, digP3: 3024, digP4: 2855, digP5: 140,
    digP6: -7, digP7: 15500, digP8: -14600, digP9: 6000,
    digH1: 75, digH2: 362, digH3: 0, digH4: 324, digH5: 0, digH6: 30)

func json(_ reading: Reading) -> String { String(decoding: reading.json, as: UTF8.self) }

/// A BME280 register image on the simulated bus: chip id, trimming, one measurement's raw values;
/// the measuring bit stays set for `busyPolls` status reads after each forced-mode start.
final class BME280Image: @unchecked Sendable {
    let device: RegisterDevice
    var busyPolls = 0
    var pollsLeft = 0
    var writes: [(UInt8, UInt8)] = []

    init(calibration: BME280Calibration = exampleCalibration, raw: BME280Raw, chipID: UInt8 = 0x60) {
        device = RegisterDevice(registers: [0xD0: chipID])
        let image = calibration.registerImage
        device.load(0x88, image.block1)
        device.load(0xE1, image.block2)
        device.load(0xF7, raw.registerImage)
        device.onWrite = { [unowned self] register, value, device in
            self.writes.append((register, value))
            if register == 0xF4, value & 0x03 == 0x01 { self.pollsLeft = self.busyPolls }
            if register == 0xF4, value & 0x03 == 0x03 { device.registers[0xF4] = value }
        }
        device.onRead = { [unowned self] register, count, _ in
            guard register == 0xF3, count == 1 else { return nil }
            if self.pollsLeft > 0 {
                self.pollsLeft -= 1
                return [0x08]
            }
            return [0x00]
        }
    }
}

@Suite struct BME280Tests {
    @Test func datasheetTemperatureExample() throws {
        let t = try #require(BME280.compensateTemperature(adcT: 519888, exampleCalibration))
        #expect(t.tFine == 128422)
        #expect(t.centidegrees == 2508)
    }

    @Test func datasheetPressureExample() throws {
        // 64-bit formula: Q24.8 25767233 = 100653.25390625 Pa (the example's "100653 Pa").
        let q = try #require(BME280.compensatePressure(adcP: 415148, tFine: 128422, exampleCalibration))
        #expect(q == 25_767_233)
        #expect(q / 256 == 100653)
    }

    @Test func humidityQ22_10() throws {
        // Values computed with the data sheet's BME280_compensate_H_int32 in arbitrary-precision
        // integers (arithmetic shifts), independently of this code.
        #expect(BME280.compensateHumidity(adcH: 30000, tFine: 128422, exampleCalibration) == 53206)
        #expect(BME280.compensateHumidity(adcH: 31000, tFine: 128422, exampleCalibration) == 58902)
        #expect(BME280.compensateHumidity(adcH: 0x6F00, tFine: 128422, exampleCalibration) == 44166)
        // The formula clamps to 0...100 %RH.
        #expect(BME280.compensateHumidity(adcH: 0, tFine: 128422, exampleCalibration) == 0)
        #expect(BME280.compensateHumidity(adcH: 65535, tFine: 128422, exampleCalibration) == 102400)
    }

    @Test func exactPayload() {
        let reading = BME280.reading(raw: BME280Raw(pressure: 415148, temperature: 519888, humidity: 30000), calibration: exampleCalibration)
        #expect(reading["temperature_c"] == .fixed(2508, scale: 2))
        #expect(reading["pressure_pa"] == .fixed(10_065_325_390_625, scale: 8))
        #expect(reading["humidity_pct"] == .fixed(519_589_843_750, scale: 10))
        #expect(reading.quality == nil)
        #expect(json(reading) == #"{"temperature_c":25.08,"pressure_pa":100653.25390625,"humidity_pct":51.9589843750}"#)
    }

    @Test func h4h5TwelveBitPackingAndSign() {
        // dig_H4 = 0x144 (324): 0xE4 = 0x14, 0xE5[3:0] = 4; dig_H5 = 0x032 (50): 0xE6 = 0x03, 0xE5[7:4] = 2.
        var c = BME280Calibration(block1: exampleCalibration.registerImage.block1, block2: [0x6A, 0x01, 0x00, 0x14, 0x24, 0x03, 0x1E])
        #expect(c.digH2 == 362 && c.digH3 == 0 && c.digH4 == 324 && c.digH5 == 50 && c.digH6 == 30)
        // Negative 12-bit values: dig_H4 = 0xFFE (-2), dig_H5 = 0xFFD (-3), dig_H6 = 0xFF (-1).
        c = BME280Calibration(block1: [], block2: [0x00, 0x80, 0x00, 0xFF, 0xDE, 0xFF, 0xFF])
        #expect(c.digH2 == -32768 && c.digH4 == -2 && c.digH5 == -3 && c.digH6 == -1)
        // dig_H4 = -2048, the most negative 12-bit value.
        c = BME280Calibration(block1: [], block2: [0, 0, 0, 0x80, 0x00, 0x00, 0])
        #expect(c.digH4 == -2048 && c.digH5 == 0)
        // The image round-trips.
        let image = exampleCalibration.registerImage
        #expect(image.block1.count == 26 && image.block2.count == 7)
        #expect(BME280Calibration(block1: image.block1, block2: image.block2) == exampleCalibration)
        var negative = exampleCalibration
        negative.digH4 = -2000
        negative.digH5 = -7
        let image2 = negative.registerImage
        #expect(BME280Calibration(block1: image2.block1, block2: image2.block2) == negative)
    }

    @Test func skippedAndReset() {
        let skipped = BME280.reading(raw: BME280Raw(pressure: 0x80000, temperature: 519888, humidity: 0x8000), calibration: exampleCalibration)
        #expect(skipped["temperature_c"] == .fixed(2508, scale: 2))
        #expect(skipped["pressure_pa"] == .null)
        #expect(skipped["humidity_pct"] == .null)
        #expect(skipped.quality == "skipped")
        // Temperature skipped: nothing can be compensated.
        let none = BME280.reading(raw: BME280Raw(pressure: 415148, temperature: 0x80000, humidity: 30000), calibration: exampleCalibration)
        #expect(none["temperature_c"] == .null && none["pressure_pa"] == .null && none["humidity_pct"] == .null)
        #expect(none.quality == "skipped")
        // Fields configured off are left out.
        let tOnly = BME280.reading(raw: BME280Raw(pressure: 0x80000, temperature: 519888, humidity: 0x8000), calibration: exampleCalibration, pressure: false, humidity: false)
        #expect(tOnly.fields.map(\.name) == ["temperature_c"])
        #expect(tOnly.quality == nil)
    }

    @Test func hostileCalibrationDoesNotWrap() {
        // Extreme trimming that would overflow the C integer types: out_of_range, never a wrapped number.
        let hostile = BME280Calibration(digT1: 65535, digT2: 32767, digT3: 32767,
                                        digP1: 65535, digP2: 32767, digP3: 32767, digP4: 32767, digP5: 32767,
                                        digP6: 32767, digP7: 32767, digP8: 32767, digP9: 32767,
                                        digH1: 255, digH2: 32767, digH3: 255, digH4: 2047, digH5: 2047, digH6: 127)
        for raw in [BME280Raw(pressure: 0, temperature: 0, humidity: 0), BME280Raw(pressure: 0xFFFFF, temperature: 0xFFFFF, humidity: 0xFFFF)] {
            let reading = BME280.reading(raw: raw, calibration: hostile)
            #expect(reading.quality == "out_of_range")
        }
        #expect(BME280.compensateTemperature(adcT: 0, hostile) == nil)  // (0 - 2·65535) · 32767 overflows 32 bits
    }

    @Test func endToEndForcedMode() throws {
        let bus = SimulatedI2CBus(path: "/dev/i2c-1")
        let image = BME280Image(raw: BME280Raw(pressure: 415148, temperature: 519888, humidity: 30000))
        image.busyPolls = 3
        bus.attach(image.device, at: 0x76)
        var slept: [Int] = []
        let sensor = try BME280(bus: bus, address: 0x76, temperatureOversampling: 2, pressureOversampling: 16, humidityOversampling: 1,
                                filter: 4, sleep: { slept.append($0) })
        #expect(sensor.location == "/dev/i2c-1 0x76")
        try sensor.start()
        // Soft reset, then ctrl_hum before ctrl_meas, config while asleep.
        #expect(image.writes.map(\.0) == [0xE0, 0xF2, 0xF4, 0xF5])
        #expect(image.writes[0].1 == 0xB6)
        #expect(image.writes[1].1 == 0x01)
        #expect(image.writes[2].1 == 0b010_101_00)
        #expect(image.writes[3].1 == 0b101_010_00)
        image.writes.removeAll()
        slept.removeAll()
        let reading = try sensor.read()
        #expect(image.writes.map(\.0) == [0xF4])
        #expect(image.writes[0].1 == 0b010_101_01)
        // Max measurement time 1.25 + 2.3*2 + 2.3*16 + 0.575 + 2.3*1 + 0.575 = 46.1 ms, then 3 busy polls.
        #expect(sensor.maxMeasurementMicroseconds == 46_100)
        #expect(slept == [47, 1, 1, 1])
        #expect(json(reading) == #"{"temperature_c":25.08,"pressure_pa":100653.25390625,"humidity_pct":51.9589843750}"#)
    }

    @Test func measuringBitThatNeverClears() throws {
        let bus = SimulatedI2CBus()
        let image = BME280Image(raw: BME280Raw(pressure: 415148, temperature: 519888, humidity: 30000))
        image.busyPolls = 1000
        bus.attach(image.device, at: 0x77)
        let sensor = try BME280(bus: bus, address: 0x77, softReset: false, statusPolls: 5)
        try sensor.start()
        #expect(image.writes.map(\.0) == [0xF2, 0xF4, 0xF5])
        let error = #expect(throws: HardwareError.self) { try sensor.read() }
        #expect(error?.kind == .timeout)
        #expect(error?.address == "0x77")
        #expect(error?.register == "register 0xF3")
    }

    @Test func normalMode() throws {
        let bus = SimulatedI2CBus()
        let image = BME280Image(raw: BME280Raw(pressure: 415148, temperature: 519888, humidity: 30000))
        bus.attach(image.device, at: 0x76)
        let sensor = try BME280(bus: bus, mode: .normal, standbyMs: 62.5)
        try sensor.start()
        #expect(image.writes.map(\.0) == [0xE0, 0xF2, 0xF4, 0xF5, 0xF4])
        #expect(image.writes[3].1 == 0b001_000_00)
        #expect(image.writes[4].1 == 0b001_001_11)
        #expect(try sensor.read()["temperature_c"] == .fixed(2508, scale: 2))
        // A power cycle returns the part to sleep mode: the driver says so instead of reading reset values.
        image.device.registers[0xF4] = 0
        let error = #expect(throws: HardwareError.self) { try sensor.read() }
        #expect(error?.kind == .sensorFault)
    }

    @Test func wrongChipNamesTheID() throws {
        let bus = SimulatedI2CBus()
        bus.attach(BME280Image(raw: BME280Raw(pressure: 0, temperature: 0, humidity: 0), chipID: 0x58).device, at: 0x76)
        let sensor = try BME280(bus: bus)
        let error = #expect(throws: HardwareError.self) { try sensor.start() }
        #expect(error?.kind == .wrongChip)
        #expect(error?.register == "register 0xD0")
        #expect(error?.detail.contains("0x58") == true)
        // Read before a successful start is refused, not answered from missing calibration.
        #expect(throws: HardwareError.self) { try sensor.read() }
    }

    @Test func nackAndBlankCalibration() throws {
        let bus = SimulatedI2CBus()
        let sensor = try BME280(bus: bus)
        let nack = #expect(throws: HardwareError.self) { try sensor.start() }
        #expect(nack?.kind == .nack && nack?.address == "0x76")
        bus.attach(RegisterDevice(registers: [0xD0: 0x60]), at: 0x76)
        let blank = #expect(throws: HardwareError.self) { try sensor.start() }
        #expect(blank?.kind == .sensorFault)
    }

    @Test func invalidSettings() {
        let bus = SimulatedI2CBus()
        #expect(throws: HardwareError.self) { try BME280(bus: bus, address: 0x40) }
        #expect(throws: HardwareError.self) { try BME280(bus: bus, temperatureOversampling: 0) }
        #expect(throws: HardwareError.self) { try BME280(bus: bus, pressureOversampling: 3) }
        #expect(throws: HardwareError.self) { try BME280(bus: bus, humidityOversampling: 32) }
        #expect(throws: HardwareError.self) { try BME280(bus: bus, filter: 3) }
        #expect(throws: HardwareError.self) { try BME280(bus: bus, standbyMs: 100) }
        #expect(throws: HardwareError.self) { try BME280(bus: bus, statusPolls: 0) }
        let error = #expect(throws: HardwareError.self) { try BME280(bus: bus, filter: 3) }
        #expect(error?.kind == .invalidArgument)
    }
}

@Suite struct BME280HILImageTests {
    /// The register image of board/qemu/bme280.json, whose expected values scripts/hil/expected.py
    /// computes independently: t_fine 128422, T 2508, Q24.8 25767233, Q22.10 50766.
    @Test func hilImage() throws {
        let bus = SimulatedI2CBus()
        let device = RegisterDevice(registers: [0xD0: 0x60])
        device.load(0x88, [0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC, 0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B, 0x27,
                           0x0B, 0x8C, 0x00, 0xF9, 0xFF, 0x8C, 0x3C, 0xF8, 0xC6, 0x70, 0x17, 0x00, 0x4B])
        device.load(0xE1, [0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E])
        device.load(0xF7, [0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x71, 0x61])
        bus.attach(device, at: 0x76)
        let sensor = try BME280(bus: bus)
        try sensor.start()
        let c = try #require(sensor.calibration)
        #expect(c.digH4 == 313 && c.digH5 == 50)
        #expect(BME280.compensateHumidity(adcH: 0x7161, tFine: 128422, c) == 50766)
        let reading = try sensor.read()
        #expect(reading["temperature_c"] == .fixed(2508, scale: 2))
        #expect(reading["pressure_pa"] == .fixed(25_767_233 * 390_625, scale: 8))
        #expect(reading["humidity_pct"] == .fixed(50766 * 9_765_625, scale: 10))
    }
}
