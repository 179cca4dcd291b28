// A strict reader for the flat JSON objects edgelog itself writes (key.json, the signed head,
// key_rotation payloads): strings, integers, booleans and null, no nesting, no duplicate keys.
// Anything else is refused: these files are input an attacker may have shaped.

public enum FlatJSON {
    public enum Value: Equatable, Sendable {
        case string(String)
        case integer(UInt64)
        case bool(Bool)
        case null
    }

    public struct Problem: Error, Equatable, CustomStringConvertible, Sendable {
        public let offset: Int
        public let why: String
        public var description: String { "\(why) at byte \(offset)" }
    }

    /// The object's members in order.
    public static func parse(_ bytes: [UInt8]) throws(Problem) -> [(key: String, value: Value)] {
        var i = 0
        func fail(_ why: String) -> Problem { Problem(offset: i, why: why) }
        func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }
        func expect(_ c: UInt8) throws(Problem) {
            skipSpace()
            guard i < bytes.count, bytes[i] == c else { throw fail("expected '\(Character(Unicode.Scalar(c)))'") }
            i += 1
        }
        func string() throws(Problem) -> String {
            try expect(UInt8(ascii: "\""))
            var out: [UInt8] = []
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                // edgelog writes no escapes and no control characters in these files.
                guard bytes[i] >= 0x20, bytes[i] != UInt8(ascii: "\\") else { throw fail("escape or control character in a string") }
                out.append(bytes[i])
                i += 1
            }
            guard i < bytes.count else { throw fail("unterminated string") }
            i += 1
            return String(decoding: out, as: UTF8.self)
        }
        try expect(UInt8(ascii: "{"))
        var members: [(key: String, value: Value)] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
            i += 1
        } else {
            while true {
                let key = try string()
                guard !members.contains(where: { $0.key == key }) else { throw fail("duplicate key \(key)") }
                try expect(UInt8(ascii: ":"))
                skipSpace()
                guard i < bytes.count else { throw fail("missing value") }
                let value: Value
                switch bytes[i] {
                case UInt8(ascii: "\""): value = .string(try string())
                case UInt8(ascii: "0")...UInt8(ascii: "9"):
                    var n: UInt64 = 0
                    let start = i
                    while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") {
                        let (m, o1) = n.multipliedReportingOverflow(by: 10)
                        let (a, o2) = m.addingReportingOverflow(UInt64(bytes[i] - UInt8(ascii: "0")))
                        guard !o1, !o2 else { throw fail("integer out of range") }
                        n = a
                        i += 1
                    }
                    guard i - start == 1 || bytes[start] != UInt8(ascii: "0") else { throw fail("leading zero") }
                    value = .integer(n)
                default:
                    if bytes[i...].starts(with: Array("true".utf8)) { value = .bool(true); i += 4 }
                    else if bytes[i...].starts(with: Array("false".utf8)) { value = .bool(false); i += 5 }
                    else if bytes[i...].starts(with: Array("null".utf8)) { value = .null; i += 4 }
                    else { throw fail("unsupported value") }
                }
                members.append((key, value))
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; break }
                throw fail("expected ',' or '}'")
            }
        }
        skipSpace()
        guard i == bytes.count else { throw fail("trailing bytes") }
        return members
    }
}

extension Array where Element == (key: String, value: FlatJSON.Value) {
    func string(_ key: String) -> String? {
        if case .string(let s)? = first(where: { $0.key == key })?.value { return s }
        return nil
    }

    func integer(_ key: String) -> UInt64? {
        if case .integer(let n)? = first(where: { $0.key == key })?.value { return n }
        return nil
    }
}
