// The storage engine's only view of the medium. The Linux device, the plain-file stand-in and the
// fault-injecting test device all implement it, so the engine never makes a syscall itself.

public protocol BlockDevice: AnyObject {
    /// What a technician would call it: a path, or a test name.
    var name: String { get }
    /// The unit of atomicity the engine assumes nothing about, and the alignment of every I/O.
    var sectorSize: Int { get }
    /// Usable bytes.
    var byteCount: UInt64 { get }

    /// Reads `buffer.count` bytes at `offset`. Offset and count are multiples of `sectorSize`.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(DeviceError)
    /// Writes `buffer.count` bytes at `offset`. Not durable until `flush()` returns.
    func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError)
    /// Makes every earlier write durable. A failed flush proves nothing about any of them.
    func flush() throws(DeviceError)
    /// Writes several buffers, possibly at once (none is durable until `flush()`). On failure the
    /// error's offset names a write that failed; any of the others may or may not have been written.
    func writeAll(_ writes: [(offset: UInt64, bytes: UnsafeRawBufferPointer)]) throws(DeviceError)
}

extension BlockDevice {
    /// One after the other, in order: what a device without concurrent submission does.
    public func writeAll(_ writes: [(offset: UInt64, bytes: UnsafeRawBufferPointer)]) throws(DeviceError) {
        for w in writes { try write(at: w.offset, from: w.bytes) }
    }
}

/// A device that can make one write durable in the background: the writer prepares its next
/// commit while the device writes this one (DESIGN.md 13). One write at a time: `awaitDurable`
/// ends the one `submitDurable` started before another starts.
public protocol OverlappingDevice: BlockDevice {
    /// Starts writing `buffer` at `offset`, complete only once durable, as a write and a flush
    /// would leave it. False when the device cannot now, and nothing was started: the caller
    /// writes and flushes. The buffer must stay valid until `awaitDurable` returns.
    func submitDurable(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) -> Bool
    /// Waits for the started write. When it throws, the write proves nothing: it may or may not be
    /// on the device, whole or in part.
    func awaitDurable() throws(DeviceError)
}

/// A device fault, with what was being done, where, and the errno when the kernel gave one.
public struct DeviceError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Operation: String, Sendable { case open, size, read, write, flush, close }

    public let operation: Operation
    public let device: String
    public let offset: UInt64?
    public let length: Int
    /// errno from the kernel, or 0 when the fault was found by the engine (short read, range).
    public let code: Int32
    public let detail: String

    public init(_ operation: Operation, device: String, offset: UInt64? = nil, length: Int = 0, code: Int32 = 0, detail: String) {
        self.operation = operation
        self.device = device
        self.offset = offset
        self.length = length
        self.code = code
        self.detail = detail
    }

    public var description: String {
        var text = "\(operation.rawValue) failed on \(device)"
        if let offset { text += " at byte \(offset)" }
        if length > 0 { text += " (\(length) bytes)" }
        text += ": \(detail)"
        if code != 0 { text += " (errno \(code))" }
        return text
    }
}
