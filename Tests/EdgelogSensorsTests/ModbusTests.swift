import Testing
import EdgelogHAL
@testable import EdgelogSensors

@Suite struct ModbusTests {
    @Test func specCRCExamples() {
        // Serial line spec 6.2.2: CRC of 02 07 is 0x1241, sent low byte first as 41 12.
        #expect(ModbusRTU.crc16([0x02, 0x07]) == 0x1241)
        #expect(ModbusRTU.frame(slave: 0x02, pdu: [0x07]) == [0x02, 0x07, 0x41, 0x12])
        // Read 10 holding registers from 0 of slave 1: 01 03 00 00 00 0A C5 CD.
        #expect(ModbusRTU.readRequest(slave: 1, function: .readHoldingRegisters, start: 0, count: 10)
                == [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD])
        // The application protocol's 6.3 example (registers 108...110 of slave 0x11): 11 03 00 6B 00 03 76 87.
        #expect(ModbusRTU.readRequest(slave: 0x11, function: .readHoldingRegisters, start: 0x006B, count: 3)
                == [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87])
        #expect(ModbusRTU.crcMatches([0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87]))
        #expect(!ModbusRTU.crcMatches([0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x87, 0x76]))
    }

    @Test func interFrameSilence() {
        // 3.5 characters of 11 bits: 4.0104 ms at 9600, 2.0052 ms at 19200; fixed 1.75 ms above 19200.
        #expect(ModbusRTU.interFrameMicroseconds(baud: 9600) == 4011)
        #expect(ModbusRTU.interFrameMicroseconds(baud: 19200) == 2006)
        #expect(ModbusRTU.interFrameMicroseconds(baud: 38400) == 1750)
        #expect(ModbusRTU.interFrameMicroseconds(baud: 115200) == 1750)
    }

    @Test func specResponseExample() throws {
        // 6.3: response 03 06 02 2B 00 00 00 64: registers 108 = 555, 109 = 0, 110 = 100.
        let frame = ModbusRTU.frame(slave: 0x11, pdu: [0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64])
        #expect(try ModbusMaster.parseResponse(frame, slave: 0x11, function: .readHoldingRegisters, count: 3, device: "d") == [555, 0, 100])
        // Exception response: function | 0x80, code 02.
        let exception = ModbusRTU.frame(slave: 0x11, pdu: [0x83, 0x02])
        let error = #expect(throws: HardwareError.self) {
            try ModbusMaster.parseResponse(exception, slave: 0x11, function: .readHoldingRegisters, count: 3, device: "d")
        }
        #expect(error?.kind == .exception)
        #expect(error?.detail == "exception 02: illegal data address")
        // Byte count that is not 2·count.
        let short = ModbusRTU.frame(slave: 0x11, pdu: [0x03, 0x04, 0x02, 0x2B, 0x00, 0x00])
        #expect(throws: HardwareError.self) { try ModbusMaster.parseResponse(short, slave: 0x11, function: .readHoldingRegisters, count: 3, device: "d") }
        // Function echo of the other read.
        let other = ModbusRTU.frame(slave: 0x11, pdu: [0x04, 0x02, 0x00, 0x01])
        #expect(throws: HardwareError.self) { try ModbusMaster.parseResponse(other, slave: 0x11, function: .readHoldingRegisters, count: 1, device: "d") }
    }

    func line(_ slaves: [ModbusSlaveSimulator], baud: Int = 19200, retries: Int = 1) throws -> (SimulatedSerialPort, ModbusMaster, () -> [Int]) {
        var slept: [Int] = []
        let port = SimulatedSerialPort(path: "/dev/ttyS1", config: SerialConfig(baud: baud, parity: .even), peer: MultidropLine(slaves), sleep: { slept.append($0) })
        let master = try ModbusMaster(port: port, responseTimeoutMs: 200, retries: retries, sleep: { slept.append($0) })
        return (port, master, { slept })
    }

    @Test func severalSlavesOnOneLine() throws {
        let meter = ModbusSlaveSimulator(slave: 1, holding: [0: 2304, 1: 0xFFFF, 2: 0x0001, 3: 0x86A0, 4: 0x1DC0, 5: 0xFFFE])
        let probe = ModbusSlaveSimulator(slave: 7, input: [0x10: 215, 0x11: 40])
        let (_, master, slept) = try line([meter, probe])
        let voltage = try ModbusSensor(master: master, slave: 1, function: 3, register: 0, count: 6, fields: [
            ModbusField(name: "voltage_v", offset: 0, kind: .u16, scale: 1),
            ModbusField(name: "offset", offset: 1, kind: .s16),
            ModbusField(name: "energy_wh", offset: 2, kind: .u32),
            ModbusField(name: "balance", offset: 4, kind: .s32LowWordFirst, scale: 2),
        ])
        let raw = try ModbusSensor(master: master, slave: 7, function: 4, register: 0x10, count: 2)
        #expect(voltage.location == "/dev/ttyS1 slave 1")
        try voltage.start()
        #expect(json(try voltage.read()) == #"{"voltage_v":230.4,"offset":-1,"energy_wh":100000,"balance":-1234.56}"#)
        #expect(json(try raw.read()) == #"{"reg_16":215,"reg_17":40}"#)
        #expect(meter.requests == [ModbusRTU.readRequest(slave: 1, function: .readHoldingRegisters, start: 0, count: 6)])
        #expect(probe.requests.count == 1)
        // t3.5 at 19200 baud is 2.0052 ms: 3 ms of silence before each request.
        #expect(master.silenceMs == 3)
        #expect(slept() == [3, 3])
    }

    @Test func exceptionIsNotRetried() throws {
        let slave = ModbusSlaveSimulator(slave: 3, holding: [0: 1])
        let (_, master, _) = try line([slave], retries: 3)
        let sensor = try ModbusSensor(master: master, slave: 3, function: 3, register: 0, count: 2)
        let error = #expect(throws: HardwareError.self) { try sensor.read() }
        #expect(error?.kind == .exception)
        #expect(error?.device == "/dev/ttyS1")
        #expect(error?.address == "slave 3")
        #expect(error?.register == "holding registers 0x0000...0x0001")
        #expect(error?.detail == "exception 02: illegal data address")
        #expect(slave.requests.count == 1)
        slave.behavior = .exception(0x06)
        let busy = #expect(throws: HardwareError.self) { try sensor.read() }
        #expect(busy?.detail == "exception 06: server device busy")
    }

    @Test func timeoutAfterRetries() throws {
        let slave = ModbusSlaveSimulator(slave: 3, holding: [0: 1])
        slave.behavior = .silent
        let (_, master, _) = try line([slave], retries: 1)
        let error = #expect(throws: HardwareError.self) { try master.readRegisters(slave: 3, function: .readHoldingRegisters, start: 0, count: 1) }
        #expect(error?.kind == .timeout)
        #expect(error?.address == "slave 3")
        #expect(error?.register == "holding register 0x0000")
        #expect(error?.detail == "no response in 200 ms (after 2 attempts)")
        #expect(slave.requests.count == 2)
        // An absent slave id: nobody answers.
        let nobody = #expect(throws: HardwareError.self) { try master.readRegisters(slave: 4, function: .readInputRegisters, start: 5, count: 1) }
        #expect(nobody?.kind == .timeout && nobody?.address == "slave 4" && nobody?.register == "input register 0x0005")
    }

    @Test func truncatedFrameIsRetried() throws {
        let slave = ModbusSlaveSimulator(slave: 2, holding: [0: 10, 1: 11])
        let (_, master, _) = try line([slave], retries: 1)
        slave.script = [.truncated]
        #expect(try master.readRegisters(slave: 2, function: .readHoldingRegisters, start: 0, count: 2) == [10, 11])
        #expect(slave.requests.count == 2)
        slave.script = [.truncated, .truncated]
        let error = #expect(throws: HardwareError.self) { try master.readRegisters(slave: 2, function: .readHoldingRegisters, start: 0, count: 2) }
        #expect(error?.kind == .badFrame)
        #expect(error?.detail.hasPrefix("truncated response: 4 of 9 bytes") == true)
    }

    @Test func wrongCRCWrongSlaveAndGarbage() throws {
        let slave = ModbusSlaveSimulator(slave: 5, input: [100: 42])
        let (_, master, _) = try line([slave], retries: 0)
        slave.script = [.wrongCRC]
        let crc = #expect(throws: HardwareError.self) { try master.readRegisters(slave: 5, function: .readInputRegisters, start: 100, count: 1) }
        #expect(crc?.kind == .checksum)
        #expect(crc?.address == "slave 5" && crc?.register == "input register 0x0064")
        slave.script = [.wrongSlave(9)]
        let echo = #expect(throws: HardwareError.self) { try master.readRegisters(slave: 5, function: .readInputRegisters, start: 100, count: 1) }
        #expect(echo?.kind == .badFrame)
        #expect(echo?.detail == "response from slave 9 to a request for slave 5")
        slave.script = [.garbage]
        let garbage = #expect(throws: HardwareError.self) { try master.readRegisters(slave: 5, function: .readInputRegisters, start: 100, count: 1) }
        #expect(garbage?.kind == .badFrame || garbage?.kind == .checksum)
        // And then a good answer.
        #expect(try master.readRegisters(slave: 5, function: .readInputRegisters, start: 100, count: 1) == [42])
    }

    @Test func staleInputIsDiscarded() throws {
        let slave = ModbusSlaveSimulator(slave: 1, holding: [0: 1, 1: 2, 2: 3])
        let (port, master, _) = try line([slave], retries: 0)
        // A late reply to an earlier request is waiting on the line.
        try port.write(ModbusRTU.readRequest(slave: 1, function: .readHoldingRegisters, start: 2, count: 1))
        #expect(try master.readRegisters(slave: 1, function: .readHoldingRegisters, start: 0, count: 2) == [1, 2])
    }

    @Test func portErrorsNameSlaveAndRegister() throws {
        let slave = ModbusSlaveSimulator(slave: 1, holding: [0: 1])
        let (port, master, _) = try line([slave], retries: 2)
        port.inject(.io)
        let error = #expect(throws: HardwareError.self) { try master.readRegisters(slave: 1, function: .readHoldingRegisters, start: 0, count: 1) }
        #expect(error?.kind == .io && error?.address == "slave 1" && error?.register == "holding register 0x0000")
        #expect(slave.requests.isEmpty)
    }

    @Test func invalidSettings() throws {
        let (_, master, _) = try line([])
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 0, function: 3, register: 0, count: 1) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 248, function: 3, register: 0, count: 1) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 1, function: 6, register: 0, count: 1) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 1, function: 3, register: 65536, count: 1) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 1, function: 3, register: 0, count: 126) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 1, function: 3, register: 65535, count: 2) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 1, function: 3, register: 0, count: 1, fields: [ModbusField(name: "x", offset: 0, kind: .u32)]) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 1, function: 3, register: 0, count: 2, fields: [ModbusField(name: "x", offset: 0), ModbusField(name: "x", offset: 1)]) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 1, function: 3, register: 0, count: 1, fields: [ModbusField(name: "Bad Name", offset: 0)]) }
        #expect(throws: HardwareError.self) { try ModbusSensor(master: master, slave: 1, function: 3, register: 0, count: 1, fields: [ModbusField(name: "x", offset: 0, scale: 10)]) }
        let port = SimulatedSerialPort(peer: MultidropLine([]))
        #expect(throws: HardwareError.self) { try ModbusMaster(port: port, responseTimeoutMs: 5) }
        #expect(throws: HardwareError.self) { try ModbusMaster(port: port, retries: 6) }
        #expect(throws: HardwareError.self) { try ModbusMaster(port: SimulatedSerialPort(config: SerialConfig(dataBits: 7), peer: MultidropLine([]))) }
    }
}
