// The drivers a board file can name, with the settings each takes (docs/SENSORS.md) and how each
// is built over an opened bus. Adding a driver is one entry here and one file in EdgelogSensors;
// the scheduler does not change.

import EdgelogHAL
import EdgelogIngress
import EdgelogSensors

/// A driver's settings from the board file, typed by its catalog entry and not yet checked against
/// the driver's own rules (the driver's initializer checks those, at `board check` and at start).
public struct DriverSettings: Sendable {
    public enum Value: Sendable, Equatable {
        case integer(Int64)
        case number(Double)
        case text(String)
        case flag(Bool)
        case texts([String])
        case integers([Int64])
        /// A list of small mappings of scalars (Modbus fields, line fields), with their line.
        case mappings([[String: String]])
    }

    public var values: [String: Value] = [:]
    /// "0x76" or "slave 3": two sensors with the same on one bus are a board error.
    public var busAddress: String?

    func integer(_ key: String, _ fallback: Int64) -> Int64 { if case .integer(let v)? = values[key] { v } else { fallback } }
    func int(_ key: String, _ fallback: Int) -> Int { Int(integer(key, Int64(fallback))) }
    func number(_ key: String, _ fallback: Double) -> Double {
        switch values[key] {
        case .number(let v)?: v
        case .integer(let v)?: Double(v)
        default: fallback
        }
    }
    func text(_ key: String, _ fallback: String) -> String { if case .text(let v)? = values[key] { v } else { fallback } }
    func optionalText(_ key: String) -> String? { if case .text(let v)? = values[key] { v } else { nil } }
    func flag(_ key: String, _ fallback: Bool) -> Bool { if case .flag(let v)? = values[key] { v } else { fallback } }
    func texts(_ key: String) -> [String]? { if case .texts(let v)? = values[key] { v } else { nil } }
    func integers(_ key: String) -> [Int64]? { if case .integers(let v)? = values[key] { v } else { nil } }
    func mappings(_ key: String) -> [[String: String]]? { if case .mappings(let v)? = values[key] { v } else { nil } }
}

/// What a driver is built over: the opened bus, and objects shared by the sensors of one bus
/// (the Modbus master that owns a serial line).
public final class BusHandle: @unchecked Sendable {
    public enum Port {
        case i2c(I2CBus)
        case spi(SPIDevice)
        case serial(SerialPort)
        case none
    }

    public let port: Port
    public let sleep: SleepMilliseconds
    /// Settings of the bus itself that a driver's shared object uses (a Modbus line's timeouts).
    public let options: [String: Int]
    private var shared: [String: AnyObject] = [:]

    public init(port: Port, sleep: @escaping SleepMilliseconds, options: [String: Int] = [:]) {
        self.port = port
        self.sleep = sleep
        self.options = options
    }

    /// The object of `key` for this bus, made once.
    public func shared<T: AnyObject>(_ key: String, _ make: () throws(HardwareError) -> T) throws(HardwareError) -> T {
        if let existing = shared[key] as? T { return existing }
        let made = try make()
        shared[key] = made
        return made
    }
}

struct DriverEntry: Sendable {
    enum Kind: Sendable {
        case integer(ClosedRange<Int64>)
        case number
        case text
        case flag
        case texts
        case integers
        /// A list of mappings with these keys (each scalar).
        case mappings([String])
    }

    let name: String
    let busKinds: [Board.BusKind]
    let polled: Bool
    let settingKeys: [(String, Kind)]
    /// The setting that names the device on its bus (address, slave), for duplicate detection.
    let addressKey: String?
    let addressFormat: @Sendable (Int64) -> String
    /// The address a device has when the board file gives none (the driver's default).
    var defaultAddress: Int64? = nil
    /// Settings without a sensible default.
    var required: [String] = []
    let make: @Sendable (DriverSettings, BusHandle, String) throws(HardwareError) -> SourceSpec.Kind

    var needsBus: Bool { !busKinds.isEmpty }
    var keys: [String] { settingKeys.map(\.0) }

    func settings(_ fields: inout YAMLFields) throws(BoardError) -> DriverSettings {
        var out = DriverSettings()
        for (key, kind) in settingKeys {
            switch kind {
            case .integer(let range): if let v = try fields.integer(key, in: range) { out.values[key] = .integer(v) }
            case .number: if let v = try fields.number(key) { out.values[key] = .number(v) }
            case .text: if let v = try fields.string(key) { out.values[key] = .text(v) }
            case .flag: if let v = try fields.bool(key) { out.values[key] = .flag(v) }
            case .texts: if let v = try fields.stringList(key) { out.values[key] = .texts(v) }
            case .integers:
                if let items = try fields.sequence(key) {
                    var numbers: [Int64] = []
                    for item in items {
                        guard let text = item.scalar?.string, let n = YAMLFields.parseInteger(text) else { throw fields.fail(key, "expected a list of whole numbers") }
                        numbers.append(n)
                    }
                    out.values[key] = .integers(numbers)
                }
            case .mappings(let allowed):
                if let items = try fields.sequence(key) {
                    var list: [[String: String]] = []
                    for (i, item) in items.enumerated() {
                        var entry = try YAMLFields(item, file: fields.file, path: YAMLFields.join(fields.path, "\(key)[\(i)]"))
                        var values: [String: String] = [:]
                        for name in allowed { if let v = try entry.string(name) { values[name] = v } }
                        try entry.rejectUnknown(known: allowed)
                        list.append(values)
                    }
                    out.values[key] = .mappings(list)
                }
            }
        }
        for key in required where out.values[key] == nil {
            throw BoardError(file: fields.file, line: fields.line, key: YAMLFields.join(fields.path, key), why: "missing (required by \(name))")
        }
        if let addressKey, out.values[addressKey] == nil, let defaultAddress { out.values[addressKey] = .integer(defaultAddress) }
        if let addressKey, case .integer(let a)? = out.values[addressKey] { out.busAddress = addressFormat(a) }
        return out
    }
}

func hexAddress(_ a: Int64) -> String { UInt8(clamping: a).hex }
