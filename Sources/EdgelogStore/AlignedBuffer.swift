// A heap buffer aligned for direct I/O (O_DIRECT needs sector-aligned memory as well as
// sector-aligned offsets). Owned by one component at a time; never copied on the hot path.

public final class AlignedBuffer: @unchecked Sendable {
    public static let alignment = 4096
    public let bytes: UnsafeMutableRawBufferPointer

    public init(count: Int) {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: Self.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
        bytes = UnsafeMutableRawBufferPointer(start: raw, count: count)
    }

    /// A copy of `bytes`.
    public convenience init(copying bytes: [UInt8]) {
        self.init(count: bytes.count)
        bytes.withUnsafeBytes { self.bytes.copyMemory(from: $0) }
    }

    deinit { bytes.baseAddress?.deallocate() }

    public var count: Int { bytes.count }

    public func readOnly(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
    }
}
