// One register block of one Modbus slave, read through the line's shared ModbusMaster.
// Payload: without field definitions, one field per register named reg_<address> (the 0-based PDU
// address in decimal) holding the unsigned 16-bit value. With field definitions, each field takes
// one register (u16, s16) or two (u32, s32 with the high word first, the common order; u32_lw,
// s32_lw with the low word first) at an offset within the block, and an optional decimal scale:
// the value is raw × 10^-scale, exact (a meter register in 0.1 V with scale 1 prints 230.4).

import EdgelogHAL

public struct ModbusField: Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case u16, s16, u32, s32
        case u32LowWordFirst = "u32_lw", s32LowWordFirst = "s32_lw"

        public var registers: Int { self == .u16 || self == .s16 ? 1 : 2 }
    }

    public var name: String
    /// Register offset within the block (0 is `register`).
    public var offset: Int
    public var kind: Kind
    /// Decimal places: the value is raw × 10^-scale. 0...9.
    public var scale: Int

    public init(name: String, offset: Int, kind: Kind = .u16, scale: Int = 0) {
        self.name = name
        self.offset = offset
        self.kind = kind
        self.scale = scale
    }

    func value(_ registers: [UInt16]) -> Value {
        let raw: Int64
        switch kind {
        case .u16: raw = Int64(registers[offset])
        case .s16: raw = Int64(Int16(bitPattern: registers[offset]))
        case .u32, .s32, .u32LowWordFirst, .s32LowWordFirst:
            let lowFirst = kind == .u32LowWordFirst || kind == .s32LowWordFirst
            let high = registers[offset + (lowFirst ? 1 : 0)], low = registers[offset + (lowFirst ? 0 : 1)]
            let word = UInt32(high) << 16 | UInt32(low)
            raw = kind == .u32 || kind == .u32LowWordFirst ? Int64(word) : Int64(Int32(bitPattern: word))
        }
        return scale == 0 ? .int(raw) : .fixed(raw, scale: scale)
    }
}

public final class ModbusSensor: PolledSensor {
    public let master: ModbusMaster
    public let slave: UInt8
    public let function: ModbusFunction
    public let register: UInt16
    public let count: Int
    public let fields: [ModbusField]

    public var location: String { "\(master.port.path) slave \(slave)" }

    /// Settings: `slave` 1...247; `function` 3 (holding registers) or 4 (input registers);
    /// `register` the first register's 0-based PDU address 0...65535 (register 40001 of the 4xxxx
    /// convention is 0); `count` 1...125 registers, within 0...65535; `fields` optional
    /// (name, offset, type u16/s16/u32/s32/u32_lw/s32_lw, scale 0...9), names unique, lower-case
    /// snake_case, each inside the block.
    public init(master: ModbusMaster, slave: Int, function: Int, register: Int, count: Int, fields: [ModbusField] = []) throws(HardwareError) {
        let device = master.port.path
        guard (1...247).contains(slave) else {
            throw invalidSetting(device, "slave \(slave)", "slave id \(slave): must be 1...247")
        }
        let place = "slave \(slave)"
        guard let fn = ModbusFunction(rawValue: UInt8(truncatingIfNeeded: function)), (3...4).contains(function) else {
            throw invalidSetting(device, place, "function \(function): must be 3 (holding registers) or 4 (input registers)")
        }
        guard (0...0xFFFF).contains(register) else {
            throw invalidSetting(device, place, "register \(register): must be 0...65535 (the 0-based PDU address)")
        }
        guard (1...125).contains(count), register + count <= 0x10000 else {
            throw invalidSetting(device, place, "count \(count): must be 1...125 and end at or below register 65535")
        }
        var names = Set<String>()
        for field in fields {
            let valid = !field.name.isEmpty && field.name.utf8.count <= 64
                && field.name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }
            guard valid else {
                throw invalidSetting(device, place, "field name \"\(field.name)\": use 1...64 characters a-z, 0-9, _")
            }
            guard names.insert(field.name).inserted else {
                throw invalidSetting(device, place, "field name \(field.name) given twice")
            }
            guard field.offset >= 0, field.offset <= count - field.kind.registers else {
                throw invalidSetting(device, place, "field \(field.name) at offset \(field.offset) (\(field.kind.rawValue)) is outside the \(count) registers read")
            }
            guard (0...9).contains(field.scale) else {
                throw invalidSetting(device, place, "field \(field.name) scale \(field.scale): must be 0...9")
            }
        }
        self.master = master
        self.slave = UInt8(slave)
        self.function = fn
        self.register = UInt16(register)
        self.count = count
        self.fields = fields
    }

    /// Nothing to configure; the first read shows whether the slave answers.
    public func start() throws(HardwareError) {}

    public func read() throws(HardwareError) -> Reading {
        let registers = try master.readRegisters(slave: slave, function: function, start: register, count: count)
        return reading(registers)
    }

    public func reading(_ registers: [UInt16]) -> Reading {
        guard registers.count == count else { return Reading(quality: "bad_frame") }
        if fields.isEmpty {
            return Reading(registers.enumerated().map { i, value in ("reg_\(Int(register) + i)", .int(Int64(value))) })
        }
        return Reading(fields.map { ($0.name, $0.value(registers)) })
    }
}
