// An in-memory block device: every write is immediately "durable". Tests use it directly and the
// fault device uses it to hold the image it builds.

import EdgelogStore

public final class MemoryBlockDevice: BlockDevice {
    public let name: String
    public let sectorSize: Int
    public var bytes: [UInt8]
    public var byteCount: UInt64 { UInt64(bytes.count) }
    public private(set) var writes = 0
    public private(set) var flushes = 0

    public init(name: String = "memory", size: Int, sectorSize: Int = 512) {
        self.name = name
        self.sectorSize = sectorSize
        self.bytes = [UInt8](repeating: 0, count: size)
    }

    public init(name: String = "memory", image: [UInt8], sectorSize: Int = 512) {
        self.name = name
        self.sectorSize = sectorSize
        self.bytes = image
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(DeviceError) {
        guard offset + UInt64(buffer.count) <= byteCount else {
            throw DeviceError(.read, device: name, offset: offset, length: buffer.count, detail: "past the end")
        }
        bytes.withUnsafeBytes { src in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(offset)..<(Int(offset) + buffer.count)]))
        }
    }

    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) {
        guard offset + UInt64(buffer.count) <= byteCount else {
            throw DeviceError(.write, device: name, offset: offset, length: buffer.count, detail: "past the end")
        }
        bytes.replaceSubrange(Int(offset)..<(Int(offset) + buffer.count), with: buffer)
        writes += 1
    }

    public func flush() throws(DeviceError) { flushes += 1 }
}
