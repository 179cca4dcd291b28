// The status socket of a running job: DIR/edgelog.sock (mode 0600) in the state directory, with the
// lock DIR/edgelog.lock held for the job's life. Each connection gets one JSON snapshot (one line)
// and is closed; the client sends nothing. `open` binds at once, before the job touches its store,
// so that a second job on the same state directory is refused before it opens anything, and
// starts answering from its own thread at once: a long recovery at start shows as phase
// "starting", and a job whose tasks are stuck still answers. The service's run() waits for the
// group's shutdown, then stops the thread and removes the socket.

import Dispatch
import EdgelogLinux
import Logging
import ServiceLifecycle
import Synchronization

public final class StatusSocketService: Service, @unchecked Sendable {
    public static let socketName = "edgelog.sock"
    public static let lockName = "edgelog.lock"

    public static func socketPath(stateDir: String) -> String { stateDir + "/" + socketName }
    public static func lockPath(stateDir: String) -> String { stateDir + "/" + lockName }

    /// The longest state directory path whose socket path the kernel takes.
    public static var maxStateDirBytes: Int { UnixStreamListener.maxPathBytes - socketName.utf8.count - 1 }

    public let listener: UnixStreamListener
    private let board: StatusBoard
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let served = Atomic<UInt64>(0)
    private let finished = DispatchSemaphore(value: 0)

    /// Takes the state directory's lock and listens on its socket (creating the directory).
    /// Errors: inUse (another job runs here), pathTooLong, notASocket, permission, io.
    public static func open(stateDir: String, board: StatusBoard, logger: Logger) throws(SocketError) -> StatusSocketService {
        let path = socketPath(stateDir: stateDir)
        guard path.utf8.count <= UnixStreamListener.maxPathBytes else {
            throw SocketError(.pathTooLong, path: path,
                              detail: "the status socket path is \(path.utf8.count) bytes; a Unix socket path holds at most \(UnixStreamListener.maxPathBytes): use a state directory of at most \(maxStateDirBytes) bytes")
        }
        do { try LocalFile.makeDirectory(stateDir) } catch {
            throw SocketError(.io, path: stateDir, errno: error.errno.code, detail: "cannot create the state directory: \(error.errno.message)")
        }
        do {
            let listener = try UnixStreamListener(path: path, lockPath: lockPath(stateDir: stateDir))
            return StatusSocketService(listener: listener, board: board, logger: logger)
        } catch where error.kind == .io || error.kind == .permission {
            // A state directory on a filesystem without sockets (vfat, 9p, some FUSE): the socket
            // goes to /run/edgelog under a name derived from the directory; `status` looks there too.
            let fallback = fallbackSocketPath(stateDir: stateDir)
            do { try LocalFile.makeDirectory(fallbackDirectory, mode: 0o700) } catch let made {
                throw SocketError(.io, path: fallbackDirectory, errno: made.errno.code,
                                  detail: "the state directory cannot hold a socket (\(error.detail)) and \(fallbackDirectory) cannot be made: \(made.errno.message)")
            }
            let listener = try UnixStreamListener(path: fallback, lockPath: lockPath(stateDir: stateDir))
            logger.notice("status socket at \(fallback): the state directory \(stateDir) cannot hold one (\(error.detail))")
            return StatusSocketService(listener: listener, board: board, logger: logger)
        }
    }

    public static let fallbackDirectory = "/run/edgelog"

    /// /run/edgelog/<FNV-1a 64 of the state directory's absolute path>.sock
    public static func fallbackSocketPath(stateDir: String) -> String {
        let absolute = LocalFile.canonicalPath(stateDir) ?? stateDir
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in absolute.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        let hex = String(hash, radix: 16)
        return fallbackDirectory + "/" + String(repeating: "0", count: 16 - hex.count) + hex + ".sock"
    }

    init(listener: UnixStreamListener, board: StatusBoard, logger: Logger) {
        self.listener = listener
        self.board = board
        self.logger = logger
        DispatchQueue(label: "edgelog.status-socket").async { self.serve() }
    }

    /// Connections answered so far.
    public var answered: UInt64 { served.load(ordering: .relaxed) }

    public func run() async throws {
        // Until the group shuts down (or the task is cancelled: the same for us).
        try? await gracefulShutdown()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                self.close()
                done.resume()
            }
        }
    }

    /// Stops answering, removes the socket and releases the lock (run() does this at shutdown; a
    /// job that fails before its group runs calls it). Waits for an answer being sent; safe twice.
    public func close() {
        if !stopping.exchange(true, ordering: .relaxed) {
            listener.wake()
            finished.wait()
        }
        listener.close()
    }

    private func serve() {
        defer { finished.signal() }
        var failures = 0
        while !stopping.load(ordering: .relaxed) {
            let connection: UnixStreamConnection?
            do { connection = try listener.accept(timeoutMs: 60_000) } catch {
                failures += 1
                if failures == 1 { logger.warning("status socket: \(error)") }
                Process.sleep(milliseconds: 100)
                continue
            }
            guard let connection else { continue }
            failures = 0
            let text = StatusJSON.encode(board.snapshot()) + "\n"
            // A client that does not read within a second loses its answer, nobody else's.
            try? connection.send(Array(text.utf8), timeoutMs: 1000)
            served.wrappingAdd(1, ordering: .relaxed)
        }
    }
}

extension SocketError {
    /// How `run` ends when the status socket cannot be opened: a state directory too long for a
    /// socket path is a usage error (exit 64); another job on it, or a file in the way, is exit 6,
    /// as a serial line another program holds.
    public var jobError: JobError {
        kind == .pathTooLong ? .input("status socket \(description)") : .hardware("status socket \(description)")
    }
}
