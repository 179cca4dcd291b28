// The small pieces of JSON and hex text the commands print (--json output, identities).

import EdgelogCore

func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

/// Escapes a string for a JSON string literal (paths and record payloads may hold anything):
/// everything outside printable ASCII as `\uXXXX`, so no reader splits a line on U+2028 and no
/// bidirectional control reorders what a terminal shows.
func jsonEscaped(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || scalar.value >= 0x7F:
            // UTF-16 code units, as JSON escapes them (a pair for scalars beyond the BMP).
            for unit in String(scalar).utf16 {
                let hex = String(unit, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// Text for a terminal: every byte outside printable ASCII (0x20 to 0x7E) as `\xNN`, so bytes from
/// a card (escape sequences, carriage returns, newlines) cannot move the cursor or fake a line.
func terminalSafe(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        if byte >= 0x20 && byte <= 0x7E {
            out.unicodeScalars.append(Unicode.Scalar(byte))
        } else {
            out += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }
    }
    return out
}

/// A JSON object built key by key, in order.
struct JSONObject {
    enum Value { case int(Int64), uint(UInt64), bool(Bool), string(String), null, raw(String) }
    private var parts: [String] = []
    mutating func add(_ key: String, _ value: Value) {
        let v: String
        switch value {
        case .int(let n): v = String(n)
        case .uint(let n): v = String(n)
        case .bool(let b): v = b ? "true" : "false"
        case .string(let s): v = "\"\(jsonEscaped(s))\""
        case .null: v = "null"
        case .raw(let r): v = r
        }
        parts.append("\"\(key)\":\(v)")
    }
    var text: String { "{" + parts.joined(separator: ",") + "}" }
}
