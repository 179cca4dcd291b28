// Catalog entries of the serial drivers: the Modbus RTU master's sensors (one master per line, its
// slaves polled in turn by the line's one owner thread) and the line readers for instruments that
// print (NMEA 0183, delimiter-separated lines).

import EdgelogHAL
import EdgelogIngress
import EdgelogSensors

extension DriverCatalog {
    static let serialEntries: [DriverEntry] = [modbus, nmea, lines]

    static let modbus = DriverEntry(
        name: "modbus", busKinds: [.serial, .simSerial], polled: true,
        settingKeys: [("slave", .integer(1...247)), ("function", .integer(3...4)), ("register", .integer(0...65_535)),
                      ("count", .integer(1...125)), ("fields", .mappings(["name", "offset", "type", "scale"]))],
        addressKey: "slave", addressFormat: { "slave \($0)" }, required: ["slave", "function", "register", "count"]
    ) { s, bus, name throws(HardwareError) in
        let port = try serial(bus, name)
        let master = try bus.shared("modbus") { () throws(HardwareError) -> ModbusMaster in
            try ModbusMaster(port: port, responseTimeoutMs: bus.options["response_timeout_ms"] ?? 1000,
                             interCharacterTimeoutMs: bus.options["inter_character_timeout_ms"], retries: bus.options["retries"] ?? 1, sleep: bus.sleep)
        }
        var fields: [ModbusField] = []
        for (i, entry) in (s.mappings("fields") ?? []).enumerated() {
            guard let fieldName = entry["name"], let offset = entry["offset"].flatMap({ Int($0) }), (0...124).contains(offset) else {
                throw HardwareError(.invalidArgument, device: port.path, detail: "fields[\(i)] needs a name and an offset 0...124")
            }
            guard let kind = ModbusField.Kind(rawValue: entry["type"] ?? "u16") else {
                throw HardwareError(.invalidArgument, device: port.path, detail: "fields[\(i)].type must be one of \(ModbusField.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard let scale = Int(entry["scale"] ?? "0") else {
                throw HardwareError(.invalidArgument, device: port.path, detail: "fields[\(i)].scale must be a whole number 0...9")
            }
            fields.append(ModbusField(name: fieldName, offset: offset, kind: kind, scale: scale))
        }
        return .polled(try ModbusSensor(master: master, slave: s.int("slave", 0), function: s.int("function", 3), register: s.int("register", 0),
                                        count: s.int("count", 1), fields: fields), periodNs: 0)
    }

    static let nmea = DriverEntry(
        name: "nmea", busKinds: [.serial, .simSerial], polled: false,
        settingKeys: [("require_checksum", .flag)], addressKey: nil, addressFormat: hexAddress
    ) { s, bus, name throws(HardwareError) in
        .event(NMEAReader(port: try serial(bus, name), requireChecksum: s.flag("require_checksum", true)))
    }

    static let lines = DriverEntry(
        name: "lines", busKinds: [.serial, .simSerial], polled: false,
        settingKeys: [("delimiter", .text), ("fields", .mappings(["name", "type"])), ("max_line", .integer(8...1024))],
        addressKey: nil, addressFormat: hexAddress, required: ["fields"]
    ) { s, bus, name throws(HardwareError) in
        let port = try serial(bus, name)
        var fields: [LineField] = []
        for (i, entry) in (s.mappings("fields") ?? []).enumerated() {
            guard let fieldName = entry["name"], let kind = LineField.Kind(rawValue: entry["type"] ?? "number") else {
                throw HardwareError(.invalidArgument, device: port.path, detail: "fields[\(i)] needs a name and a type of number, text or skip")
            }
            fields.append(LineField(fieldName, kind))
        }
        return .event(try DelimitedLineReader(port: port, delimiter: s.text("delimiter", ","), fields: fields, maxLineLength: s.int("max_line", 256)))
    }
}
