// A frame written in the background on a real file (kernel AIO with RWF_DSYNC, FileBlockDevice)
// lands exactly as `write` would put it, and the store reopens with every frame.

import EdgelogLinux
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

@Suite("Overlapped writes on a file")
struct OverlappedWriteTests {
    /// Under .build (a disk filesystem), not the temporary directory, which may be tmpfs without O_DIRECT.
    static func path(_ name: String) -> String {
        PackageRoot.url.appendingPathComponent(".build/\(name)-\(getpid())").path
    }

    static func store(_ path: String) throws -> FileBlockDevice {
        try FileBlockDevice.createFile(path: path, size: UInt64(PackedGeometry.ringOffset + 6 * 65536))
        let device = try FileBlockDevice(path: path)
        try PackedLog.format(device: device, segmentSize: 65536, storeUUID: Array(1...16), deviceID: Array(repeating: 4, count: 16), wallNs: 0)
        return device
    }

    @Test("frames begun in the background and finished after the next is prepared give the file write gives")
    func sameBytes() throws {
        let plainPath = Self.path("aio-plain"), overlappedPath = Self.path("aio-overlapped")
        defer {
            try? FileManager.default.removeItem(atPath: plainPath)
            try? FileManager.default.removeItem(atPath: overlappedPath)
        }
        var w1 = SensorWorkload(sources: 7, seed: 5), w2 = SensorWorkload(sources: 7, seed: 5)
        let identity = PackedLog.PackedIdentity(deviceID: Array(repeating: 4, count: 16))
        do {
            let plain = try PackedLog(device: try Self.store(plainPath), identity: identity, clock: { 0 })
            for _ in 0..<120 { try plain.append(w1.nextSecond()) }
            try plain.close()
        }
        var background = 0
        let device = try Self.store(overlappedPath)
        do {
            let log = try PackedLog(device: device, identity: identity, clock: { 0 })
            var frame = try log.prepare(w2.nextSecond())
            for k in 0..<120 {
                let write = try log.begin(frame)
                if write.overlapped { background += 1 }
                if k < 119 { frame = try log.prepare(w2.nextSecond()) }
                try log.finish(write)
            }
            try log.close()
        }
        // Where the filesystem takes O_DIRECT and the kernel AIO, the writes went in the background.
        if device.submitsConcurrently { #expect(background == 120) } else { #expect(background == 0) }
        let a = try #require(FileManager.default.contents(atPath: plainPath)), b = try #require(FileManager.default.contents(atPath: overlappedPath))
        #expect(a == b)
        let reopened = try FileBlockDevice(path: overlappedPath, readOnly: true)
        let h = try PackedHistory.analyze(device: reopened)
        #expect(h.metadata.clean && h.frames(device: reopened).count == 120)
        // One write in flight at a time: a second submission is refused, typed.
        let again = try FileBlockDevice(path: overlappedPath)
        let buffer = AlignedBuffer(count: 512)
        if try again.submitDurable(at: UInt64(PackedGeometry.ringOffset + 5 * 65536), from: UnsafeRawBufferPointer(buffer.bytes)) {
            #expect(throws: DeviceError.self) { _ = try again.submitDurable(at: 0, from: UnsafeRawBufferPointer(buffer.bytes)) }
            try again.awaitDurable()
        }
    }
}
