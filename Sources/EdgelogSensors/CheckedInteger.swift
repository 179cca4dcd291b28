// Integer arithmetic of a datasheet's C code, checked. The Bosch compensation formulas are written
// for 32-bit and 64-bit signed C integers; for every real part no step overflows. A hostile or
// corrupted calibration or raw value could make a step overflow, which in C is undefined behaviour
// and in practice a wrapped, plausible-looking number. Here each operation checks that its result
// fits the C type and throws `Overflow` instead, so the driver reports "out_of_range".
//
// `>>` is the arithmetic shift of the datasheet's compilers (rounds toward minus infinity), `<<`
// multiplies by 2^n, `/` truncates toward zero as C does.

struct Overflow: Error {}

protocol CIntegerWidth {
    static var lowest: Int64 { get }
    static var highest: Int64 { get }
}

enum Width32: CIntegerWidth {
    static var lowest: Int64 { Int64(Int32.min) }
    static var highest: Int64 { Int64(Int32.max) }
}

enum Width64: CIntegerWidth {
    static var lowest: Int64 { Int64.min }
    static var highest: Int64 { Int64.max }
}

struct CInteger<W: CIntegerWidth>: ExpressibleByIntegerLiteral, Equatable, Comparable {
    let value: Int64

    init(_ value: Int64) throws(Overflow) {
        guard value >= W.lowest, value <= W.highest else { throw Overflow() }
        self.value = value
    }

    /// Literals in the formulas are constants that fit the type.
    init(integerLiteral value: Int64) { self.value = value }

    static func < (a: Self, b: Self) -> Bool { a.value < b.value }

    static func + (a: Self, b: Self) throws(Overflow) -> Self {
        let r = a.value.addingReportingOverflow(b.value)
        guard !r.overflow else { throw Overflow() }
        return try Self(r.partialValue)
    }

    static func - (a: Self, b: Self) throws(Overflow) -> Self {
        let r = a.value.subtractingReportingOverflow(b.value)
        guard !r.overflow else { throw Overflow() }
        return try Self(r.partialValue)
    }

    static func * (a: Self, b: Self) throws(Overflow) -> Self {
        let r = a.value.multipliedReportingOverflow(by: b.value)
        guard !r.overflow else { throw Overflow() }
        return try Self(r.partialValue)
    }

    static func / (a: Self, b: Self) throws(Overflow) -> Self {
        guard b.value != 0 else { throw Overflow() }
        let r = a.value.dividedReportingOverflow(by: b.value)
        guard !r.overflow else { throw Overflow() }
        return try Self(r.partialValue)
    }

    static func << (a: Self, n: Int) throws(Overflow) -> Self {
        guard (0..<63).contains(n) else { throw Overflow() }
        return try a * Self(Int64(1) << Int64(n))
    }

    static func >> (a: Self, n: Int) -> Self {
        // An arithmetic shift of a value in range stays in range.
        Self(unchecked: a.value >> Int64(n))
    }

    private init(unchecked value: Int64) { self.value = value }
}

typealias S32 = CInteger<Width32>
typealias S64 = CInteger<Width64>
