// Lines of delimiter-separated fields from an instrument on a serial line: a balance printing
// "ST,GS,+  123.45 g", a meter printing "12.34;0.56;V". Each field is named by the board file and
// parsed as a number (exactly, as printed; a unit after the number goes into <name>_unit as
// text), as text, or skipped. A line with another number of fields, a number field that is no
// number, or bytes that are not printable ASCII is rejected; the reader goes on with the next line.

import EdgelogHAL

public struct LineField: Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// A decimal number, kept with every digit printed; text after it is its unit.
        case number
        /// Text as sent (trimmed of blanks).
        case text
        /// Present in the line, not recorded.
        case skip
    }

    public var name: String
    public var kind: Kind

    public init(_ name: String, _ kind: Kind = .number) {
        self.name = name
        self.kind = kind
    }
}

public final class DelimitedLineReader: EventSensor {
    public let port: SerialPort
    public let delimiter: String
    public let fields: [LineField]
    public let maxLineLength: Int
    private var source: LineSource

    public var location: String { port.path }

    /// Settings: `delimiter` one to four printable characters ("," ";" "\t" too), or " " for runs of
    /// blanks; `fields` 1...64 of name (lower-case snake_case, unique) and type number, text or skip;
    /// `max_line` 8...1024 bytes (default 256).
    public init(port: SerialPort, delimiter: String = ",", fields: [LineField], maxLineLength: Int = 256) throws(HardwareError) {
        let d = Array(delimiter.utf8)
        guard (1...4).contains(d.count), d.allSatisfy({ (0x20...0x7E).contains($0) || $0 == 0x09 }) else {
            throw invalidSetting(port.path, nil, "delimiter must be 1...4 printable characters or a tab")
        }
        guard (1...64).contains(fields.count) else {
            throw invalidSetting(port.path, nil, "fields: 1...64 needed, \(fields.count) given")
        }
        var names = Set<String>()
        for field in fields {
            let valid = !field.name.isEmpty && field.name.utf8.count <= 64
                && field.name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }
            guard valid else { throw invalidSetting(port.path, nil, "field name \"\(field.name)\": use 1...64 characters a-z, 0-9, _") }
            guard names.insert(field.name).inserted, field.kind == .skip || !names.contains(field.name + "_unit") else {
                throw invalidSetting(port.path, nil, "field name \(field.name) given twice")
            }
        }
        for field in fields where field.kind == .number && names.contains(field.name + "_unit") {
            throw invalidSetting(port.path, nil, "field name \(field.name)_unit clashes with the unit of number field \(field.name)")
        }
        guard (8...1024).contains(maxLineLength) else {
            throw invalidSetting(port.path, nil, "max_line \(maxLineLength): must be 8...1024")
        }
        self.port = port
        self.delimiter = delimiter
        self.fields = fields
        self.maxLineLength = maxLineLength
        self.source = LineSource(port: port, maxLength: maxLineLength)
    }

    public func start() throws(HardwareError) {
        try source.start()
    }

    public func next(timeoutMs: Int) throws(HardwareError) -> EventOutcome? {
        try source.next(timeoutMs: timeoutMs) { line in [self.outcome(line)] }
    }

    func outcome(_ line: [UInt8]) -> EventOutcome {
        do {
            return .reading(try parse(line))
        } catch {
            return .rejected(error)
        }
    }

    /// One line (without its end) to a reading.
    public func parse(_ line: [UInt8]) throws(HardwareError) -> Reading {
        guard let text = printableTabbed(line) else {
            throw HardwareError(.badFrame, device: port.path, detail: "non-printable byte in the line")
        }
        let tokens: [Substring]
        if delimiter == " " {
            tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        } else {
            tokens = text.split(separator: delimiter, omittingEmptySubsequences: false)
        }
        guard tokens.count == fields.count else {
            throw HardwareError(.badFrame, device: port.path, detail: "\(tokens.count) fields in the line, \(fields.count) expected: \(text.prefix(40))")
        }
        var out: [(name: String, value: Value)] = []
        for (field, raw) in zip(fields, tokens) {
            let token = raw.trimmingBlanks
            switch field.kind {
            case .skip: continue
            case .text: out.append((field.name, .text(String(token))))
            case .number:
                let (number, unit) = token.splitNumber
                guard let parsed = ExactDecimal.parse(number) else {
                    throw HardwareError(.badFrame, device: port.path, register: "field \(field.name)", detail: "\"\(token.prefix(24))\" is not a number")
                }
                out.append((field.name, ExactDecimal.value(parsed)))
                if !unit.isEmpty { out.append((field.name + "_unit", .text(String(unit)))) }
            }
        }
        return Reading(out)
    }

    /// Printable ASCII and tabs (a tab may be the delimiter).
    private func printableTabbed(_ line: [UInt8]) -> String? {
        guard line.allSatisfy({ (0x20...0x7E).contains($0) || $0 == 0x09 }) else { return nil }
        return String(decoding: line, as: UTF8.self)
    }
}

extension Substring {
    var trimmingBlanks: Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }

    /// "+  123.45 g" to ("+  123.45", "g"): the number is the sign, blanks and digits/point prefix.
    var splitNumber: (number: Substring, unit: Substring) {
        var i = startIndex
        if i < endIndex, self[i] == "+" || self[i] == "-" {
            i = index(after: i)
            while i < endIndex, self[i] == " " { i = index(after: i) }
        }
        while i < endIndex, self[i].isASCII, self[i].isNumber || self[i] == "." { i = index(after: i) }
        return (self[startIndex..<i], self[i...].trimmingBlanks)
    }
}
