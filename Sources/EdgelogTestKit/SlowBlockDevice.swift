// Wraps a device and makes every flush take a while, to test what producers do while the
// committer is stuck on a slow card.

import EdgelogStore
#if canImport(Glibc)
import Glibc
#endif

public final class SlowBlockDevice: BlockDevice {
    private let inner: BlockDevice
    public var flushDelayMicroseconds: UInt32

    public init(wrapping inner: BlockDevice, flushDelayMicroseconds: UInt32) {
        self.inner = inner
        self.flushDelayMicroseconds = flushDelayMicroseconds
    }

    public var name: String { inner.name }
    public var sectorSize: Int { inner.sectorSize }
    public var byteCount: UInt64 { inner.byteCount }
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(DeviceError) {
        try inner.read(at: offset, into: buffer)
    }
    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) {
        try inner.write(at: offset, from: buffer)
    }
    public func flush() throws(DeviceError) {
        usleep(flushDelayMicroseconds)
        try inner.flush()
    }
}
