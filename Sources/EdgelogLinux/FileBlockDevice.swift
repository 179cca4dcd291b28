// A block device (size and sector size from the kernel) or a plain file standing in for one.
// Writes go O_DIRECT when the kernel and filesystem allow it, so the page cache holds nothing
// a power cut could lose behind our back; fdatasync is the flush.

import CLinuxShims
import EdgelogStore
import Glibc

public final class FileBlockDevice: OverlappingDevice {
    public let name: String
    public let sectorSize: Int
    public let byteCount: UInt64
    public let isBlockDevice: Bool
    public private(set) var direct: Bool
    private var fd: Int32
    /// Native AIO context for submitting a commit's writes together (0: not available).
    private var aio: UInt64 = 0
    /// True when several writes are submitted at once (O_DIRECT and kernel AIO available).
    public var submitsConcurrently: Bool { direct && aio != 0 }
    /// The durable write in flight (`submitDurable`), if any: the kernel reads its buffer.
    private var inFlight: (offset: UInt64, buffer: UnsafeRawBufferPointer)?
    /// Cleared when the kernel refuses RWF_DSYNC writes through AIO (older than 4.13).
    private var durableSubmission = true

    /// Opens an existing device or file for reading and writing (or reading only).
    public init(path: String, readOnly: Bool = false, direct: Bool = true) throws(DeviceError) {
        name = path
        let access = readOnly ? O_RDONLY : O_RDWR
        var flags = access | O_CLOEXEC
        if direct { flags |= edgelog_o_direct() }
        var opened = Sys.open(path, flags)
        var usingDirect = direct
        if case .failure(let e) = opened, e.code == EINVAL, direct {
            // tmpfs and some overlay filesystems refuse O_DIRECT: fall back to buffered I/O + fdatasync.
            opened = Sys.open(path, access | O_CLOEXEC)
            usingDirect = false
        }
        switch opened {
        case .failure(let e):
            throw DeviceError(.open, device: path, code: e.code, detail: e.code == ENOENT ? "no such file or device" : e.message)
        case .success(let descriptor):
            fd = descriptor
        }
        self.direct = usingDirect
        let st: stat
        switch Sys.fstat(fd) {
        case .success(let s): st = s
        case .failure(let e):
            Sys.close(fd)
            throw DeviceError(.size, device: path, code: e.code, detail: e.message)
        }
        if (st.st_mode & S_IFMT) == S_IFBLK {
            isBlockDevice = true
            guard case .success(let size) = Sys.blockDeviceSize(fd), case .success(let sector) = Sys.blockDeviceSectorSize(fd) else {
                Sys.close(fd)
                throw DeviceError(.size, device: path, code: errno, detail: "BLKGETSIZE64/BLKSSZGET failed")
            }
            byteCount = size
            sectorSize = sector
        } else if (st.st_mode & S_IFMT) == S_IFREG {
            isBlockDevice = false
            byteCount = UInt64(st.st_size)
            sectorSize = 512
        } else {
            Sys.close(fd)
            throw DeviceError(.open, device: path, detail: "neither a block device nor a regular file")
        }
        if usingDirect && !readOnly { setUpAIO() }
    }

    /// Creates (or resizes) a plain file of `size` bytes, written with zeros, to stand in for a
    /// partition. `progress` is told the bytes written so far.
    public static func createFile(path: String, size: UInt64, progress: ((UInt64, UInt64) -> Void)? = nil) throws(DeviceError) {
        let fd: Int32
        switch Sys.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) {
        case .success(let d): fd = d
        case .failure(let e): throw DeviceError(.open, device: path, code: e.code, detail: e.message)
        }
        defer { Sys.close(fd) }
        if case .failure(let e) = Sys.ftruncate(fd, size) {
            throw DeviceError(.size, device: path, code: e.code, detail: "cannot size the file: \(e.message)")
        }
        // Write every block now, as a partition has them: later commits then never allocate (or
        // fail for space), and never turn unwritten extents into written ones, which on a
        // journaled filesystem would cost a journal commit inside every flush.
        let chunk = AlignedBuffer(count: 1 << 20)
        var offset: UInt64 = 0
        while offset < size {
            let n = Int(min(UInt64(chunk.count), size - offset))
            if case .failure(let e) = Sys.pwrite(fd, chunk.readOnly(0..<n), offset) {
                throw DeviceError(.write, device: path, offset: offset, length: n, code: e.code,
                                  detail: e.code == ENOSPC ? "no space for a \(size)-byte store" : e.message)
            }
            offset += UInt64(n)
            progress?(offset, size)
        }
        if case .failure(let e) = Sys.fdatasync(fd) {
            throw DeviceError(.flush, device: path, code: e.code, detail: e.message)
        }
    }

    deinit {
        if aio != 0 { edgelog_aio_destroy(aio) }
        if fd >= 0 { Sys.close(fd) }
    }

    private func check(_ offset: UInt64, _ count: Int, _ op: DeviceError.Operation) throws(DeviceError) {
        guard offset % UInt64(sectorSize) == 0, count % sectorSize == 0 else {
            throw DeviceError(op, device: name, offset: offset, length: count, detail: "not aligned to \(sectorSize)-byte sectors")
        }
        guard offset + UInt64(count) <= byteCount else {
            throw DeviceError(op, device: name, offset: offset, length: count, detail: "past the end of the device (\(byteCount) bytes)")
        }
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(DeviceError) {
        try check(offset, buffer.count, .read)
        switch Sys.pread(fd, buffer, offset) {
        case .success(let n) where n == buffer.count: return
        case .success(let n): throw DeviceError(.read, device: name, offset: offset, length: buffer.count, detail: "short read: \(n) bytes")
        case .failure(let e) where e.code == EINVAL && direct:
            try fallBackToBuffered()
            try read(at: offset, into: buffer)
        case .failure(let e): throw DeviceError(.read, device: name, offset: offset, length: buffer.count, code: e.code, detail: e.message)
        }
    }

    public func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) {
        try check(offset, buffer.count, .write)
        switch Sys.pwrite(fd, buffer, offset) {
        case .success: return
        case .failure(let e) where e.code == EINVAL && direct:
            // The filesystem wants a larger alignment than our sectors: keep going buffered.
            try fallBackToBuffered()
            try write(at: offset, from: buffer)
        case .failure(let e): throw DeviceError(.write, device: name, offset: offset, length: buffer.count, code: e.code, detail: e.message)
        }
    }

    /// With O_DIRECT each write waits for the device, so a commit's segment and metadata writes
    /// are submitted together through kernel AIO and completed in one round trip instead of two.
    public func writeAll(_ writes: [(offset: UInt64, bytes: UnsafeRawBufferPointer)]) throws(DeviceError) {
        // With a durable write in flight its completions would be taken for that one's: one by one.
        guard submitsConcurrently, inFlight == nil, writes.count > 1, writes.count <= 8 else {
            for w in writes { try write(at: w.offset, from: w.bytes) }
            return
        }
        for w in writes { try check(w.offset, w.bytes.count, .write) }
        var buffers = writes.map { UnsafeRawPointer($0.bytes.baseAddress) }
        var lengths = writes.map { UInt64($0.bytes.count) }
        var offsets = writes.map(\.offset)
        var results = [Int64](repeating: 0, count: writes.count)
        let status = Sys.aioWriteAll(aio, fd, &buffers, &lengths, &offsets, &results)
        for (i, w) in writes.enumerated() where results[i] != Int64(w.bytes.count) {
            let code = results[i] < 0 ? Int32(-results[i]) : EIO
            if code == EINVAL && direct {
                // The filesystem refused this alignment for direct I/O: go on buffered, one by one.
                try fallBackToBuffered()
                for w in writes { try write(at: w.offset, from: w.bytes) }
                return
            }
            throw DeviceError(.write, device: name, offset: w.offset, length: w.bytes.count, code: code,
                              detail: results[i] < 0 ? Errno(code).message : "short write (\(results[i]) bytes)")
        }
        if case .failure(let e) = status {
            throw DeviceError(.write, device: name, offset: writes[0].offset, code: e.code, detail: "AIO: \(e.message)")
        }
    }

    /// A native AIO context, when the kernel gives one (else `aio` stays 0: writes go one by one).
    private func setUpAIO() {
        var context: UInt64 = 0
        if edgelog_aio_setup(8, &context) == 0 { aio = context }
    }

    /// Tags the durable write's completion, so that no other completion is taken for it.
    private static let durableTag: UInt64 = 0x6564_6765_6c6f_6731

    /// Through kernel AIO with RWF_DSYNC, when O_DIRECT and AIO are available.
    public func submitDurable(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) -> Bool {
        guard inFlight == nil else {
            throw DeviceError(.write, device: name, offset: offset, length: buffer.count, detail: "a durable write is already in flight")
        }
        guard submitsConcurrently, durableSubmission else { return false }
        try check(offset, buffer.count, .write)
        guard edgelog_aio_submit_dsync(aio, fd, buffer.baseAddress, UInt64(buffer.count), offset, Self.durableTag) == 0 else {
            let e = Errno(errno)
            switch e.code {
            case EINVAL, EOPNOTSUPP, ENOSYS:
                // RWF_DSYNC unknown to this kernel's AIO (before 4.13): the caller writes and
                // flushes from here on, as on a kernel without AIO.
                durableSubmission = false
                return false
            default:
                throw DeviceError(.write, device: name, offset: offset, length: buffer.count, code: e.code, detail: "AIO submit: \(e.message)")
            }
        }
        inFlight = (offset, buffer)
        return true
    }

    /// Once this returns or throws, the kernel no longer reads the buffer.
    public func awaitDurable() throws(DeviceError) {
        guard let (offset, buffer) = inFlight else { return }
        var result: Int64 = 0
        var tag: UInt64 = 0
        let status = edgelog_aio_wait_one(aio, &result, &tag)
        let waitErrno = errno
        guard status == 0, tag == Self.durableTag else {
            // The wait itself failed: the write may still be running. Tearing the AIO context
            // down waits for it, so the buffer is free when this throws; a new context follows.
            edgelog_aio_destroy(aio)
            aio = 0
            if direct { setUpAIO() }
            inFlight = nil
            throw DeviceError(.write, device: name, offset: offset, length: buffer.count, code: status == 0 ? EIO : waitErrno,
                              detail: status == 0 ? "AIO wait: another write's completion" : "AIO wait: \(Errno(waitErrno).message)")
        }
        inFlight = nil
        if !direct && aio != 0 {
            // Buffered since the submission (a read fell back): the context goes now.
            edgelog_aio_destroy(aio)
            aio = 0
        }
        if result == -Int64(EINVAL) {
            // The filesystem refused this alignment for direct I/O (it tells at completion, not
            // at submission): written buffered and flushed here, as `write` falls back.
            durableSubmission = false
            if direct { try fallBackToBuffered() }
            try write(at: offset, from: buffer)
            try flush()
            return
        }
        guard result == Int64(buffer.count) else {
            let code = result < 0 ? Int32(clamping: -result) : EIO
            throw DeviceError(.write, device: name, offset: offset, length: buffer.count, code: code,
                              detail: result < 0 ? Errno(code).message : "short write (\(result) bytes)")
        }
    }

    public func flush() throws(DeviceError) {
        if case .failure(let e) = Sys.fdatasync(fd) {
            throw DeviceError(.flush, device: name, code: e.code, detail: e.message)
        }
    }

    private func fallBackToBuffered() throws(DeviceError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~edgelog_o_direct()) == 0 else {
            throw DeviceError(.write, device: name, code: errno, detail: "cannot leave O_DIRECT mode")
        }
        direct = false
        // A durable write still running keeps the context until it is waited for.
        if aio != 0 && inFlight == nil {
            edgelog_aio_destroy(aio)
            aio = 0
        }
    }
}
