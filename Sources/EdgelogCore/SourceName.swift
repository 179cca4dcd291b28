// Source names identify who produced a record. They are short and restricted to characters that
// need no escaping in JSON, CSV or a shell, so every export format prints them verbatim.

public enum SourceName {
    public static let maxLength = 39
    /// The engine's own evidence records (gap, drop, incomplete, recovery) use this source.
    public static let engine = "edgelog"
    /// The time path's records (boot, clock_step, time_state), written as the writer captures.
    public static let time = "edgelog.time"

    public enum Problem: Error, Equatable, CustomStringConvertible {
        case empty
        case tooLong(Int)
        case badCharacter(offset: Int)
        case reserved(String)

        public var description: String {
            switch self {
            case .empty: "source name is empty"
            case .tooLong(let n): "source name is \(n) bytes long; at most \(SourceName.maxLength) are allowed"
            case .badCharacter(let offset):
                offset == 0 ? "source name must start with a letter or a digit (A-Z a-z 0-9)"
                    : "source name has a character other than A-Z a-z 0-9 . _ - at byte \(offset)"
            case .reserved(let name): "source name '\(name)' is reserved for the engine's own records"
            }
        }
    }

    public static func validate(_ name: String, allowEngine: Bool = false) throws(Problem) {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { throw .empty }
        if bytes.count > maxLength { throw .tooLong(bytes.count) }
        for (i, b) in bytes.enumerated() where !isAllowed(b) || (i == 0 && !isAlphanumeric(b)) { throw .badCharacter(offset: i) }
        if !allowEngine && name == engine { throw .reserved(name) }
    }

    /// A stored name: 1...maxLength allowed characters, the first a letter or digit (a leading
    /// `-`, `+`, `=` or `@` would make a spreadsheet run the cell as a formula).
    public static func isValid(_ name: UnsafeRawBufferPointer) -> Bool {
        guard let first = name.first, name.count <= maxLength, isAlphanumeric(first) else { return false }
        return name.allSatisfy(isAllowed)
    }

    @inline(__always)
    public static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }

    @inline(__always)
    public static func isAllowed(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            || b == 0x2E || b == 0x5F || b == 0x2D
    }
}
