// Wraps a device and stops at a chosen operation until the test lets it go: a commit caught at a
// known phase (before its segment write, between the segment and the metadata write, before or
// after its flush) while the test does something else, such as signalling a power failure.

import EdgelogStore
#if canImport(Glibc)
import Glibc
#endif

public final class GatedBlockDevice: BlockDevice, @unchecked Sendable {
    /// Where a commit can be held: before the n-th write or flush, or after it.
    public enum Gate: Equatable, Sendable, CustomStringConvertible {
        case beforeWrite(Int)
        case afterWrite(Int)
        case beforeFlush(Int)
        case afterFlush(Int)
        public var description: String {
            switch self {
            case .beforeWrite(let n): "before write \(n)"
            case .afterWrite(let n): "after write \(n)"
            case .beforeFlush(let n): "before flush \(n)"
            case .afterFlush(let n): "after flush \(n)"
            }
        }
    }

    private let inner: BlockDevice
    private let monitor = Monitor()
    private var gate: Gate?
    private var held = false
    private var released = false
    private var writes = 0
    private var flushes = 0
    /// Added to every flush, and per KiB to every write: a device with a known cost.
    public var flushDelayUs: UInt32 = 0
    public var writeDelayUsPerKiB: UInt32 = 0

    public init(wrapping inner: BlockDevice) { self.inner = inner }

    public var name: String { inner.name }
    public var sectorSize: Int { inner.sectorSize }
    public var byteCount: UInt64 { inner.byteCount }

    /// Holds the operation `gate` names (counting from the next one, 1-based) until `release`.
    public func arm(_ gate: Gate) {
        monitor.lock()
        self.gate = gate
        held = false
        released = false
        writes = 0
        flushes = 0
        monitor.unlock()
    }

    /// Waits until an operation is held at the gate; false after `timeoutMs`.
    public func waitHeld(timeoutMs: Int) -> Bool {
        monitor.lock()
        defer { monitor.unlock() }
        let deadline = Monitor.monotonicNs() + Int64(timeoutMs) * 1_000_000
        while !held {
            let left = deadline - Monitor.monotonicNs()
            if left <= 0 { return false }
            monitor.wait(ns: left)
        }
        return true
    }

    public func release() {
        monitor.lock()
        released = true
        gate = nil
        monitor.broadcast()
        monitor.unlock()
    }

    private func stop(at point: Gate) {
        monitor.lock()
        if gate == point {
            held = true
            monitor.broadcast()
            while !released { monitor.wait() }
        }
        monitor.unlock()
    }

    private func count(write: Bool) -> Int {
        monitor.lock()
        defer { monitor.unlock() }
        if write { writes += 1; return writes }
        flushes += 1
        return flushes
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(DeviceError) {
        try inner.read(at: offset, into: buffer)
    }

    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) {
        let n = count(write: true)
        stop(at: .beforeWrite(n))
        if writeDelayUsPerKiB > 0 { usleep(UInt32(clamping: (buffer.count + 1023) / 1024) &* writeDelayUsPerKiB) }
        try inner.write(at: offset, from: buffer)
        stop(at: .afterWrite(n))
    }

    public func flush() throws(DeviceError) {
        let n = count(write: false)
        stop(at: .beforeFlush(n))
        if flushDelayUs > 0 { usleep(flushDelayUs) }
        try inner.flush()
        stop(at: .afterFlush(n))
    }
}
