// The small pieces of JSON and hex text the commands print (--json output, identities).

import EdgelogCore

func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

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
