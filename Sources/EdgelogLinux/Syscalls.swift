// Every syscall edgelog makes goes through here: EINTR is retried, short transfers are continued,
// and errno becomes a typed error naming the operation, the path and the offset.

import CLinuxShims
import EdgelogStore
import Glibc

public struct Errno: Error, Equatable, CustomStringConvertible, Sendable {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
    public static var current: Errno { Errno(errno) }
    public var description: String { String(cString: strerror(code)) + " (errno \(code))" }
    public var message: String { String(cString: strerror(code)) }
}

enum Sys {
    /// Runs `body` until it does not fail with EINTR.
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ body: () -> T) -> Result<T, Errno> {
        while true {
            let result = body()
            if result >= 0 { return .success(result) }
            let e = errno
            if e != EINTR { return .failure(Errno(e)) }
        }
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Result<Int32, Errno> {
        retrying { Glibc.open(path, flags, mode) }
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Reads exactly `buffer.count` bytes at `offset`; a short count means end of file.
    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ offset: UInt64) -> Result<Int, Errno> {
        guard let base = buffer.baseAddress else { return .success(0) }
        var done = 0
        while done < buffer.count {
            switch retrying({ Glibc.pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done)) }) {
            case .success(0): return .success(done)
            case .success(let n): done += n
            case .failure(let e): return .failure(e)
            }
        }
        return .success(done)
    }

    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: UInt64) -> Result<Int, Errno> {
        guard let base = buffer.baseAddress else { return .success(0) }
        var done = 0
        while done < buffer.count {
            switch retrying({ Glibc.pwrite(fd, base + done, buffer.count - done, off_t(offset) + off_t(done)) }) {
            case .success(0): return .failure(Errno(EIO))
            case .success(let n): done += n
            case .failure(let e): return .failure(e)
            }
        }
        return .success(done)
    }

    /// Submits writes together through kernel AIO and waits for all (see edgelog_aio_pwrite_all).
    static func aioWriteAll(_ context: UInt64, _ fd: Int32, _ buffers: inout [UnsafeRawPointer?], _ lengths: inout [UInt64],
                            _ offsets: inout [UInt64], _ results: inout [Int64]) -> Result<Int32, Errno> {
        let count = Int32(buffers.count)
        let r = buffers.withUnsafeMutableBufferPointer { b in
            lengths.withUnsafeMutableBufferPointer { l in
                offsets.withUnsafeMutableBufferPointer { o in
                    results.withUnsafeMutableBufferPointer { res in
                        edgelog_aio_pwrite_all(context, fd, count, b.baseAddress, l.baseAddress, o.baseAddress, res.baseAddress)
                    }
                }
            }
        }
        return r == 0 ? .success(0) : .failure(Errno(errno))
    }

    static func fdatasync(_ fd: Int32) -> Result<Int32, Errno> { retrying { Glibc.fdatasync(fd) } }

    static func fstat(_ fd: Int32) -> Result<stat, Errno> {
        var st = stat()
        return retrying { Glibc.fstat(fd, &st) }.map { _ in st }
    }

    static func ftruncate(_ fd: Int32, _ size: UInt64) -> Result<Int32, Errno> {
        guard let length = off_t(exactly: size) else { return .failure(Errno(EFBIG)) }
        return retrying { Glibc.ftruncate(fd, length) }
    }

    static func blockDeviceSize(_ fd: Int32) -> Result<UInt64, Errno> {
        var size: UInt64 = 0
        return retrying { edgelog_blk_getsize64(fd, &size) }.map { _ in size }
    }

    static func blockDeviceSectorSize(_ fd: Int32) -> Result<Int, Errno> {
        var sector: Int32 = 0
        return retrying { edgelog_blk_sszget(fd, &sector) }.map { _ in Int(sector) }
    }

    static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        guard let base = bytes.baseAddress else { return .success(0) }
        var done = 0
        while done < bytes.count {
            switch retrying({ Glibc.write(fd, base + done, bytes.count - done) }) {
            case .success(let n): done += n
            case .failure(let e): return .failure(e)
            }
        }
        return .success(done)
    }

    /// One read(2) that returns EINTR instead of retrying, so a signal can stop a blocked reader.
    static func readInterruptible(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) -> Result<Int, Errno> {
        guard let base = buffer.baseAddress else { return .success(0) }
        let n = Glibc.read(fd, base, buffer.count)
        return n >= 0 ? .success(n) : .failure(Errno(errno))
    }

    /// Installs `handler` for `signal` without SA_RESTART, so blocked reads return EINTR.
    static func installHandler(_ signal: Int32, _ handler: @convention(c) (Int32) -> Void) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        _ = sigaction(signal, &action, nil)
    }

    static func clock(_ id: clockid_t) -> Int64 {
        var ts = timespec()
        _ = clock_gettime(id, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Random bytes from the kernel (the standard library's generator uses getrandom(2)).
    static func urandom(_ count: Int) -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }
}

// Small files: keys, the anchor, the executable's own bytes.
extension Sys {
    static func fsync(_ fd: Int32) -> Result<Int32, Errno> { retrying { Glibc.fsync(fd) } }

    static func rename(_ from: String, _ to: String) -> Result<Int32, Errno> { retrying { Glibc.rename(from, to) } }

    static func mkdir(_ path: String, _ mode: mode_t) -> Result<Int32, Errno> { retrying { Glibc.mkdir(path, mode) } }

    static func unlink(_ path: String) { _ = Glibc.unlink(path) }

    static func exists(_ path: String) -> Bool { Glibc.access(path, F_OK) == 0 }

    /// mtime of the file `path` names (symlinks followed), in ns since 1970.
    static func modificationTimeNs(_ path: String) -> Int64? {
        let fd: Int32
        switch open(path, O_RDONLY | O_CLOEXEC) {
        case .success(let f): fd = f
        case .failure: return nil
        }
        defer { close(fd) }
        guard case .success(let st) = fstat(fd) else { return nil }
        return Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }

    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) -> Result<Int, Errno> {
        guard let base = buffer.baseAddress else { return .success(0) }
        return retrying { Glibc.read(fd, base, buffer.count) }
    }
}

// The kernel's clock discipline (the time path).
extension Sys {
    static func clockSync() -> Result<(synchronized: Bool, maxErrorUs: Int64, estErrorUs: Int64), Errno> {
        var synced: Int32 = 0
        var maxError = 0, estError = 0
        return retrying { edgelog_clock_sync(&synced, &maxError, &estError) }
            .map { _ in (synced != 0, Int64(maxError), Int64(estError)) }
    }
}

// Buses: I2C (libi2c SMBus and I2C_RDWR), spidev, serial lines, advisory locks and poll.
extension Sys {
    /// libi2c's SMBus calls return the value, or a negative errno (i2c-tools 4) or -1 with errno set.
    static func smbus(_ body: () -> Int32) -> Result<Int32, Errno> {
        while true {
            let r = body()
            if r >= 0 { return .success(r) }
            let code = r == -1 ? errno : -r
            if code != EINTR { return .failure(Errno(code)) }
        }
    }

    static func i2cFuncs(_ fd: Int32) -> Result<UInt, Errno> {
        var funcs: UInt = 0
        return retrying { edgelog_i2c_funcs(fd, &funcs) }.map { _ in funcs }
    }

    static func i2cSetAddress(_ fd: Int32, _ address: UInt8) -> Result<Int32, Errno> {
        retrying { edgelog_i2c_set_address(fd, UInt32(address)) }
    }

    static func i2cTransfer(_ fd: Int32, _ address: UInt8, _ write: [UInt8], _ read: inout [UInt8]) -> Result<Int32, Errno> {
        let readCount = read.count
        return write.withUnsafeBufferPointer { w in
            read.withUnsafeMutableBufferPointer { r in
                retrying { edgelog_i2c_rdwr(fd, UInt32(address), w.baseAddress, UInt16(w.count), r.baseAddress, UInt16(readCount)) }
            }
        }
    }

    static func spiConfigure(_ fd: Int32, mode: UInt8, bits: UInt8, speedHz: UInt32) -> Result<Int32, Errno> {
        retrying { edgelog_spi_configure(fd, mode, bits, speedHz) }
    }

    static func spiTransfer(_ fd: Int32, _ tx: [UInt8], speedHz: UInt32, bits: UInt8) -> Result<[UInt8], Errno> {
        var rx = [UInt8](repeating: 0, count: tx.count)
        let result = tx.withUnsafeBufferPointer { t in
            rx.withUnsafeMutableBufferPointer { r in
                retrying { edgelog_spi_transfer(fd, t.baseAddress, r.baseAddress, UInt32(t.count), speedHz, bits) }
            }
        }
        return result.map { _ in rx }
    }

    static func serialConfigure(_ fd: Int32, baud: Int, dataBits: Int, parity: Int, stopBits: Int) -> Result<Int32, Errno> {
        retrying { edgelog_serial_configure(fd, Int32(baud), Int32(dataBits), Int32(parity), Int32(stopBits)) }
    }

    static func serialExclusive(_ fd: Int32) -> Result<Int32, Errno> { retrying { edgelog_serial_exclusive(fd) } }

    static func serialFlushInput(_ fd: Int32) -> Result<Int32, Errno> { retrying { edgelog_serial_flush_input(fd) } }

    /// flock(LOCK_EX | LOCK_NB): EWOULDBLOCK when another process holds the lock.
    static func lockExclusive(_ fd: Int32) -> Result<Int32, Errno> { retrying { edgelog_flock_exclusive(fd) } }

    /// Waits at most `timeoutMs` for `fd` to be readable. True: readable (or hung up: read tells).
    static func pollReadable(_ fd: Int32, timeoutMs: Int32) -> Result<Bool, Errno> {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return retrying { Glibc.poll(&entry, 1, timeoutMs) }.map { $0 > 0 }
    }

    static func sleep(ns: Int64) {
        guard ns > 0 else { return }
        var request = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }
}

extension Sys {
    static func pollWritable(_ fd: Int32, timeoutMs: Int32) -> Result<Bool, Errno> {
        var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        return retrying { Glibc.poll(&entry, 1, timeoutMs) }.map { $0 > 0 }
    }
}

/// Small process facilities for the runtime: sleeping, asking whether output is a terminal.
public enum Process {
    public static func sleep(milliseconds: Int) { Sys.sleep(ns: Int64(max(0, milliseconds)) * 1_000_000) }
    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }
    /// This process's id.
    public static var id: Int32 { Sys.processID }
}

// Directories and links (board files, the executable's own place).
extension Sys {
    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBufferPointer { b -> Int in
            guard let base = b.baseAddress else { return -1 }
            return Glibc.readlink(path, base, b.count - 1)
        }
        guard n > 0 else { return nil }
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

// Unix stream sockets (the status socket, docs/CLI.md "edgelog status").
extension Sys {
    /// sun_path holds 108 bytes with the terminating NUL.
    static let unixPathMax = 107

    /// A new AF_UNIX stream socket, close-on-exec (and non-blocking when asked).
    static func unixStreamSocket(nonBlocking: Bool = false) -> Result<Int32, Errno> {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        return retrying { Glibc.socket(AF_UNIX, type, 0) }
    }

    /// Calls `body` with `path` as a sockaddr_un; nil when it does not fit.
    static func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T? {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= unixPathMax, !bytes.contains(0) else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    static func bind(_ fd: Int32, _ path: String) -> Result<Int32, Errno> {
        withUnixAddress(path) { address, length in retrying { Glibc.bind(fd, address, length) } } ?? .failure(Errno(ENAMETOOLONG))
    }

    static func listen(_ fd: Int32, backlog: Int32) -> Result<Int32, Errno> { retrying { Glibc.listen(fd, backlog) } }

    /// connect(2). A connect interrupted by a signal goes on in the background: EINTR is not
    /// retried but waited out.
    static func connect(_ fd: Int32, _ path: String) -> Result<Int32, Errno> {
        let r: Result<Int32, Errno>? = withUnixAddress(path) { address, length in
            Glibc.connect(fd, address, length) == 0 ? .success(0) : .failure(Errno(errno))
        }
        switch r {
        case nil: return .failure(Errno(ENAMETOOLONG))
        case .failure(let e)? where e.code == EINTR:
            switch pollWritable(fd, timeoutMs: 1000) {
            case .success(true): return .success(0)
            case .success(false): return .failure(Errno(ETIMEDOUT))
            case .failure(let e): return .failure(e)
            }
        case let result?: return result
        }
    }

    /// accept4(2) of one waiting connection, non-blocking and close-on-exec.
    static func accept(_ fd: Int32) -> Result<Int32, Errno> {
        retrying { edgelog_accept_cloexec(fd) }
    }

    /// send(2) of all of `bytes` without SIGPIPE (a peer that went away is EPIPE, not the end of
    /// the process), waiting at most `timeoutMs` in all for room in the socket buffer.
    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, timeoutMs: Int32) -> Result<Int, Errno> {
        guard let base = bytes.baseAddress else { return .success(0) }
        var done = 0
        let deadline = clock(CLOCK_MONOTONIC) + Int64(timeoutMs) * 1_000_000
        while done < bytes.count {
            let n = Glibc.send(fd, base + done, bytes.count - done, Int32(MSG_NOSIGNAL))
            if n >= 0 {
                done += n
                continue
            }
            let e = errno
            if e == EINTR { continue }
            guard e == EAGAIN || e == EWOULDBLOCK else { return .failure(Errno(e)) }
            let left = (deadline - clock(CLOCK_MONOTONIC)) / 1_000_000
            guard left > 0 else { return .failure(Errno(ETIMEDOUT)) }
            if case .failure(let pe) = pollWritable(fd, timeoutMs: Int32(clamping: left)) { return .failure(pe) }
        }
        return .success(done)
    }

    /// Waits at most `timeoutMs` for one of `fds` to be readable (or hung up); the index of the
    /// first ready one, or nil on timeout.
    static func pollReadable(_ fds: [Int32], timeoutMs: Int32) -> Result<Int?, Errno> {
        var entries = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let r = entries.withUnsafeMutableBufferPointer { b in retrying { Glibc.poll(b.baseAddress, nfds_t(b.count), timeoutMs) } }
        return r.map { n in n > 0 ? entries.firstIndex { $0.revents != 0 } : nil }
    }

    /// A pipe whose ends are close-on-exec and non-blocking (a wake-up channel for poll).
    static func pipe() -> Result<(read: Int32, write: Int32), Errno> {
        var fds: [Int32] = [-1, -1]
        return fds.withUnsafeMutableBufferPointer { b in retrying { edgelog_pipe_cloexec(b.baseAddress) } }
            .map { _ in (fds[0], fds[1]) }
    }

    static func fchmod(_ fd: Int32, _ mode: mode_t) -> Result<Int32, Errno> { retrying { Glibc.fchmod(fd, mode) } }

    static func chmod(_ path: String, _ mode: mode_t) -> Result<Int32, Errno> { retrying { Glibc.chmod(path, mode) } }

    /// lstat(2): the link itself, not what it points to.
    static func lstat(_ path: String) -> Result<stat, Errno> {
        var st = stat()
        return retrying { Glibc.lstat(path, &st) }.map { _ in st }
    }

    static func unlinkChecked(_ path: String) -> Result<Int32, Errno> { retrying { Glibc.unlink(path) } }

    static var processID: Int32 { getpid() }
}
