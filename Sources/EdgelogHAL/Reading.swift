// What a driver returns for one sample: named values with their units in the name (docs/SENSORS.md),
// and a quality word when the sample is degraded. The ingress engine stamps, sequences and commits
// it as the data record's JSON object; this file writes that object without Foundation because it
// runs once per reading on the measured hot path.

public enum Value: Equatable, Sendable {
    /// `mantissa` × 10^-scale, printed exactly ("21.53" for 2153 at scale 2): integer compensation
    /// results keep every digit the datasheet formula gives.
    case fixed(Int64, scale: Int)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    /// Text a device sent (an NMEA field, a balance's unit). Written as JSON with every byte outside
    /// printable ASCII escaped, so no device can put a control character into a record.
    case text(String)
    /// The value could not be measured (a sensor fault): the quality word says why.
    case null
}

public struct Reading: Equatable, Sendable {
    public var fields: [(name: String, value: Value)]
    /// nil: good. Otherwise one word ("sensor_fault", "out_of_range", "saturated") and details.
    public var quality: String?
    /// Fault flags the sensor reported, in datasheet order ("open_circuit", "short_to_gnd").
    public var faults: [String]

    /// A payload that is already one checked JSON object (a JSON line from standard input): written
    /// as it came, byte for byte, in place of the fields.
    public var raw: [UInt8]?

    public init(_ fields: [(name: String, value: Value)] = [], quality: String? = nil, faults: [String] = []) {
        self.fields = fields
        self.quality = quality
        self.faults = faults
    }

    public init(rawJSONObject bytes: [UInt8]) {
        self.fields = []
        self.faults = []
        self.raw = bytes
    }

    public static func == (a: Reading, b: Reading) -> Bool {
        a.raw == b.raw && a.quality == b.quality && a.faults == b.faults && a.fields.count == b.fields.count
            && zip(a.fields, b.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public subscript(name: String) -> Value? {
        fields.first { $0.name == name }?.value
    }

    /// The record payload: one JSON object, fields in order, then "quality" and "faults" if set.
    public func json(into out: inout [UInt8]) {
        if let raw {
            out.append(contentsOf: raw)
            return
        }
        out.append(UInt8(ascii: "{"))
        var first = true
        func key(_ name: String) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONWriter.string(name, into: &out)
            out.append(UInt8(ascii: ":"))
        }
        for field in fields {
            key(field.name)
            JSONWriter.value(field.value, into: &out)
        }
        if let quality {
            key("quality")
            JSONWriter.string(quality, into: &out)
        }
        if !faults.isEmpty {
            key("faults")
            out.append(UInt8(ascii: "["))
            for (i, fault) in faults.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.string(fault, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(UInt8(ascii: "}"))
    }

    public var json: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32 + 24 * fields.count)
        json(into: &out)
        return out
    }
}

public enum JSONWriter {
    public static func value(_ value: Value, into out: inout [UInt8]) {
        switch value {
        case .fixed(let mantissa, let scale): fixed(mantissa, scale: scale, into: &out)
        case .int(let n): out.append(contentsOf: String(n).utf8)
        case .double(let d):
            // JSON has no NaN or infinity: a value that is not a number is not a measurement.
            if d.isFinite { out.append(contentsOf: String(d).utf8) } else { out.append(contentsOf: "null".utf8) }
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .text(let s): string(s, into: &out)
        case .null: out.append(contentsOf: "null".utf8)
        }
    }

    static func fixed(_ mantissa: Int64, scale: Int, into out: inout [UInt8]) {
        guard scale > 0 else {
            out.append(contentsOf: String(mantissa).utf8)
            return
        }
        let negative = mantissa < 0
        let magnitude = mantissa.magnitude
        var digits = Array(String(magnitude).utf8)
        if digits.count <= scale { digits.insert(contentsOf: repeatElement(UInt8(ascii: "0"), count: scale - digits.count + 1), at: 0) }
        if negative { out.append(UInt8(ascii: "-")) }
        out.append(contentsOf: digits[..<(digits.count - scale)])
        out.append(UInt8(ascii: "."))
        out.append(contentsOf: digits[(digits.count - scale)...])
    }

    /// A JSON string of printable ASCII: quote, backslash and every other byte escaped.
    public static func string(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x20...0x7E: out.append(byte)
            default:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
