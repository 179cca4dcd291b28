// Checks that a line of input is exactly one JSON object (RFC 8259), without building it.
// ingest stores the object's bytes as they came, so all it needs is a yes, or a no with the
// byte offset and the reason a person can act on. Nesting is bounded so hostile input cannot
// exhaust the stack.

public struct JSONProblem: Error, Equatable, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    public var description: String { "byte \(offset + 1): \(reason)" }
}

public enum JSONObjectValidator {
    public static let maxDepth = 64

    /// Validates `bytes` as one JSON object with optional surrounding white space.
    /// Returns the range of the object itself (without the surrounding white space).
    public static func validate(_ bytes: UnsafeRawBufferPointer) throws(JSONProblem) -> Range<Int> {
        var p = Parser(bytes: bytes)
        p.skipSpace()
        let start = p.i
        guard p.peek() == UInt8(ascii: "{") else {
            throw p.problem(p.atEnd ? "empty line: expected a JSON object" : "expected a JSON object starting with '{'")
        }
        try p.value(depth: 0)
        let end = p.i
        p.skipSpace()
        guard p.atEnd else { throw p.problem("unexpected text after the JSON object") }
        return start..<end
    }

    /// The offset of the first control character in `bytes`, or nil: a byte below 0x20 or 0x7F, a
    /// C1 control (UTF-8 `C2 80`..`C2 9F`), the line and paragraph separators U+2028 and U+2029
    /// (some JSON-lines readers split on them), or a bidirectional control (U+061C, U+200E, U+200F,
    /// U+202A..U+202E, U+2066..U+2069: they make text display in another order than it is stored).
    /// A stored payload has none (FORMAT.md 7, printable payload): white space between tokens is
    /// spaces only, so no payload can split an export line, move a terminal's cursor or disguise
    /// itself on screen.
    public static func controlCharacter(in bytes: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x20 || b == 0x7F { return i }
            let next = i + 1 < bytes.count ? bytes[i + 1] : 0
            if b == 0xC2, next >= 0x80, next <= 0x9F { return i }
            if b == 0xD8, next == 0x9C { return i }
            if b == 0xE2, i + 2 < bytes.count {
                let last = bytes[i + 2]
                if next == 0x80, last == 0x8E || last == 0x8F || (last >= 0xA8 && last <= 0xAE) { return i }
                if next == 0x81, last >= 0xA6, last <= 0xA9 { return i }
            }
            i += 1
        }
        return nil
    }

    /// True when `bytes` are a printable payload (FORMAT.md 7): exactly one JSON object, nothing
    /// around it, and no control character. Export prints anything else as hex.
    public static func isPrintablePayload(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard controlCharacter(in: bytes) == nil, let range = try? validate(bytes) else { return false }
        return range == 0..<bytes.count
    }

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var i = 0

        var atEnd: Bool { i >= bytes.count }
        func peek() -> UInt8? { i < bytes.count ? bytes[i] : nil }
        func problem(_ reason: String) -> JSONProblem { JSONProblem(offset: i, reason: reason) }

        mutating func skipSpace() {
            while let c = peek(), c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { i += 1 }
        }

        mutating func expect(_ c: UInt8, _ what: String) throws(JSONProblem) {
            guard peek() == c else { throw problem(atEnd ? "line ends inside the object: expected \(what)" : "expected \(what)") }
            i += 1
        }

        mutating func value(depth: Int) throws(JSONProblem) {
            guard depth < JSONObjectValidator.maxDepth else { throw problem("nesting deeper than \(JSONObjectValidator.maxDepth) levels") }
            guard let c = peek() else { throw problem("line ends where a value was expected") }
            switch c {
            case UInt8(ascii: "{"): try object(depth: depth)
            case UInt8(ascii: "["): try array(depth: depth)
            case UInt8(ascii: "\""): try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw problem("unexpected character where a value was expected")
            }
        }

        mutating func object(depth: Int) throws(JSONProblem) {
            i += 1
            skipSpace()
            if peek() == UInt8(ascii: "}") { i += 1; return }
            while true {
                skipSpace()
                guard !atEnd else { throw problem("line ends inside the object") }
                guard peek() == UInt8(ascii: "\"") else { throw problem("expected a quoted member name") }
                try string()
                skipSpace()
                try expect(UInt8(ascii: ":"), "':' after a member name")
                skipSpace()
                try value(depth: depth + 1)
                skipSpace()
                if peek() == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "}"), "',' or '}' in an object")
                return
            }
        }

        mutating func array(depth: Int) throws(JSONProblem) {
            i += 1
            skipSpace()
            if peek() == UInt8(ascii: "]") { i += 1; return }
            while true {
                skipSpace()
                try value(depth: depth + 1)
                skipSpace()
                if peek() == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "]"), "',' or ']' in an array")
                return
            }
        }

        mutating func literal(_ word: StaticString) throws(JSONProblem) {
            let n = word.utf8CodeUnitCount
            guard bytes.count - i >= n else { throw problem("unknown literal") }
            for k in 0..<n where bytes[i + k] != word.utf8Start[k] { throw problem("unknown literal") }
            i += n
        }

        mutating func digits() -> Int {
            let start = i
            while let c = peek(), c >= 0x30 && c <= 0x39 { i += 1 }
            return i - start
        }

        mutating func number() throws(JSONProblem) {
            if peek() == UInt8(ascii: "-") { i += 1 }
            if peek() == UInt8(ascii: "0") {
                i += 1
            } else if digits() == 0 {
                throw problem("a number needs digits")
            }
            if peek() == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { throw problem("a number needs digits after '.'") }
            }
            if let c = peek(), c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                i += 1
                if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { throw problem("a number needs digits in its exponent") }
            }
        }

        mutating func string() throws(JSONProblem) {
            i += 1
            while let c = peek() {
                switch c {
                case UInt8(ascii: "\""):
                    i += 1
                    return
                case UInt8(ascii: "\\"):
                    i += 1
                    guard let e = peek() else { throw problem("line ends inside an escape") }
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                         UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        i += 1
                    case UInt8(ascii: "u"):
                        i += 1
                        for _ in 0..<4 {
                            guard let h = peek(), isHex(h) else { throw problem("\\u needs four hex digits") }
                            i += 1
                        }
                    default:
                        throw problem("unknown escape in a string")
                    }
                case 0x00..<0x20:
                    throw problem("control character inside a string")
                case 0x80...0xFF:
                    try utf8Sequence()
                default:
                    i += 1
                }
            }
            throw problem("line ends inside a string")
        }

        /// One multi-byte UTF-8 sequence, rejecting overlongs, surrogates and values past U+10FFFF.
        mutating func utf8Sequence() throws(JSONProblem) {
            let lead = bytes[i]
            let (count, low, high): (Int, UInt8, UInt8)
            switch lead {
            case 0xC2...0xDF: (count, low, high) = (1, 0x80, 0xBF)
            case 0xE0: (count, low, high) = (2, 0xA0, 0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: (count, low, high) = (2, 0x80, 0xBF)
            case 0xED: (count, low, high) = (2, 0x80, 0x9F)
            case 0xF0: (count, low, high) = (3, 0x90, 0xBF)
            case 0xF1...0xF3: (count, low, high) = (3, 0x80, 0xBF)
            case 0xF4: (count, low, high) = (3, 0x80, 0x8F)
            default: throw problem("invalid UTF-8 byte in a string")
            }
            guard bytes.count - i > count else { throw problem("truncated UTF-8 sequence") }
            let first = bytes[i + 1]
            guard first >= low && first <= high else { throw problem("invalid UTF-8 sequence") }
            for k in 2..<(count + 1) {
                guard bytes[i + k] & 0xC0 == 0x80 else { throw problem("invalid UTF-8 sequence") }
            }
            i += count + 1
        }

        func isHex(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
        }
    }
}
