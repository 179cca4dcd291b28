// Builds the small JSON objects the engine writes as evidence-record payloads (docs/FORMAT.md
// section 4): keys in a fixed order, no spaces, so the Swift and Python decoders print the same bytes.

public struct EvidenceJSON {
    public enum Value {
        case int(Int64)
        case uint(UInt64)
        case bool(Bool)
        case null
        /// Only engine-chosen words and source names: no character needs escaping.
        case word(String)
        case words([String])
        /// Text from a device or a board file (a path, an error's detail): escaped (Text.swift).
        case text(String)
    }

    private var text = "{"

    public init() {}

    public mutating func add(_ key: StaticString, _ value: Value) {
        if text.utf8.count > 1 { text += "," }
        text += "\"\(key)\":"
        switch value {
        case .int(let v): text += String(v)
        case .uint(let v): text += String(v)
        case .bool(let v): text += v ? "true" : "false"
        case .null: text += "null"
        case .word(let w): text += "\"\(w)\""
        case .words(let ws): text += "[" + ws.map { "\"\($0)\"" }.joined(separator: ",") + "]"
        case .text(let t): text += "\"" + jsonEscaped(t) + "\""
        }
    }

    public mutating func add(_ key: StaticString, int value: Int64?) {
        add(key, value.map { .int($0) } ?? .null)
    }

    public mutating func add(_ key: StaticString, text value: String?) {
        add(key, value.map { .text($0) } ?? .null)
    }

    public mutating func add(_ key: StaticString, _ value: UInt64?) {
        add(key, value.map { .uint($0) } ?? .null)
    }

    public var bytes: [UInt8] { Array((text + "}").utf8) }
}
