// Little-endian field access on raw bytes at any alignment: every on-disk structure is
// described as (offset, size) tables in docs/FORMAT.md and read/written through these.
// @inlinable so that each use is specialized for its integer type in the calling module: as
// plain generics they cost a witness-table call per field on the commit path.

extension UnsafeRawBufferPointer {
    @inlinable @inline(__always)
    public func le<T: FixedWidthInteger>(_ offset: Int, as: T.Type = T.self) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable @inline(__always)
    public func le<T: FixedWidthInteger>(_ offset: Int, as: T.Type = T.self) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    @inlinable @inline(__always)
    public func setLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    /// Copies `bytes` to `offset`; the caller has checked the room.
    @inlinable @inline(__always)
    public func setBytes(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        guard bytes.count > 0, let src = bytes.baseAddress, let dst = baseAddress else { return }
        (dst + offset).copyMemory(from: src, byteCount: bytes.count)
    }

    @inlinable
    public func zero(_ range: Range<Int>) {
        guard range.count > 0, let dst = baseAddress else { return }
        (dst + range.lowerBound).initializeMemory(as: UInt8.self, repeating: 0, count: range.count)
    }
}

/// An 8-byte ASCII magic as the little-endian integer that holds the same bytes.
public func magic64(_ text: StaticString) -> UInt64 {
    var value: UInt64 = 0
    text.withUTF8Buffer { bytes in
        for (i, byte) in bytes.prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
    }
    return value
}

/// A 4-byte ASCII magic as the little-endian integer that holds the same bytes.
public func magic32(_ text: StaticString) -> UInt32 {
    UInt32(truncatingIfNeeded: magic64(text))
}
