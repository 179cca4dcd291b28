// Varints and zigzag deltas of format 6's record block (docs/FORMAT.md appendix A.1).
// The reader treats every byte as hostile: overlong, unterminated or out-of-range varints are
// errors, never wrapped or truncated values.

/// Why bytes are not a valid varint.
public enum VarintProblem: Error, Equatable, Sendable {
    /// The bytes end before the varint's last byte.
    case truncated
    /// More than 10 bytes, or a 10th byte above 1: the value does not fit in 64 bits.
    case overflow
    /// A longer encoding than the value needs (a last byte of 0 after other bytes).
    case overlong
    /// The value does not fit the field it is read into.
    case outOfRange(max: UInt64)
}

public enum Varint {
    /// Appends the shortest LEB128 encoding of `value`.
    @inlinable
    public static func append(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(truncatingIfNeeded: v))
    }

    /// Encoded length of `value`.
    public static func length(_ value: UInt64) -> Int {
        var n = 1
        var v = value >> 7
        while v != 0 { n += 1; v >>= 7 }
        return n
    }

    /// The zigzag delta of `value` against `base` (both 64-bit patterns; lossless for any pair).
    @inlinable
    public static func zigzag(_ value: UInt64, base: UInt64) -> UInt64 {
        let d = Int64(bitPattern: value &- base)
        return UInt64(bitPattern: (d << 1) ^ (d >> 63))
    }

    /// `base` moved by the zigzag-encoded delta `u`.
    @inlinable
    public static func unzigzag(_ u: UInt64, base: UInt64) -> UInt64 {
        let d = (u >> 1) ^ (0 &- (u & 1))
        return base &+ d
    }
}

/// A cursor over hostile bytes.
public struct ByteCursor {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int

    public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }
    public var atEnd: Bool { offset >= bytes.count }

    public mutating func byte() throws(VarintProblem) -> UInt8 {
        guard offset < bytes.count else { throw .truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func varint() throws(VarintProblem) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        for i in 0..<10 {
            let b = try byte()
            if i == 9 && b > 1 { throw .overflow }
            value |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 {
                if b == 0 && i > 0 { throw .overlong }
                return value
            }
            shift += 7
        }
        throw .overflow
    }

    public mutating func varint(max: UInt64) throws(VarintProblem) -> UInt64 {
        let v = try varint()
        guard v <= max else { throw .outOfRange(max: max) }
        return v
    }

    /// The next `count` bytes (count checked against what is left).
    public mutating func take(_ count: Int) throws(VarintProblem) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw .truncated }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }
}
