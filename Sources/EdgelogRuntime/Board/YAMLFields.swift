// Reading a YAML mapping as settings: Yams parses the document and keeps every node's line; this
// file only looks values up by key, checks their kind and range, and remembers which keys were used,
// so that an unknown (misspelt) key is an error naming its line instead of a setting silently ignored.

import EdgelogLinux
import Yams

struct YAMLFields {
    let file: String
    let path: String
    let line: Int
    private var entries: [(key: String, keyLine: Int, value: Node)] = []
    private var used: Set<String> = []

    /// The fields of `node`, which must be a mapping with distinct string keys.
    init(_ node: Node, file: String, path: String) throws(BoardError) {
        self.file = file
        self.path = path
        self.line = node.mark?.line ?? 0
        guard let mapping = node.mapping else {
            throw BoardError(file: file, line: line, key: path.isEmpty ? nil : path, why: "expected a mapping of `key: value` lines")
        }
        var seen = Set<String>()
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                throw BoardError(file: file, line: key.mark?.line ?? line, key: path.isEmpty ? nil : path, why: "a key must be a plain name")
            }
            if !seen.insert(name).inserted {
                throw BoardError(file: file, line: key.mark?.line ?? line, key: Self.join(path, name), why: "given twice")
            }
            entries.append((name, key.mark?.line ?? line, value))
        }
    }

    /// The top-level mapping of the YAML file at `path` (a device image, a peer file, the settings
    /// file); `what` names it in errors.
    static func load(_ path: String, what: String) throws(BoardError) -> YAMLFields {
        let bytes: [UInt8]
        do { bytes = try LocalFile.read(path, limit: 1 << 20).bytes } catch {
            throw BoardError(file: path, line: 0, key: nil, why: "cannot read the \(what): \(error)")
        }
        do {
            guard let node = try Yams.compose(yaml: String(decoding: bytes, as: UTF8.self)) else {
                throw BoardError(file: path, line: 0, key: nil, why: "the \(what) is empty")
            }
            return try YAMLFields(node, file: path, path: "")
        } catch let error as BoardError {
            throw error
        } catch let error as YamlError {
            throw BoardError(file: path, line: Board.line(of: error), key: nil, why: "not valid YAML: \(Board.summary(of: error))")
        } catch {
            throw BoardError(file: path, line: 0, key: nil, why: "not valid YAML: \(error)")
        }
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : path + "." + key }

    func fail(_ key: String, _ why: String) -> BoardError {
        let line = entries.first { $0.key == key }.map { $0.value.mark?.line ?? $0.keyLine } ?? self.line
        return BoardError(file: file, line: line, key: Self.join(path, key), why: why)
    }

    var allKeys: [String] { entries.map(\.key) }

    func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    mutating func node(_ key: String) -> Node? {
        guard let entry = entries.first(where: { $0.key == key }) else { return nil }
        used.insert(key)
        return entry.value
    }

    func lineOf(_ key: String) -> Int { entries.first { $0.key == key }.map { $0.value.mark?.line ?? $0.keyLine } ?? line }

    /// Every key not read is an error: the first one, by line.
    func rejectUnknown(known: [String]) throws(BoardError) {
        for entry in entries where !used.contains(entry.key) {
            let hint = known.isEmpty ? "" : " (known here: \(known.joined(separator: ", ")))"
            throw BoardError(file: file, line: entry.keyLine, key: Self.join(path, entry.key), why: "unknown key\(hint)")
        }
    }

    mutating func string(_ key: String) throws(BoardError) -> String? {
        guard let node = node(key) else { return nil }
        guard let text = node.scalar?.string, !text.isEmpty else { throw fail(key, "expected text") }
        return text
    }

    mutating func requiredString(_ key: String) throws(BoardError) -> String {
        guard let text = try string(key) else { throw BoardError(file: file, line: line, key: Self.join(path, key), why: "missing (required here)") }
        return text
    }

    /// A whole number, decimal or 0x-hex, within `range`.
    mutating func integer(_ key: String, in range: ClosedRange<Int64>) throws(BoardError) -> Int64? {
        guard let node = node(key) else { return nil }
        guard let text = node.scalar?.string, let value = Self.parseInteger(text) else {
            throw fail(key, "expected a whole number (decimal, or hex as 0x..)")
        }
        guard range.contains(value) else { throw fail(key, "\(text) is outside \(range.lowerBound)...\(range.upperBound)") }
        return value
    }

    mutating func requiredInteger(_ key: String, in range: ClosedRange<Int64>) throws(BoardError) -> Int64 {
        guard let value = try integer(key, in: range) else {
            throw BoardError(file: file, line: line, key: Self.join(path, key), why: "missing (required here)")
        }
        return value
    }

    mutating func number(_ key: String) throws(BoardError) -> Double? {
        guard let node = node(key) else { return nil }
        guard let text = node.scalar?.string, let value = Double(text), value.isFinite else { throw fail(key, "expected a number") }
        return value
    }

    mutating func bool(_ key: String) throws(BoardError) -> Bool? {
        guard let node = node(key) else { return nil }
        switch node.scalar?.string {
        case "true": return true
        case "false": return false
        default: throw fail(key, "expected true or false")
        }
    }

    /// A size in bytes: a number, or with K, M or G (powers of 1024).
    mutating func size(_ key: String) throws(BoardError) -> UInt64? {
        guard let node = node(key) else { return nil }
        guard let text = node.scalar?.string, let value = Self.parseSize(text) else { throw fail(key, "expected a size: bytes, or a number with K, M or G") }
        return value
    }

    mutating func choice(_ key: String, _ options: [String]) throws(BoardError) -> String? {
        guard let text = try string(key) else { return nil }
        guard options.contains(text) else { throw fail(key, "\(text) is not one of \(options.joined(separator: ", "))") }
        return text
    }

    mutating func sequence(_ key: String) throws(BoardError) -> [Node]? {
        guard let node = node(key) else { return nil }
        guard let items = node.sequence else { throw fail(key, "expected a list (lines starting with `- `)") }
        return Array(items)
    }

    mutating func mapping(_ key: String) throws(BoardError) -> YAMLFields? {
        guard let node = node(key) else { return nil }
        return try YAMLFields(node, file: file, path: Self.join(path, key))
    }

    mutating func stringList(_ key: String) throws(BoardError) -> [String]? {
        guard let items = try sequence(key) else { return nil }
        var out: [String] = []
        for item in items {
            guard let text = item.scalar?.string else { throw fail(key, "expected a list of names") }
            out.append(text)
        }
        return out
    }

    static func parseInteger(_ text: String) -> Int64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return Int64(text.dropFirst(2), radix: 16) }
        if text.hasPrefix("-0x") { return Int64(text.dropFirst(3), radix: 16).map { -$0 } }
        return Int64(text)
    }

    static func parseSize(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        var digits = Substring(text)
        var unit: UInt64 = 1
        if let last = text.last?.uppercased().first, let scale = units[last] {
            unit = scale
            digits = digits.dropLast()
        }
        guard let n = UInt64(digits) else { return nil }
        let (value, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : value
    }
}
