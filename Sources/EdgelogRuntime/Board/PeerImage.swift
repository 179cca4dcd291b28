// The far end of a simulated serial line (a sim-serial bus's `peer` file, docs/BOARDS.md): Modbus
// slaves answering from register tables, or an instrument printing lines. Byte-level simulation:
// the Modbus master and the line readers under it are the real drivers.

import EdgelogHAL
import EdgelogSensors

enum SimulatedPeers {
    static func load(_ path: String) throws(BoardError) -> SerialPeer {
        var fields = try YAMLFields.load(path, what: "serial peer file")
        defer { _ = fields }
        if let slaves = try fields.sequence("modbus_slaves") {
            var peers: [SerialPeer] = []
            for (i, node) in slaves.enumerated() {
                var slave = try YAMLFields(node, file: path, path: "modbus_slaves[\(i)]")
                let id = try slave.requiredInteger("slave", in: 1...247)
                let holding = try registerTable(&slave, "holding")
                let input = try registerTable(&slave, "input")
                let simulator = ModbusSlaveSimulator(slave: UInt8(id), holding: holding, input: input)
                if let behavior = try slave.string("behavior") {
                    guard let parsed = Self.behavior(behavior) else {
                        throw slave.fail("behavior", "one of normal, silent, garbage, truncated, wrong_crc, exception N, wrong_slave N")
                    }
                    simulator.behavior = parsed
                }
                try slave.rejectUnknown(known: ["slave", "holding", "input", "behavior"])
                peers.append(simulator)
            }
            try fields.rejectUnknown(known: ["modbus_slaves"])
            return MultidropLine(peers)
        }
        if var talker = try fields.mapping("lines") {
            let text = try talker.stringList("text") ?? []
            guard !text.isEmpty else { throw BoardError(file: path, line: talker.line, key: "lines.text", why: "missing: the lines to print") }
            let interval = try talker.integer("interval_ms", in: 1...3_600_000) ?? 1000
            let corrupt = try talker.integer("corrupt_every", in: 2...1_000_000)
            try talker.rejectUnknown(known: ["text", "interval_ms", "corrupt_every"])
            try fields.rejectUnknown(known: ["lines"])
            return LineTalkerSimulator(lines: text, intervalMs: Int(interval), repeats: true, corruptEvery: corrupt.map { Int($0) })
        }
        throw BoardError(file: path, line: fields.line, key: nil, why: "a serial peer file holds modbus_slaves or lines")
    }

    static func registerTable(_ fields: inout YAMLFields, _ key: String) throws(BoardError) -> [UInt16: UInt16] {
        guard var table = try fields.mapping(key) else { return [:] }
        var out: [UInt16: UInt16] = [:]
        for name in table.allKeys {
            guard let register = YAMLFields.parseInteger(name), (0...65_535).contains(register) else { throw table.fail(name, "a register is 0 ... 65535") }
            guard let value = try table.integer(name, in: 0...65_535) else { continue }
            out[UInt16(register)] = UInt16(value)
        }
        return out
    }

    static func behavior(_ text: String) -> ModbusSlaveSimulator.Behavior? {
        let parts = text.split(separator: " ")
        switch (parts.first, parts.count) {
        case ("normal", 1): return .normal
        case ("silent", 1): return .silent
        case ("garbage", 1): return .garbage
        case ("truncated", 1): return .truncated
        case ("wrong_crc", 1): return .wrongCRC
        case ("exception", 2): return UInt8(parts[1]).map { .exception($0) }
        case ("wrong_slave", 2): return UInt8(parts[1]).map { .wrongSlave($0) }
        default: return nil
        }
    }
}
