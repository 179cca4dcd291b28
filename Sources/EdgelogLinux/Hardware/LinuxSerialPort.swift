// A serial line through termios. One owner: the port is opened with TIOCEXCL (a second open fails
// with EBUSY, except for root, which the kernel lets through) and an exclusive flock (which also
// stops a second edgelog running as root). Reads wait with poll, so a silent slave costs exactly the
// timeout; the line is raw (no echo, no line discipline), and stale input can be discarded.

import EdgelogHAL
import Glibc

public final class LinuxSerialPort: SerialPort, @unchecked Sendable {
    public let path: String
    public let config: SerialConfig
    private var fd: Int32 = -1

    public init(path: String, config: SerialConfig) {
        self.path = path
        self.config = config
    }

    deinit { if fd >= 0 { Sys.close(fd) } }

    /// Opens, locks and configures the line. A held lock is reported as `.busy` naming the port.
    public func open() throws(HardwareError) {
        guard fd < 0 else { return }
        let f: Int32
        switch Sys.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) {
        case .success(let opened): f = opened
        case .failure(let e) where e.code == EBUSY:
            throw HardwareError(.busy, device: path, errno: e.code, detail: "the port is open exclusively by another program (TIOCEXCL)")
        case .failure(let e): throw .errno(e, device: path, doing: "open")
        }
        switch Sys.lockExclusive(f) {
        case .success: break
        case .failure(let e):
            Sys.close(f)
            if e.code == EWOULDBLOCK {
                throw HardwareError(.busy, device: path, errno: e.code, detail: "another process holds the port's lock (is a second edgelog using it?)")
            }
            throw .errno(e, device: path, doing: "flock")
        }
        let parity = config.parity == .none ? 0 : config.parity == .even ? 1 : 2
        if case .failure(let e) = Sys.serialConfigure(f, baud: config.baud, dataBits: config.dataBits, parity: parity, stopBits: config.stopBits) {
            Sys.close(f)
            throw .errno(e, device: path, doing: "configure \(config.baud) baud \(config.dataBits)\(config.parity.rawValue.prefix(1).uppercased())\(config.stopBits)")
        }
        if case .failure(let e) = Sys.serialExclusive(f) {
            Sys.close(f)
            throw .errno(e, device: path, doing: "TIOCEXCL")
        }
        fd = f
    }

    public func close() {
        if fd >= 0 { Sys.close(fd) }
        fd = -1
    }

    private func opened() throws(HardwareError) -> Int32 {
        try open()
        return fd
    }

    /// A failure that means the port itself is gone closes it, so the next call opens it again.
    private func failed(_ e: Errno, doing: String) -> HardwareError {
        let error = HardwareError.errno(e, device: path, doing: doing)
        if error.kind == .vanished || error.kind == .io { close() }
        return error
    }

    public func write(_ bytes: [UInt8]) throws(HardwareError) {
        let f = try opened()
        var done = 0
        while done < bytes.count {
            let result = bytes.withUnsafeBytes { Sys.write(f, UnsafeRawBufferPointer(rebasing: $0[done...])) }
            switch result {
            case .success(let n): done += n
            case .failure(let e) where e.code == EAGAIN:
                switch Sys.pollWritable(f, timeoutMs: 1000) {
                case .success(true): continue
                case .success(false):
                    throw HardwareError(.timeout, device: path, detail: "the line took no output for 1 s (\(done) of \(bytes.count) bytes written)")
                case .failure(let e): throw failed(e, doing: "write")
                }
            case .failure(let e): throw failed(e, doing: "write")
            }
        }
    }

    public func read(max: Int, timeoutMs: Int) throws(HardwareError) -> [UInt8] {
        let f = try opened()
        switch Sys.pollReadable(f, timeoutMs: Int32(clamping: timeoutMs)) {
        case .success(false): return []
        case .success(true): break
        case .failure(let e): throw failed(e, doing: "poll")
        }
        var buffer = [UInt8](repeating: 0, count: Swift.max(1, Swift.min(max, 4096)))
        switch buffer.withUnsafeMutableBytes({ Sys.read(f, $0) }) {
        case .success(0):
            // Readable with nothing to read: the line hung up (a USB adapter unplugged).
            close()
            throw HardwareError(.vanished, device: path, detail: "the port hung up")
        case .success(let n): return Array(buffer.prefix(n))
        case .failure(let e) where e.code == EAGAIN: return []
        case .failure(let e): throw failed(e, doing: "read")
        }
    }

    public func discardInput() throws(HardwareError) {
        let f = try opened()
        if case .failure(let e) = Sys.serialFlushInput(f) { throw failed(e, doing: "tcflush") }
    }
}
