import Testing
import EdgelogHAL
@testable import EdgelogSensors

@Suite struct MCP3008Tests {
    @Test func datasheetFraming() {
        // Figure 6-1: start bit in the first byte, SGL/DIFF D2 D1 D0 in the second byte's high nibble.
        #expect(MCP3008.request(channel: 0, differential: false) == [0x01, 0x80, 0x00])
        #expect(MCP3008.request(channel: 5, differential: false) == [0x01, 0xD0, 0x00])
        #expect(MCP3008.request(channel: 7, differential: false) == [0x01, 0xF0, 0x00])
        #expect(MCP3008.request(channel: 0, differential: true) == [0x01, 0x00, 0x00])  // CH0+ CH1-
        #expect(MCP3008.request(channel: 7, differential: true) == [0x01, 0x70, 0x00])  // CH6- CH7+
    }

    @Test func decodeAndScale() throws {
        #expect(try MCP3008.decode([0xFF, 0xFB, 0xFF], device: "d", channel: 0) == 1023)  // high bits undefined
        #expect(try MCP3008.decode([0x00, 0x02, 0x00], device: "d", channel: 0) == 512)
        let error = #expect(throws: HardwareError.self) { try MCP3008.decode([0xFF, 0xFF, 0xFF], device: "d", channel: 3) }
        #expect(error?.kind == .badFrame)
        #expect(error?.register == "channel 3")
        let adc = try MCP3008(device: SimulatedSPIDevice(frames: []), channel: 0, vref: 3.3)
        // code = 1024 · Vin / Vref: 512 is Vref / 2.
        #expect(json(adc.reading(code: 512)) == #"{"raw":512,"volts":1.65000000000}"#)
        #expect(json(adc.reading(code: 1023)) == #"{"raw":1023,"volts":3.29677734375,"quality":"saturated"}"#)
        let five = try MCP3008(device: SimulatedSPIDevice(frames: []), channel: 0, vref: 5.0)
        #expect(json(five.reading(code: 1)) == #"{"raw":1,"volts":0.0048828125}"#)
    }

    @Test func endToEnd() throws {
        let spi = SimulatedSPIDevice(path: "/dev/spidev0.0") { tx in
            // Channel from the request: answers 100 · (channel + 1).
            let channel = Int(tx[1] >> 4) & 7
            return SimulatedFrames.mcp3008(code: 100 * (channel + 1))
        }
        let adc = try MCP3008(device: spi, channel: 6, vref: 3.3)
        #expect(adc.location == "/dev/spidev0.0 channel 6")
        #expect(try adc.read()["raw"] == .int(700))
        #expect(spi.sent.last == [0x01, 0xE0, 0x00])
        spi.respond { _ in nil }  // nothing behind the chip select: all ones
        #expect(throws: HardwareError.self) { try adc.read() }
        #expect(throws: HardwareError.self) { try MCP3008(device: spi, channel: 8, vref: 3.3) }
        #expect(throws: HardwareError.self) { try MCP3008(device: spi, channel: 0, vref: 0) }
        #expect(throws: HardwareError.self) { try MCP3008(device: spi, channel: 0, vref: .infinity) }
    }
}

@Suite struct MAX31855Tests {
    /// A frame from the data sheet's bit patterns: 14-bit thermocouple, 12-bit internal, flags.
    func frame(_ tc: UInt32, _ internalBits: UInt32, fault: Bool = false, flags: UInt32 = 0) -> [UInt8] {
        let word = tc << 18 | (fault ? 1 << 16 : 0) | internalBits << 4 | flags
        return [UInt8(word >> 24), UInt8((word >> 16) & 0xFF), UInt8((word >> 8) & 0xFF), UInt8(word & 0xFF)]
    }

    @Test func thermocoupleTable() throws {
        // Table 4.
        let rows: [(UInt32, String)] = [
            (0b0110_0100_0000_00, "1600.00"), (0b0011_1110_1000_00, "1000.00"), (0b0000_0110_0100_11, "100.75"),
            (0b0000_0001_1001_00, "25.00"), (0b0000_0000_0000_00, "0.00"), (0b1111_1111_1111_11, "-0.25"),
            (0b1111_1111_1111_00, "-1.00"), (0b1111_0000_0110_00, "-250.00"),
        ]
        for (bits, text) in rows {
            let reading = try MAX31855.decode(frame(bits, 0), device: "d")
            #expect(json(reading) == #"{"thermocouple_c":"# + text + #","cold_junction_c":0.0000}"#)
        }
    }

    @Test func internalTable() throws {
        // Table 5.
        let rows: [(UInt32, String)] = [
            (0b0111_1111_0000, "127.0000"), (0b0110_0100_1001, "100.5625"), (0b0001_1001_0000, "25.0000"),
            (0b0000_0000_0000, "0.0000"), (0b1111_1111_1111, "-0.0625"), (0b1111_1111_0000, "-1.0000"),
            (0b1110_1100_0000, "-20.0000"), (0b1100_1001_0000, "-55.0000"),
        ]
        for (bits, text) in rows {
            let reading = try MAX31855.decode(frame(0b0000_0001_1001_00, bits), device: "d")
            #expect(reading["cold_junction_c"].map { v in String(decoding: Reading([("x", v)]).json, as: UTF8.self) } == #"{"x":"# + text + "}")
        }
    }

    @Test func faultFrames() throws {
        // Open circuit: the part reports a fault; the thermocouple value is not a number.
        let open = try MAX31855.decode(frame(0b0000_0001_1001_00, 0b0001_1001_0000, fault: true, flags: 0b001), device: "d")
        #expect(json(open) == #"{"thermocouple_c":null,"cold_junction_c":25.0000,"quality":"sensor_fault","faults":["open_circuit"]}"#)
        let gnd = try MAX31855.decode(frame(0, 0b0001_1001_0000, fault: true, flags: 0b010), device: "d")
        #expect(gnd.faults == ["short_to_gnd"])
        let all = try MAX31855.decode(frame(0, 0, fault: true, flags: 0b111), device: "d")
        #expect(all.faults == ["open_circuit", "short_to_gnd", "short_to_vcc"])
        #expect(all["thermocouple_c"] == .null)
        // Frames that are not MAX31855 frames.
        for bad in [[0xFF, 0xFF, 0xFF, 0xFF], frame(0, 0, fault: true, flags: 0), frame(0, 0, fault: false, flags: 0b100),
                    frame(0, 0, flags: 0b1000)] as [[UInt8]] {
            let error = #expect(throws: HardwareError.self) { try MAX31855.decode(bad, device: "d") }
            #expect(error?.kind == .badFrame)
        }
    }

    @Test func endToEnd() throws {
        let spi = SimulatedSPIDevice(path: "/dev/spidev0.1", frames: [
            SimulatedFrames.max31855(quarterDegrees: -1000, sixteenths: 1609),
            SimulatedFrames.max31855(quarterDegrees: 0, sixteenths: -880, faults: 0b001),
        ])
        let sensor = MAX31855(device: spi)
        try sensor.start()
        #expect(json(try sensor.read()) == #"{"thermocouple_c":-250.00,"cold_junction_c":100.5625}"#)
        #expect(json(try sensor.read()) == #"{"thermocouple_c":null,"cold_junction_c":-55.0000,"quality":"sensor_fault","faults":["open_circuit"]}"#)
        #expect(spi.sent.first == [0, 0, 0, 0])
        spi.inject(.io)
        let error = #expect(throws: HardwareError.self) { try sensor.read() }
        #expect(error?.kind == .io && error?.device == "/dev/spidev0.1")
    }
}
