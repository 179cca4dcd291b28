// Small local files (key files, the anchor file, the running executable): read whole, read in
// chunks, and replaced atomically so a power cut leaves the old file or the new one, never half.

import Glibc

public struct FileError: Error, Equatable, CustomStringConvertible, Sendable {
    public let operation: String
    public let path: String
    public let errno: Errno

    public var description: String { "\(operation) \(path): \(errno.message)" }
    /// The file does not exist.
    public var isMissing: Bool { errno.code == ENOENT }
}

public enum LocalFile {
    /// The whole file and its mode bits; refuses files over `limit` bytes.
    public static func read(_ path: String, limit: Int = 1 << 20) throws(FileError) -> (bytes: [UInt8], mode: UInt32) {
        let fd: Int32
        switch Sys.open(path, O_RDONLY | O_CLOEXEC) {
        case .success(let f): fd = f
        case .failure(let e): throw FileError(operation: "open", path: path, errno: e)
        }
        defer { Sys.close(fd) }
        let st: stat
        switch Sys.fstat(fd) {
        case .success(let s): st = s
        case .failure(let e): throw FileError(operation: "stat", path: path, errno: e)
        }
        guard Int(st.st_size) <= limit else { throw FileError(operation: "read", path: path, errno: Errno(EFBIG)) }
        var bytes: [UInt8] = []
        try forEachChunk(fd: fd, path: path) { bytes.append(contentsOf: $0) }
        return (bytes, UInt32(st.st_mode))
    }

    /// Calls `body` with the file's bytes, 1 MiB at a time (hashing the executable).
    public static func forEachChunk(_ path: String, _ body: (UnsafeRawBufferPointer) -> Void) throws(FileError) {
        let fd: Int32
        switch Sys.open(path, O_RDONLY | O_CLOEXEC) {
        case .success(let f): fd = f
        case .failure(let e): throw FileError(operation: "open", path: path, errno: e)
        }
        defer { Sys.close(fd) }
        try forEachChunk(fd: fd, path: path, body)
    }

    private static func forEachChunk(fd: Int32, path: String, _ body: (UnsafeRawBufferPointer) -> Void) throws(FileError) {
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        while true {
            switch Sys.read(fd, chunk) {
            case .success(0): return
            case .success(let n): body(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
            case .failure(let e): throw FileError(operation: "read", path: path, errno: e)
            }
        }
    }

    /// Replaces `path` with `bytes`: a temporary file beside it, fsync, rename, fsync of the directory.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) throws(FileError) {
        let temp = path + ".tmp"
        let fd: Int32
        switch Sys.open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode)) {
        case .success(let f): fd = f
        case .failure(let e): throw FileError(operation: "create", path: temp, errno: e)
        }
        let written = bytes.withUnsafeBytes { Sys.write(fd, $0) }
        let synced = Sys.fsync(fd)
        Sys.close(fd)
        if case .failure(let e) = written {
            Sys.unlink(temp)
            throw FileError(operation: "write", path: temp, errno: e)
        }
        if case .failure(let e) = synced {
            Sys.unlink(temp)
            throw FileError(operation: "fsync", path: temp, errno: e)
        }
        if case .failure(let e) = Sys.rename(temp, path) { throw FileError(operation: "rename", path: path, errno: e) }
        let directory = parent(of: path)
        if case .success(let dfd) = Sys.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) {
            _ = Sys.fsync(dfd)
            Sys.close(dfd)
        }
    }

    /// Creates the directory (and its parents) if missing.
    public static func makeDirectory(_ path: String, mode: UInt32 = 0o755) throws(FileError) {
        if Sys.exists(path) { return }
        let up = parent(of: path)
        if up != path && up != "." && up != "/" { try makeDirectory(up, mode: mode) }
        if case .failure(let e) = Sys.mkdir(path, mode_t(mode)), e.code != EEXIST {
            throw FileError(operation: "mkdir", path: path, errno: e)
        }
    }

    public static func exists(_ path: String) -> Bool {
        Sys.exists(path)
    }

    public static func rename(_ from: String, to: String) throws(FileError) {
        if case .failure(let e) = Sys.rename(from, to) { throw FileError(operation: "rename", path: from, errno: e) }
    }

    /// Removes an empty directory.
    public static func removeDirectory(_ path: String) throws(FileError) {
        if Glibc.rmdir(path) != 0 { throw FileError(operation: "rmdir", path: path, errno: Errno.current) }
    }

    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The target of a symbolic link (or of /proc/self/exe), or nil.
    public static func resolvedPath(_ path: String) -> String? { Sys.readLink(path) }

    /// The first `count` bytes (at most 4096) of a regular file, opened without blocking; nil for a
    /// missing file, a FIFO, a device, a directory, or a read error.
    public static func readRegularPrefix(_ path: String, count: Int) -> [UInt8]? {
        guard case .success(let fd) = Sys.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) else { return nil }
        defer { Sys.close(fd) }
        guard case .success(let info) = Sys.fstat(fd), (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        var buffer = [UInt8](repeating: 0, count: min(max(count, 0), 4096))
        guard case .success(let n) = buffer.withUnsafeMutableBytes({ Sys.read(fd, $0) }) else { return nil }
        return Array(buffer.prefix(n))
    }

    /// The absolute path with every symbolic link, `.` and `..` resolved (realpath(3)); nil when
    /// it does not exist.
    public static func canonicalPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Names in a directory (not . and ..); empty when it cannot be read.
    public static func list(_ directory: String) -> [String] { Sys.listDirectory(directory) }

    /// Removes a file (best effort: a file that is not there is fine).
    public static func remove(_ path: String) { Sys.unlink(path) }
}
