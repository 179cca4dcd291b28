// Contender c: the device limit. For each batch, the number of bytes the store writes for that
// segment (header + records + marker, padded to the store's sector size), one pwrite at the
// offset of the ring slot the store uses, then fdatasync, on a file created by
// FileBlockDevice.createFile, as the store's is. O_DIRECT exactly when the store's
// FileBlockDevice uses it. No per-record work and no metadata write.
//
// With `metadataWrite` (informational, not one of the three contenders) each segment write is
// followed by a 4096-byte write to offset 0 or 4096 in turn before the fdatasync: the store's I/O
// pattern exactly, i.e. the device limit of its commit protocol.

import EdgelogLinux
import EdgelogStore
import Glibc

final class RawContender: Contender {
    let name: String
    let metadataWrite: Bool
    let direct: Bool
    let geometry: Geometry
    let fd: Int32
    let image = AlignedBuffer(count: Shape.segmentSize)
    private var fullWriteLength = 0
    var note = ""

    /// O_DIRECT: glibc hides it behind _GNU_SOURCE, which Swift's Glibc module does not define.
    static var oDirect: Int32 {
        #if arch(x86_64) || arch(i386)
        return 0o40000
        #elseif arch(arm64) || arch(arm)
        return 0o200000
        #else
        #error("O_DIRECT value for this architecture")
        #endif
    }

    init(path: String, direct: Bool, sectorSize: Int, metadataWrite: Bool = false) {
        name = metadataWrite ? "raw_2write" : "raw"
        self.metadataWrite = metadataWrite
        self.direct = direct
        let size = Shape.throughputStoreSize
        // The same kind of file the store gets: every block written with zeros at creation.
        do {
            try FileBlockDevice.createFile(path: path, size: size)
        } catch {
            die("create \(path): \(error)")
        }
        fd = open(path, O_RDWR | O_CLOEXEC | (direct ? Self.oDirect : 0))
        guard fd >= 0 else { die("open \(path)\(direct ? " with O_DIRECT" : ""): \(errnoText())") }
        do {
            geometry = try Geometry.make(storeSize: size, sectorSize: sectorSize, segmentSize: Shape.segmentSize)
        } catch {
            die("geometry: \(error)")
        }
        // Record-like content; the device cares only about the number of bytes and their alignment.
        let bytes = RecordBytes()
        let base = image.bytes.baseAddress!
        for i in 0..<(Shape.segmentSize / Shape.recordLength) {
            bytes.setNumber(i)
            let o = i * Shape.recordLength
            (base + o + Layout.recordHeadSize).copyMemory(from: bytes.source.baseAddress!, byteCount: bytes.source.count)
            (base + o + Layout.recordHeadSize + bytes.source.count).copyMemory(from: bytes.payload.baseAddress!, byteCount: bytes.payload.count)
        }
    }

    deinit { close(fd) }

    func batch(_ range: Range<Int>, index: Int) -> UInt64 {
        // What the store writes for a segment of these records (FORMAT.md section 3).
        let length = geometry.writeLength(payloadLength: range.count * Shape.recordLength)
        fullWriteLength = max(fullWriteLength, length)
        // The store's first segment goes to slot 0 and each next one to the next slot.
        let offset = geometry.slotOffset(index % geometry.ringSlots)
        let base = UnsafeRawPointer(image.bytes.baseAddress!)
        let t0 = monoNs()
        let n = pwrite(fd, base, length, off_t(offset))
        guard n == length else { die("pwrite \(length) bytes at \(offset): \(n < 0 ? errnoText() : "short write \(n)")") }
        if metadataWrite {
            let m = pwrite(fd, base, Layout.metadataSlotSize, off_t(Layout.metadataSlotOffsets[(index + 1) % 2]))
            guard m == Layout.metadataSlotSize else { die("pwrite metadata: \(m < 0 ? errnoText() : "short write \(m)")") }
        }
        guard fdatasync(fd) == 0 else { die("fdatasync: \(errnoText())") }
        return monoNs() &- t0
    }

    func finish(records: Int) {
        note = "per segment: pwrite \(fullWriteLength) B"
            + (metadataWrite ? " + pwrite \(Layout.metadataSlotSize) B at offset 0/4096" : "")
            + " + fdatasync, \(direct ? "O_DIRECT" : "buffered")"
    }
}
