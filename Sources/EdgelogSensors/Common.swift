// What the drivers share: the sleep hook, setting validation, exact decimal scaling and parsing.
// Every driver is one file over one bus protocol of EdgelogHAL (docs/SENSORS.md).

import EdgelogHAL

/// Waits `ms` milliseconds. Drivers wait through it for a conversion (the datasheet's maximum time)
/// and between status polls. The runtime passes a real sleep; the default does not wait, so tests
/// and the simulated board run at once. With the default on real hardware a driver polls its
/// bounded number of times without waiting and reports `.timeout`: never a stale value.
public typealias SleepMilliseconds = (Int) -> Void

/// A `.invalidArgument` error for a setting, naming the device it was meant for.
func invalidSetting(_ device: String, _ address: String? = nil, _ detail: String) -> HardwareError {
    HardwareError(.invalidArgument, device: device, address: address, detail: detail)
}

/// Exact decimal arithmetic for converters whose step is a power-of-two fraction of a reference.
enum ExactDecimal {
    /// The value of one code step, `microvolts / 2^shift` volts, as an exact decimal mantissa and scale
    /// (x / 2^k = x · 5^k / 10^k), with trailing zeros removed. nil if it does not fit 64 bits.
    static func step(microvolts: Int64, shift: Int) -> (mantissa: Int64, scale: Int)? {
        guard microvolts > 0, (0...20).contains(shift) else { return nil }
        var five: Int64 = 1
        for _ in 0..<shift { five *= 5 }
        let product = microvolts.multipliedReportingOverflow(by: five)
        guard !product.overflow else { return nil }
        var mantissa = product.partialValue
        var scale = 6 + shift
        while scale > 0, mantissa % 10 == 0 {
            mantissa /= 10
            scale -= 1
        }
        return (mantissa, scale)
    }

    /// `numerator / denominator` rounded half away from zero (denominator > 0).
    static func roundedDivision(_ numerator: Int64, _ denominator: Int64) -> Int64 {
        let half = denominator / 2
        return numerator >= 0 ? (numerator + half) / denominator : -((-numerator + half) / denominator)
    }

    /// A decimal number as a device prints it ("-12.50", "+ 0012.3", "545.4", ".5"): sign, optional
    /// blanks after the sign, digits with at most one point. Returns mantissa and scale, keeping every
    /// digit (trailing zeros included: they are the device's resolution). nil if not such a number or
    /// longer than 18 digits.
    static func parse(_ text: Substring) -> (mantissa: Int64, scale: Int)? {
        var bytes = Array(text.utf8)[...]
        var negative = false
        if let first = bytes.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
            negative = first == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
            while let b = bytes.first, b == UInt8(ascii: " ") { bytes = bytes.dropFirst() }
        }
        var mantissa: Int64 = 0
        var digits = 0
        var scale = 0
        var seenPoint = false
        for b in bytes {
            if b == UInt8(ascii: ".") {
                guard !seenPoint else { return nil }
                seenPoint = true
                continue
            }
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) else { return nil }
            digits += 1
            guard digits <= 18 else { return nil }
            mantissa = mantissa * 10 + Int64(b - UInt8(ascii: "0"))
            if seenPoint { scale += 1 }
        }
        guard digits > 0 else { return nil }
        return (negative ? -mantissa : mantissa, scale)
    }

    static func value(_ parsed: (mantissa: Int64, scale: Int)) -> Value {
        parsed.scale == 0 ? .int(parsed.mantissa) : .fixed(parsed.mantissa, scale: parsed.scale)
    }
}

extension Int {
    /// 0x76-style text for an address setting that may be out of UInt8 range.
    var settingHex: String { "0x" + String(self, radix: 16, uppercase: true) }
}
