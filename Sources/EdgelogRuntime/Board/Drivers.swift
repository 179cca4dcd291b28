// The catalog entries: board-file keys of each driver and how it is built (docs/SENSORS.md).

import EdgelogHAL
import EdgelogIngress
import EdgelogLinux
import EdgelogSensors

public enum DriverCatalog {
    static let entries: [DriverEntry] = [bme280, sht3x, ads1115, mcp3008, max31855] + serialEntries + [gpioEdges, stdin]

    public static var names: [String] { entries.map(\.name) }
    static func driver(named name: String) -> DriverEntry? { entries.first { $0.name == name } }

    static func invalid(_ driver: String) -> HardwareError {
        HardwareError(.invalidArgument, device: "board", detail: "\(driver) is built over another kind of bus")
    }

    static func i2c(_ bus: BusHandle, _ driver: String) throws(HardwareError) -> I2CBus {
        guard case .i2c(let port) = bus.port else { throw invalid(driver) }
        return port
    }

    static func spi(_ bus: BusHandle, _ driver: String) throws(HardwareError) -> SPIDevice {
        guard case .spi(let port) = bus.port else { throw invalid(driver) }
        return port
    }

    static func serial(_ bus: BusHandle, _ driver: String) throws(HardwareError) -> SerialPort {
        guard case .serial(let port) = bus.port else { throw invalid(driver) }
        return port
    }

    static let bme280 = DriverEntry(
        name: "bme280", busKinds: [.i2c, .simI2C], polled: true,
        settingKeys: [("address", .integer(0...0x7F)), ("mode", .text), ("oversampling_t", .integer(0...16)), ("oversampling_p", .integer(0...16)),
                      ("oversampling_h", .integer(0...16)), ("filter", .integer(0...16)), ("standby_ms", .number), ("soft_reset", .flag),
                      ("status_polls", .integer(1...1000))],
        addressKey: "address", addressFormat: hexAddress, defaultAddress: 0x76
    ) { s, bus, name throws(HardwareError) in
        let port = try i2c(bus, name)
        guard let mode = BME280.Mode(rawValue: s.text("mode", "forced")) else {
            throw HardwareError(.invalidArgument, device: port.path, detail: "mode must be forced or normal")
        }
        let sensor = try BME280(bus: port, address: UInt8(clamping: s.integer("address", 0x76)), mode: mode,
                                temperatureOversampling: s.int("oversampling_t", 1), pressureOversampling: s.int("oversampling_p", 1),
                                humidityOversampling: s.int("oversampling_h", 1), filter: s.int("filter", 0), standbyMs: s.number("standby_ms", 1000),
                                softReset: s.flag("soft_reset", true), statusPolls: s.int("status_polls", 20), sleep: bus.sleep)
        return .polled(sensor, periodNs: 0)
    }

    static let sht3x = DriverEntry(
        name: "sht3x", busKinds: [.i2c, .simI2C], polled: true,
        settingKeys: [("address", .integer(0...0x7F)), ("repeatability", .text)],
        addressKey: "address", addressFormat: hexAddress, defaultAddress: 0x44
    ) { s, bus, name throws(HardwareError) in
        let port = try i2c(bus, name)
        guard let repeatability = SHT3x.Repeatability(rawValue: s.text("repeatability", "high")) else {
            throw HardwareError(.invalidArgument, device: port.path, detail: "repeatability must be high, medium or low")
        }
        return .polled(try SHT3x(bus: port, address: UInt8(clamping: s.integer("address", 0x44)), repeatability: repeatability, sleep: bus.sleep), periodNs: 0)
    }

    static let ads1115 = DriverEntry(
        name: "ads1115", busKinds: [.i2c, .simI2C], polled: true,
        settingKeys: [("address", .integer(0...0x7F)), ("input", .text), ("full_scale_v", .number), ("rate", .integer(1...1000))],
        addressKey: "address", addressFormat: hexAddress, defaultAddress: 0x48
    ) { s, bus, name throws(HardwareError) in
        let port = try i2c(bus, name)
        guard let input = ADS1115.Input(rawValue: s.text("input", "ain0")) else {
            throw HardwareError(.invalidArgument, device: port.path, detail: "input must be one of \(ADS1115.Input.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return .polled(try ADS1115(bus: port, address: UInt8(clamping: s.integer("address", 0x48)), input: input,
                                   fullScaleVolts: s.number("full_scale_v", 2.048), rate: s.int("rate", 128), sleep: bus.sleep), periodNs: 0)
    }

    static let mcp3008 = DriverEntry(
        name: "mcp3008", busKinds: [.spi, .simSPI], polled: true,
        settingKeys: [("channel", .integer(0...7)), ("input", .text), ("vref", .number)],
        addressKey: nil, addressFormat: hexAddress, required: ["channel", "vref"]
    ) { s, bus, name throws(HardwareError) in
        let device = try spi(bus, name)
        let input = s.text("input", "single")
        guard input == "single" || input == "differential" else {
            throw HardwareError(.invalidArgument, device: device.path, detail: "input must be single or differential")
        }
        return .polled(try MCP3008(device: device, channel: s.int("channel", 0), differential: input == "differential",
                                   vref: s.number("vref", 0)), periodNs: 0)
    }

    static let max31855 = DriverEntry(
        name: "max31855", busKinds: [.spi, .simSPI], polled: true,
        settingKeys: [], addressKey: nil, addressFormat: hexAddress
    ) { _, bus, name throws(HardwareError) in
        .polled(MAX31855(device: try spi(bus, name)), periodNs: 0)
    }

    static let gpioEdges = DriverEntry(
        name: "gpio_edges", busKinds: [], polled: false,
        settingKeys: [("chip", .text), ("line", .text), ("edges", .text)],
        addressKey: nil, addressFormat: hexAddress, required: ["chip", "line"]
    ) { s, _, _ throws(HardwareError) in
        let chip = s.text("chip", ""), line = s.text("line", "")
        guard let edges = GPIOEdgeSource.Edges(rawValue: s.text("edges", "rising")) else {
            throw HardwareError(.invalidArgument, device: chip, address: "line \(line)", detail: "edges must be rising, falling or both")
        }
        return .event(GPIOEdgeSource(location: "\(chip) line \(line)", edges: edges) { () throws(HardwareError) -> GPIOInput in
            try LinuxGPIOInput(chip: chip, line: line)
        })
    }

    /// JSON lines from standard input, as `ingest` reads them (at most one such source per board).
    static let stdin = DriverEntry(
        name: "stdin", busKinds: [], polled: false, settingKeys: [("max_line", .integer(2...(16 << 20)))],
        addressKey: nil, addressFormat: hexAddress
    ) { s, bus, _ throws(HardwareError) in
        .event(JSONLineSource(port: StandardInputPort(), maxLine: s.int("max_line", 1 << 20), sleep: bus.sleep))
    }
}
