// A block device that records every write and flush, so a test can build the image the medium
// would hold if power were cut at any point, and that fails chosen writes, flushes and reads.

import EdgelogStore

public final class FaultBlockDevice: OverlappingDevice {
    public enum Operation: Equatable {
        case write(offset: UInt64, data: [UInt8])
        /// A flush that returned success: every earlier write is durable.
        case flush
        /// A flush that failed: proves nothing, is no barrier.
        case failedFlush
    }

    public let name: String
    public let sectorSize: Int
    /// What the medium held before the first recorded operation (everything durable).
    public let base: [UInt8]
    /// What reads return now: every write applied, as the kernel would show it.
    public private(set) var current: [UInt8]
    public private(set) var log: [Operation] = []
    public var byteCount: UInt64 { UInt64(current.count) }

    /// Fault hooks: return true to make that operation fail (EIO). Write index counts writes only.
    public var failWrite: (_ writeIndex: Int, _ offset: UInt64) -> Bool = { _, _ in false }
    public var failFlush: (_ flushIndex: Int) -> Bool = { _ in false }
    public var failRead: (_ offset: UInt64, _ length: Int) -> Bool = { _, _ in false }
    private var writeCount = 0
    private var flushCount = 0
    /// Takes background writes (`OverlappingDevice`): a submission is a recorded write and its
    /// wait a recorded flush, each failing as the hooks say. Off: the writer writes and flushes.
    public var overlapping = false
    /// A background write submitted and not yet waited for.
    public private(set) var writeInFlight = false

    public init(name: String = "fault", image: [UInt8], sectorSize: Int = 512) {
        self.name = name
        self.sectorSize = sectorSize
        self.base = image
        self.current = image
    }

    /// Every write at `offset` fails and nothing lands; or, `landed`, it lands and the flush after
    /// it fails: sectors the device can no longer write, or no longer confirms.
    public func failWrites(at offset: UInt64, landed: Bool) {
        var last: UInt64 = 0
        failWrite = { _, o in
            last = o
            return !landed && o == offset
        }
        failFlush = { _ in landed && last == offset }
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(DeviceError) {
        guard offset + UInt64(buffer.count) <= byteCount else {
            throw DeviceError(.read, device: name, offset: offset, length: buffer.count, detail: "past the end")
        }
        if failRead(offset, buffer.count) {
            throw DeviceError(.read, device: name, offset: offset, length: buffer.count, code: 5, detail: "injected read error")
        }
        current.withUnsafeBytes { src in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(offset)..<(Int(offset) + buffer.count)]))
        }
    }

    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) {
        guard offset + UInt64(buffer.count) <= byteCount, offset % UInt64(sectorSize) == 0, buffer.count % sectorSize == 0 else {
            throw DeviceError(.write, device: name, offset: offset, length: buffer.count, detail: "misaligned or past the end")
        }
        defer { writeCount += 1 }
        if failWrite(writeCount, offset) {
            throw DeviceError(.write, device: name, offset: offset, length: buffer.count, code: 5, detail: "injected write error")
        }
        let data = Array(buffer)
        current.replaceSubrange(Int(offset)..<(Int(offset) + data.count), with: data)
        log.append(.write(offset: offset, data: data))
    }

    public func flush() throws(DeviceError) {
        defer { flushCount += 1 }
        if failFlush(flushCount) {
            log.append(.failedFlush)
            throw DeviceError(.flush, device: name, code: 5, detail: "injected flush error")
        }
        log.append(.flush)
    }

    public func submitDurable(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) -> Bool {
        guard overlapping else { return false }
        guard !writeInFlight else {
            throw DeviceError(.write, device: name, offset: offset, length: buffer.count, detail: "a durable write is already in flight")
        }
        try write(at: offset, from: buffer)
        writeInFlight = true
        return true
    }

    public func awaitDurable() throws(DeviceError) {
        guard writeInFlight else { return }
        writeInFlight = false
        try flush()
    }
}
