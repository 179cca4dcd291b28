import Testing
import EdgelogHAL
@testable import EdgelogSensors

@Suite struct SHT3xTests {
    @Test func datasheetCRCExample() {
        // Datasheet table 20: CRC(0xBEEF) = 0x92.
        #expect(SHT3x.crc8([0xBE, 0xEF]) == 0x92)
        #expect(SHT3x.crc8([0x00, 0x00]) == 0x81)
    }

    @Test func conversions() {
        #expect(SHT3x.centiCelsius(0) == -4500)
        #expect(SHT3x.centiCelsius(65535) == 13000)
        #expect(SHT3x.centiCelsius(0x6666) == 2500)   // 175 · 0.4 - 45
        #expect(SHT3x.centiCelsius(16849) == -1)      // -0.0076... rounds half away from zero to -0.01
        #expect(SHT3x.centiCelsius(16851) == 0)       // -0.0023...
        #expect(SHT3x.centiPercent(0) == 0)
        #expect(SHT3x.centiPercent(65535) == 10000)
        #expect(SHT3x.centiPercent(0x8000) == 5000)   // 50.00076...
        #expect(SHT3x.centiPercent(0x4000) == 2500)   // 24.99962... rounds up
    }

    @Test func endToEnd() throws {
        let bus = SimulatedI2CBus(path: "/dev/i2c-1")
        let part = SHT3xSimulator(rawTemperature: 0x6666, rawHumidity: 0x8000)
        bus.attach(part.device, at: 0x44)
        var slept: [Int] = []
        let sensor = try SHT3x(bus: bus, repeatability: .high, sleep: { slept.append($0) })
        try sensor.start()
        let reading = try sensor.read()
        #expect(slept == [16])
        #expect(json(reading) == #"{"temperature_c":25.00,"humidity_pct":50.00}"#)
        let medium = try SHT3x(bus: bus, repeatability: .medium, sleep: { slept.append($0) })
        _ = try medium.read()
        #expect(slept.last == 7)
        #expect(SHT3x.Repeatability.low.command == 0x2416)
    }

    @Test func corruptedCRCNamesTheWord() throws {
        let bus = SimulatedI2CBus()
        let part = SHT3xSimulator()
        bus.attach(part.device, at: 0x45)
        let sensor = try SHT3x(bus: bus, address: 0x45)
        part.corruptWord = 1
        let error = #expect(throws: HardwareError.self) { try sensor.read() }
        #expect(error?.kind == .checksum)
        #expect(error?.address == "0x45")
        #expect(error?.register == "command 0x2400")
        #expect(error?.detail.hasPrefix("humidity word") == true)
        part.corruptWord = 0
        let first = #expect(throws: HardwareError.self) { try sensor.read() }
        #expect(first?.detail.hasPrefix("temperature word") == true)
        // The next measurement is good again.
        #expect(try sensor.read().quality == nil)
        // A frame given directly: the datasheet's 0xBEEF/0x92 word is accepted.
        let decoded = try SHT3x.decode([0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92], device: "d", address: "0x44", register: "r")
        #expect(decoded["temperature_c"] == .fixed(SHT3x.centiCelsius(0xBEEF), scale: 2))
    }

    @Test func nack() throws {
        let bus = SimulatedI2CBus()
        let sensor = try SHT3x(bus: bus)
        let error = #expect(throws: HardwareError.self) { try sensor.read() }
        #expect(error?.kind == .nack)
        #expect(error?.address == "0x44")
        #expect(error?.register == "command 0x2400")
        #expect(throws: HardwareError.self) { try sensor.start() }
        #expect(throws: HardwareError.self) { try SHT3x(bus: bus, address: 0x40) }
    }
}

@Suite struct ADS1115Tests {
    @Test func datasheetConfigWords() {
        // Reset value 0x8583: OS=1, AIN0-AIN1, ±2.048 V, single-shot, 128 SPS, comparator disabled.
        #expect(ADS1115.configWord(start: true, input: .ain0Ain1, fullScaleMillivolts: 2048, rate: 128) == 0x8583)
        // The data sheet's continuous-conversion example writes 0x84 0x83.
        #expect(ADS1115.configWord(start: true, input: .ain0Ain1, fullScaleMillivolts: 2048, rate: 128, singleShot: false) == 0x8483)
        // The HIL image's 0xC383: AIN0-GND, ±4.096 V, single-shot, 128 SPS.
        #expect(ADS1115.configWord(start: true, input: .ain0, fullScaleMillivolts: 4096, rate: 128) == 0xC383)
        #expect(ADS1115.configWord(start: false, input: .ain3, fullScaleMillivolts: 256, rate: 860) == 0x7BE3)
        #expect(ADS1115.configWord(start: false, input: .ain3, fullScaleMillivolts: 300, rate: 860) == nil)
    }

    @Test func codeToVoltageTable() throws {
        // Table 4 at ±2.048 V: LSB 62.5 µV.
        let adc = try ADS1115(bus: SimulatedI2CBus(), fullScaleVolts: 2.048)
        #expect(json(adc.reading(code: 0x7FFF)) == #"{"volts":2.0479375,"raw":32767,"quality":"saturated"}"#)
        #expect(json(adc.reading(code: 1)) == #"{"volts":0.0000625,"raw":1}"#)
        #expect(json(adc.reading(code: 0)) == #"{"volts":0.0000000,"raw":0}"#)
        #expect(json(adc.reading(code: -1)) == #"{"volts":-0.0000625,"raw":-1}"#)
        #expect(json(adc.reading(code: Int16.min)) == #"{"volts":-2.0480000,"raw":-32768,"quality":"saturated"}"#)
        // Table 3's LSB sizes for every range.
        let steps: [(Double, String)] = [(6.144, "0.0001875"), (4.096, "0.000125"), (2.048, "0.0000625"),
                                         (1.024, "0.00003125"), (0.512, "0.000015625"), (0.256, "0.0000078125")]
        for (fsr, lsb) in steps {
            let a = try ADS1115(bus: SimulatedI2CBus(), fullScaleVolts: fsr)
            #expect(json(a.reading(code: 1)) == #"{"volts":"# + lsb + #","raw":1}"#)
        }
    }

    @Test func singleShotEndToEnd() throws {
        let bus = SimulatedI2CBus(path: "/dev/i2c-1")
        let part = ADS1115Simulator(codes: [.ain0: 20000, .ain2Ain3: -1234])
        part.busyPolls = 2
        bus.attach(part.device, at: 0x49)
        var slept: [Int] = []
        let adc = try ADS1115(bus: bus, address: 0x49, input: .ain0, fullScaleVolts: 4.096, rate: 128, sleep: { slept.append($0) })
        try adc.start()
        #expect(part.conversions == 0)
        #expect(part.config == 0x4383)
        let reading = try adc.read()
        #expect(part.conversions == 1)
        #expect(slept == [8, 1, 1])
        #expect(json(reading) == #"{"volts":2.500000,"raw":20000}"#)
        part.busyPolls = 0
        let diff = try ADS1115(bus: bus, address: 0x49, input: .ain2Ain3, fullScaleVolts: 0.256, rate: 860)
        try diff.start()
        #expect(json(try diff.read()) == #"{"volts":-0.0096406250,"raw":-1234}"#)
    }

    @Test func conversionThatNeverEnds() throws {
        let bus = SimulatedI2CBus()
        let part = ADS1115Simulator()
        part.busyPolls = 10_000
        bus.attach(part.device, at: 0x48)
        var slept = 0
        let adc = try ADS1115(bus: bus, rate: 8, sleep: { slept += $0 })
        let error = #expect(throws: HardwareError.self) { try adc.read() }
        #expect(error?.kind == .timeout)
        #expect(error?.register == "register 0x01")
        // 1/8 s nominal, bounded by 1.1 × 125 ms + 1 ms.
        #expect(adc.conversionBudgetMs == 139)
        #expect(slept == 139)
    }

    @Test func notAnADS1115AndSettings() throws {
        let bus = SimulatedI2CBus()
        let other = RegisterDevice()
        other.onRead = { _, _, _ in [0x12, 0x34] }  // another part: the config does not read back
        bus.attach(other, at: 0x48)
        let adc = try ADS1115(bus: bus)
        let error = #expect(throws: HardwareError.self) { try adc.start() }
        #expect(error?.kind == .wrongChip)
        #expect(throws: HardwareError.self) { try ADS1115(bus: bus, address: 0x47) }
        #expect(throws: HardwareError.self) { try ADS1115(bus: bus, fullScaleVolts: 5.0) }
        #expect(throws: HardwareError.self) { try ADS1115(bus: bus, fullScaleVolts: .nan) }
        #expect(throws: HardwareError.self) { try ADS1115(bus: bus, rate: 100) }
    }
}
