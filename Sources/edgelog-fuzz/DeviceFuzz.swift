// The `devices` and `board` fuzz targets. Bytes from a device are untrusted: each driver reads them
// through a simulated bus whose device answers with the fuzz input (register images, SPI frames,
// serial replies, a talker's stream), and must return a reading or throw a HardwareError. Board
// files come from people: the text goes through Yams and the board loader, which must return a
// board or a BoardError. A trap, a hang or a sanitizer report is a bug.

import EdgelogHAL
import EdgelogRuntime
import EdgelogSensors

enum DeviceFuzz {
    static func run(_ data: UnsafeRawBufferPointer) {
        guard let selector = data.first else { return }
        let bytes = Array(data.dropFirst())
        switch selector % 8 {
        case 0: i2c(bytes) { bus in try BME280(bus: bus, address: 0x76) }
        case 1:
            let bus = SimulatedI2CBus()
            let device = RegisterDevice()
            device.onTransfer = { _, count in Array((bytes + [UInt8](repeating: 0, count: count)).prefix(count)) }
            bus.attach(device, at: 0x44)
            poll { try SHT3x(bus: bus, address: 0x44) }
        case 2: i2c(bytes) { bus in try ADS1115(bus: bus, address: 0x76, input: .ain1Ain3, fullScaleVolts: 0.256, rate: 860) }
        case 3: spi(bytes) { device in try MCP3008(device: device, channel: Int(bytes.first ?? 0) % 8, differential: (bytes.first ?? 0) & 8 != 0, vref: 3.3) }
        case 4: spi(bytes) { device in MAX31855(device: device) }
        case 5:
            let port = SimulatedSerialPort(config: SerialConfig(baud: 19200), peer: Replies(bytes))
            poll {
                let master = try ModbusMaster(port: port, responseTimeoutMs: 10, retries: 2)
                return try ModbusSensor(master: master, slave: Int(bytes.first ?? 1) % 247 + 1, function: 3 + Int(bytes.count % 2), register: 0,
                                        count: 4, fields: [ModbusField(name: "a", offset: 0, kind: .s32, scale: 3), ModbusField(name: "b", offset: 2, kind: .u32LowWordFirst)])
            }
        case 6: events(NMEAReader(port: SimulatedSerialPort(peer: Stream(bytes)), requireChecksum: bytes.count % 2 == 0))
        default:
            let port = SimulatedSerialPort(peer: Stream(bytes))
            if let reader = try? DelimitedLineReader(port: port, delimiter: bytes.count % 3 == 0 ? " " : ",",
                                                     fields: [LineField("a", .text), LineField("w"), LineField("x", .skip), LineField("n")]) {
                events(reader)
            }
        }
    }

    /// The input is the device's 256 registers (the bus reads them as the driver asks).
    static func i2c(_ bytes: [UInt8], _ make: (I2CBus) throws -> PolledSensor) {
        let bus = SimulatedI2CBus()
        let device = RegisterDevice()
        device.load(0, Array(bytes.prefix(256)))
        bus.attach(device, at: 0x76)
        poll { try make(bus) }
    }

    static func spi(_ bytes: [UInt8], _ make: (SPIDevice) throws -> PolledSensor) {
        var frames: [[UInt8]] = []
        var rest = bytes[...]
        while !rest.isEmpty {
            frames.append(Array(rest.prefix(4)))
            rest = rest.dropFirst(4)
        }
        poll { try make(SimulatedSPIDevice(frames: frames.isEmpty ? [[0, 0, 0, 0]] : frames)) }
    }

    static func poll(_ make: () throws -> PolledSensor) {
        guard let sensor = try? make() else { return }
        for _ in 0..<3 {
            _ = try? sensor.start()
            if let reading = try? sensor.read() { _ = reading.json }
        }
    }

    static func events(_ sensor: EventSensor) {
        _ = try? sensor.start()
        for _ in 0..<64 {
            guard let outcome = try? sensor.next(timeoutMs: 0) else { continue }
            if case .reading(let reading) = outcome { _ = reading.json }
        }
    }

    /// A slave that answers every request with the next slice of the input.
    final class Replies: SerialPeer {
        private var rest: ArraySlice<UInt8>
        init(_ bytes: [UInt8]) { rest = bytes[...] }
        func received(_ bytes: [UInt8]) -> [UInt8] {
            let n = Int(rest.first ?? 0) % 300
            let reply = Array(rest.dropFirst().prefix(n))
            rest = rest.dropFirst(n + 1)
            return reply
        }
        func spontaneous(elapsedMs: Int) -> [UInt8] { [] }
    }

    /// A talker whose stream is the input, handed out in chunks.
    final class Stream: SerialPeer {
        private var rest: ArraySlice<UInt8>
        init(_ bytes: [UInt8]) { rest = bytes[...] }
        func received(_ bytes: [UInt8]) -> [UInt8] { [] }
        func spontaneous(elapsedMs: Int) -> [UInt8] {
            let chunk = Array(rest.prefix(37))
            rest = rest.dropFirst(37)
            return chunk
        }
    }
}

enum BoardFuzz {
    static func run(_ data: UnsafeRawBufferPointer) {
        guard data.count <= 64 << 10 else { return }
        let text = String(decoding: data, as: UTF8.self)
        _ = try? Board.parse(text, file: "fuzz.yaml")
    }
}
