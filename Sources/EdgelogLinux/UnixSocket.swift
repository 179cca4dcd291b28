// The status socket's two ends (docs/CLI.md, "edgelog status"): a listener that a running job holds
// in its state directory, owner-only, one per directory, and a client that asks once and reads one
// answer. The listener also holds an exclusive lock on a lock file beside the socket for its whole
// life: that lock, not the socket file, is what makes a second job on the same directory fail.

import Glibc
import Synchronization

public struct SocketError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The path does not fit in a sockaddr_un (107 bytes).
        case pathTooLong = "path_too_long"
        /// Another process holds the lock (a job runs on this directory).
        case inUse = "in_use"
        /// Something that is not a socket sits at the socket's path.
        case notASocket = "not_a_socket"
        /// Nothing listens: no socket file, or one a dead process left.
        case notRunning = "not_running"
        /// The socket is someone else's (owner-only permissions).
        case permission
        /// A listener took the connection but gave no complete answer in time.
        case timeout
        /// The answer was larger than the reader accepts.
        case tooLarge = "too_large"
        /// Any other failed system call.
        case io
    }

    public var kind: Kind
    public var path: String
    public var errno: Int32?
    public var detail: String
    /// For inUse: the pid the lock file names (checked as a number, not trusted further).
    public var pid: Int32?

    public init(_ kind: Kind, path: String, errno: Int32? = nil, pid: Int32? = nil, detail: String) {
        self.kind = kind
        self.path = path
        self.errno = errno
        self.pid = pid
        self.detail = detail
    }

    static func failed(_ e: Errno, path: String, doing: String) -> SocketError {
        let kind: Kind = e.code == EACCES || e.code == EPERM ? .permission : .io
        return SocketError(kind, path: path, errno: e.code, detail: "\(doing): \(e.message)")
    }

    public var description: String { "\(path): \(detail)" }
}

/// A listening Unix stream socket at a path, mode 0600, with its lock file held.
public final class UnixStreamListener: @unchecked Sendable {
    /// The longest socket path the kernel takes (sun_path without its NUL).
    public static let maxPathBytes = Sys.unixPathMax

    public let path: String
    public let lockPath: String
    private let fd: Int32
    private let lockFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let closed = Mutex(false)

    /// Takes the lock at `lockPath` (waiting at most `lockWaitMs` for a holder that is only
    /// looking), replaces a stale socket a dead process left at `path`, and listens there.
    public init(path: String, lockPath: String, lockWaitMs: Int = 500) throws(SocketError) {
        self.path = path
        self.lockPath = lockPath
        let length = path.utf8.count
        guard length <= Self.maxPathBytes else {
            throw SocketError(.pathTooLong, path: path, errno: ENAMETOOLONG,
                              detail: "the socket path is \(length) bytes; a Unix socket path holds at most \(Self.maxPathBytes): use a shorter state directory")
        }
        let locked = try Self.lock(lockPath, waitMs: lockWaitMs)
        var ok = false
        defer { if !ok { Sys.close(locked) } }

        try Self.removeStale(path)
        let socket: Int32
        switch Sys.unixStreamSocket() {
        case .success(let s): socket = s
        case .failure(let e): throw SocketError.failed(e, path: path, doing: "socket")
        }
        defer { if !ok { Sys.close(socket) } }
        // Linux creates the socket file with the socket inode's mode (less the umask): 0600 from
        // the first instant, so nobody else can connect in a window before the chmod below.
        _ = Sys.fchmod(socket, 0o600)
        if case .failure(let e) = Sys.bind(socket, path) {
            if e.code == ENAMETOOLONG {
                throw SocketError(.pathTooLong, path: path, errno: e.code, detail: "the socket path does not fit in a sockaddr_un")
            }
            throw SocketError.failed(e, path: path, doing: "bind")
        }
        defer { if !ok { Sys.unlink(path) } }
        if case .failure(let e) = Sys.chmod(path, 0o600) { throw SocketError.failed(e, path: path, doing: "chmod 600") }
        if case .failure(let e) = Sys.listen(socket, backlog: 16) { throw SocketError.failed(e, path: path, doing: "listen") }
        let pipe: (read: Int32, write: Int32)
        switch Sys.pipe() {
        case .success(let p): pipe = p
        case .failure(let e): throw SocketError.failed(e, path: path, doing: "pipe")
        }
        fd = socket
        lockFD = locked
        wakeRead = pipe.read
        wakeWrite = pipe.write
        ok = true
    }

    deinit { close() }

    /// Opens (creating, 0600) and locks the lock file; writes this process's id into it.
    private static func lock(_ lockPath: String, waitMs: Int) throws(SocketError) -> Int32 {
        let lockFD: Int32
        switch Sys.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600) {
        case .success(let f): lockFD = f
        case .failure(let e): throw SocketError.failed(e, path: lockPath, doing: "open the lock file")
        }
        let deadline = Sys.clock(CLOCK_MONOTONIC) + Int64(max(0, waitMs)) * 1_000_000
        while true {
            switch Sys.lockExclusive(lockFD) {
            case .success:
                _ = Sys.ftruncate(lockFD, 0)
                var text = "\(Sys.processID)\n"
                _ = text.withUTF8 { Sys.pwrite(lockFD, UnsafeRawBufferPointer($0), 0) }
                return lockFD
            case .failure(let e) where e.code == EWOULDBLOCK || e.code == EAGAIN:
                if Sys.clock(CLOCK_MONOTONIC) < deadline {
                    Sys.sleep(ns: 20_000_000)
                    continue
                }
                let pid = readPID(lockFD)
                Sys.close(lockFD)
                throw SocketError(.inUse, path: lockPath, errno: e.code, pid: pid,
                                  detail: "another edgelog is running with this state directory" + (pid.map { " (pid \($0))" } ?? "")
                                      + ": stop it first, or give each job its own --state-dir")
            case .failure(let e):
                Sys.close(lockFD)
                throw SocketError.failed(e, path: lockPath, doing: "lock")
            }
        }
    }

    /// The pid a lock file holds: decimal digits only, within the kernel's pid range.
    static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = buffer.withUnsafeMutableBytes { Sys.pread(fd, $0, 0) }
        guard case .success(let count) = n, count > 0 else { return nil }
        let text = buffer.prefix(count).prefix { $0 != 10 }
        guard !text.isEmpty, text.count <= 7, text.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let value = Int32(String(decoding: text, as: UTF8.self)), value > 0, value <= 4_194_304 else { return nil }
        return value
    }

    /// A socket file left by a process that died is removed; a live one, or anything that is not
    /// a socket, is left alone and refused.
    private static func removeStale(_ path: String) throws(SocketError) {
        let st: stat
        switch Sys.lstat(path) {
        case .success(let s): st = s
        case .failure(let e) where e.code == ENOENT: return
        case .failure(let e): throw SocketError.failed(e, path: path, doing: "lstat")
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw SocketError(.notASocket, path: path, detail: "exists and is not a socket: edgelog does not remove it; move it away")
        }
        switch UnixStreamClient.probe(path) {
        case .failure(let e) where e.kind == .notRunning:
            if case .failure(let u) = Sys.unlinkChecked(path), u.code != ENOENT {
                throw SocketError.failed(u, path: path, doing: "remove the stale socket")
            }
        case .failure(let e):
            throw e
        case .success:
            throw SocketError(.inUse, path: path, detail: "another process answers on this socket: stop it first, or give each job its own --state-dir")
        }
    }

    /// The next connection, waiting at most `timeoutMs`; nil on timeout or after `wake()`.
    public func accept(timeoutMs: Int32) throws(SocketError) -> UnixStreamConnection? {
        switch Sys.pollReadable([fd, wakeRead], timeoutMs: timeoutMs) {
        case .failure(let e): throw SocketError.failed(e, path: path, doing: "poll")
        case .success(nil): return nil
        case .success(1?):
            var sink = [UInt8](repeating: 0, count: 64)
            _ = sink.withUnsafeMutableBytes { Sys.read(wakeRead, $0) }
            return nil
        case .success:
            switch Sys.accept(fd) {
            case .success(let c): return UnixStreamConnection(fd: c, path: path)
            // The peer gave up before we took it, or another wake-up took it first.
            case .failure(let e) where e.code == EAGAIN || e.code == EWOULDBLOCK || e.code == ECONNABORTED: return nil
            case .failure(let e): throw SocketError.failed(e, path: path, doing: "accept")
            }
        }
    }

    /// Makes a waiting `accept` return nil now.
    public func wake() {
        var byte: UInt8 = 1
        _ = withUnsafeBytes(of: &byte) { Sys.write(wakeWrite, $0) }
    }

    /// Stops listening, removes the socket file and releases the lock (in that order, so the
    /// next job never finds a socket of ours). Safe to call twice.
    public func close() {
        let first = closed.withLock { was in
            defer { was = true }
            return !was
        }
        guard first else { return }
        Sys.close(fd)
        Sys.unlink(path)
        Sys.close(wakeRead)
        Sys.close(wakeWrite)
        Sys.close(lockFD)
    }
}

/// One accepted connection: the listener writes its answer and closes it.
public final class UnixStreamConnection {
    private let fd: Int32
    private let path: String
    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { Sys.close(fd) }

    /// Writes all of `bytes`, waiting at most `timeoutMs` for a peer that reads slowly.
    public func send(_ bytes: [UInt8], timeoutMs: Int32) throws(SocketError) {
        let r = bytes.withUnsafeBytes { Sys.send(fd, $0, timeoutMs: timeoutMs) }
        if case .failure(let e) = r { throw SocketError.failed(e, path: path, doing: "send") }
    }
}

public enum UnixStreamClient {
    /// Connects to `path` and reads until the listener closes: at most `limit` bytes, in at most
    /// `timeoutMs` in all. Sends nothing.
    public static func request(_ path: String, timeoutMs: Int, limit: Int = 1 << 20) -> Result<[UInt8], SocketError> {
        let fd: Int32
        switch connected(path, nonBlocking: false) {
        case .success(let f): fd = f
        case .failure(let e): return .failure(e)
        }
        defer { Sys.close(fd) }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = Sys.clock(CLOCK_MONOTONIC) + Int64(max(0, timeoutMs)) * 1_000_000
        while true {
            let left = (deadline - Sys.clock(CLOCK_MONOTONIC)) / 1_000_000
            guard left > 0 else {
                return .failure(SocketError(.timeout, path: path, detail: "a process holds the socket but gave no complete answer in \(timeoutMs) ms"))
            }
            switch Sys.pollReadable(fd, timeoutMs: Int32(clamping: left)) {
            case .failure(let e): return .failure(.failed(e, path: path, doing: "poll"))
            case .success(false): continue
            case .success(true): break
            }
            switch chunk.withUnsafeMutableBytes({ Sys.read(fd, $0) }) {
            case .failure(let e): return .failure(.failed(e, path: path, doing: "read"))
            case .success(0): return .success(answer)
            case .success(let n):
                guard answer.count + n <= limit else {
                    return .failure(SocketError(.tooLarge, path: path, detail: "the answer is larger than \(limit) bytes: not a status snapshot"))
                }
                answer.append(contentsOf: chunk[0..<n])
            }
        }
    }

    /// Whether something listens at `path` (connects and hangs up at once).
    public static func probe(_ path: String) -> Result<Void, SocketError> {
        connected(path, nonBlocking: true).map { Sys.close($0) }
    }

    private static func connected(_ path: String, nonBlocking: Bool) -> Result<Int32, SocketError> {
        guard path.utf8.count <= Sys.unixPathMax else {
            return .failure(SocketError(.pathTooLong, path: path, errno: ENAMETOOLONG,
                                        detail: "the socket path is \(path.utf8.count) bytes; a Unix socket path holds at most \(Sys.unixPathMax)"))
        }
        let fd: Int32
        switch Sys.unixStreamSocket(nonBlocking: nonBlocking) {
        case .success(let f): fd = f
        case .failure(let e): return .failure(.failed(e, path: path, doing: "socket"))
        }
        switch Sys.connect(fd, path) {
        case .success:
            return .success(fd)
        case .failure(let e):
            Sys.close(fd)
            switch e.code {
            case ENOENT: return .failure(SocketError(.notRunning, path: path, errno: e.code, detail: "no socket: no edgelog job runs with this state directory"))
            case ECONNREFUSED: return .failure(SocketError(.notRunning, path: path, errno: e.code, detail: "nothing listens: the socket was left by a job that ended"))
            // A full backlog: a listener is there, busy.
            case EAGAIN: return .failure(SocketError(.timeout, path: path, errno: e.code, detail: "a process holds the socket but takes no connection"))
            case EACCES, EPERM:
                return .failure(SocketError(.permission, path: path, errno: e.code,
                                            detail: "permission denied: the socket is its owner's only (mode 0600): run as the logger's user, or with sudo"))
            case ENOTSOCK: return .failure(SocketError(.notASocket, path: path, errno: e.code, detail: "not a socket"))
            default: return .failure(.failed(e, path: path, doing: "connect"))
            }
        }
    }
}
