// The status socket and what `edgelog status` makes of an answer: owner-only permissions, one job
// per state directory, a dead job's socket replaced, a path too long for the kernel named; the
// snapshot's JSON round trip; answers that are garbage, inconsistent or never come; text that
// cannot drive a terminal.

import EdgelogCore
import EdgelogLinux
import EdgelogRuntime
import EdgelogStore
import Foundation
import Glibc
import Logging
import Testing

/// A short scratch directory (socket paths are limited to 107 bytes).
final class SocketDir {
    let path: String
    init() throws {
        path = "/tmp/elst-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    var socket: String { StatusSocketService.socketPath(stateDir: path) }
    var lock: String { StatusSocketService.lockPath(stateDir: path) }
}

/// A socket bound at `path` and closed without unlinking: what a killed job leaves behind.
func leaveStaleSocket(_ path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
        raw[bytes.count] = 0
    }
    let r = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    try #require(r == 0)
    listen(fd, 1)
    close(fd)
}

func mode(_ path: String) -> (mode: UInt32, isSocket: Bool)? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return (UInt32(st.st_mode) & 0o777, (st.st_mode & S_IFMT) == S_IFSOCK)
}

/// A server on `dir`'s socket that answers each connection with `answer` (nil: holds it, silent).
func fakeServer(_ dir: SocketDir, answer: [UInt8]?, connections: Int = 1) throws -> UnixStreamListener {
    let listener = try UnixStreamListener(path: dir.socket, lockPath: dir.lock, lockWaitMs: 0)
    DispatchQueue.global().async {
        var held: [UnixStreamConnection] = []
        for _ in 0..<connections {
            guard let c = try? listener.accept(timeoutMs: 5000) else { return }
            if let answer { try? c.send(answer, timeoutMs: 1000) } else { held.append(c) }
        }
        Thread.sleep(forTimeInterval: 2)
        held.removeAll()
    }
    return listener
}

@Suite("Status socket and snapshot", .serialized)
struct StatusSocketTests {
    static let logger = Logger(label: "test")

    static func fullSnapshot() -> StatusSnapshot {
        let board = StatusBoard(board: "sim", pid: 4242, startedWallNs: 1_795_000_000_000_000_000)
        board.set(.sensorFault, active: true, detail: "meter.modbus7 (12 in a row) – ünïcode \u{2028}")
        board.set(.timeNotSynchronized, active: true, detail: "maxerror 16 s")
        board.update {
            $0.phase = .running
            $0.power = .holding
            $0.boEvent = 3
            $0.unexpRst = 2
            $0.holdUp = HoldUpStatus(verdict: "shrunk", holdUpMs: 200, worstWindowUs: 150_000, marginPct: 30, fillLimitBytes: 12_000)
            $0.lastSafeCommit = SafeCommitWindow(trigger: "gpio", input: "gpiochip0/PWR_FAIL", edgeToFreezeUs: 120, edgeToCleanUs: 41_000,
                                                 committedRecords: 17, commits: 2, withinBudget: true)
            $0.lastSafeCommitMonoNs = Monitor.monotonicNs()
            $0.store = StoreFacts(path: "/var/lib/edgelog/store.img", headSegmentID: 42, recordsTotal: 1234, clean: false,
                                  lastCommitMonoNs: Monitor.monotonicNs(), lastCommitID: 42)
            $0.sources = [SourceFacts(name: "env.bme280", failing: 0, failures: 0),
                          SourceFacts(name: "meter.modbus7", failing: 12, failures: 40, lastError: "timeout on sim:rs485 slave 7")]
            $0.timeSynced = false
            $0.uplinkBacklogSegments = 5
        }
        return board.snapshot()
    }

    @Test("a snapshot survives its JSON: every field, non-ASCII escaped on the wire")
    func roundTrip() throws {
        let snapshot = Self.fullSnapshot()
        #expect(snapshot.state == .condition && snapshot.category == "S" && snapshot.conditions.map(\.condition) == [.sensorFault, .timeNotSynchronized])
        let text = StatusJSON.encode(snapshot)
        #expect(text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "one line of ASCII")
        #expect(text.contains("\"status_version\":1") && text.contains("\"led_code\":\"3-2\"") && text.contains("\"bo_event\":3"))
        let back = try StatusJSON.decode(Array(text.utf8))
        #expect(back == snapshot)
    }

    @Test("answers that are not snapshots are refused with a reason")
    func hostileAnswers() throws {
        let good = StatusJSON.encode(Self.fullSnapshot())
        let bad: [String: String] = [
            "garbage": "\u{1B}[2J not json",
            "wrong category": good.replacingOccurrences(of: "\"category\":\"S\",\"condition\":\"sensor_fault\"", with: "\"category\":\"F\",\"condition\":\"sensor_fault\""),
            "unknown condition": good.replacingOccurrences(of: "\"sensor_fault\"", with: "\"melted\""),
            "negative time": good.replacingOccurrences(of: "\"active_for_ms\":0", with: "\"active_for_ms\":-5"),
            "number too large": good.replacingOccurrences(of: "\"bo_event\":3", with: "\"bo_event\":99999999999"),
            "newer version": good.replacingOccurrences(of: "\"status_version\":1", with: "\"status_version\":2"),
            "ok with conditions": good.replacingOccurrences(of: "\"state\":\"condition\"", with: "\"state\":\"ok\""),
        ]
        for (name, text) in bad {
            #expect(text != good, "\(name): the test did not change the answer")
            #expect(throws: StatusAnswerError.self, "\(name)") { try StatusJSON.decode(Array(text.utf8)) }
        }
    }

    @Test("the socket is its owner's only (0600), one job per state directory, removed at close")
    func permissionsAndSecondJob() throws {
        let dir = try SocketDir()
        let board = StatusBoard()
        let service = try StatusSocketService.open(stateDir: dir.path, board: board, logger: Self.logger)
        let m = try #require(mode(dir.socket))
        #expect(m.isSocket && m.mode == 0o600, "mode \(String(m.mode, radix: 8))")
        #expect(mode(dir.lock)?.mode == 0o600)
        do {
            _ = try StatusSocketService.open(stateDir: dir.path, board: board, logger: Self.logger)
            Issue.record("a second job on the same state directory was not refused")
        } catch {
            #expect(error.kind == .inUse && error.pid == getpid(), "\(error)")
            #expect(error.description.contains("another edgelog is running with this state directory (pid \(getpid()))"))
        }
        service.close()
        #expect(mode(dir.socket) == nil, "the socket is removed")
        let again = try StatusSocketService.open(stateDir: dir.path, board: board, logger: Self.logger)
        again.close()
    }

    @Test("a socket a killed job left is replaced; a file that is not a socket is refused; a long path is named")
    func staleAndMistakes() throws {
        let dir = try SocketDir()
        try leaveStaleSocket(dir.socket)
        #expect(mode(dir.socket)?.isSocket == true)
        if case .notRunning(let why) = StatusQuery.ask(stateDir: dir.path) {
            #expect(why.contains("left by a job that ended"))
        } else {
            Issue.record("a stale socket reads as a running job")
        }
        let service = try StatusSocketService.open(stateDir: dir.path, board: StatusBoard(), logger: Self.logger)
        #expect(mode(dir.socket)?.mode == 0o600)
        service.close()

        try Data("not a socket".utf8).write(to: URL(fileURLWithPath: dir.socket))
        let notSocket = #expect(throws: SocketError.self) { try StatusSocketService.open(stateDir: dir.path, board: StatusBoard(), logger: Self.logger) }
        #expect(notSocket?.kind == .notASocket)
        #expect(FileManager.default.fileExists(atPath: dir.socket), "left where it was")

        let long = dir.path + "/" + String(repeating: "d", count: 100)
        let tooLong = #expect(throws: SocketError.self) { try StatusSocketService.open(stateDir: long, board: StatusBoard(), logger: Self.logger) }
        #expect(tooLong?.kind == .pathTooLong && tooLong?.description.contains("at most 107") == true, "\(String(describing: tooLong))")
        if case .notRunning = StatusQuery.ask(stateDir: long) {} else { Issue.record("a too long state directory is not reported as not running") }
    }

    @Test("the service answers each connection with the board's snapshot; edgelog status reads it, exits by category")
    func serviceAnswers() async throws {
        let dir = try SocketDir()
        let board = StatusBoard(board: "sim")
        board.update { $0.phase = .running }
        let service = try StatusSocketService.open(stateDir: dir.path, board: board, logger: Self.logger)
        let task = Task { try await service.run() }
        defer { task.cancel() }

        guard case .running(let ok) = StatusQuery.ask(stateDir: dir.path) else {
            Issue.record("no answer")
            return
        }
        #expect(ok.state == .ok && ok.pid == getpid() && ok.board == "sim")
        #expect(try StatusReport.make(stateDir: dir.path, boardPath: nil, json: false).outcome == .ok)

        board.set(.sensorFault, active: true, detail: "meter.modbus7 (2 in a row)")
        board.set(.uplinkBacklog, active: true, detail: "5 segments")
        let report = try StatusReport.make(stateDir: dir.path, boardPath: nil, json: false)
        #expect(report.outcome == .condition(.outOfSpecification))
        #expect(report.output.contains("sensor_fault: NE 107 S (Out of specification), LED code 3-2 = 3 long, 2 short"), "\(report.output)")
        #expect(report.output.contains("detail: meter.modbus7 (2 in a row)") && report.output.contains("uplink_backlog"))
        let json = try StatusReport.make(stateDir: dir.path, boardPath: nil, json: true)
        #expect(try StatusJSON.decode(Array(json.output.utf8)).conditions.count == 2)

        task.cancel()
        _ = await task.result
        #expect(service.answered == 4)
        #expect(mode(dir.socket) == nil, "the socket is removed when the service ends")
        guard case .notRunning = StatusQuery.ask(stateDir: dir.path) else {
            Issue.record("still answering")
            return
        }
    }

    @Test("the binary's edgelog status against a live service: the condition in words, exit 13 (S); exit 0 when it clears")
    func binaryAgainstService() async throws {
        let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/edgelog").path
        let dir = try SocketDir()
        let board = StatusBoard(board: "bench")
        board.set(.sensorFault, active: true, detail: "env.bme280 (\u{1B}[31m5 in a row)")
        let service = try StatusSocketService.open(stateDir: dir.path, board: board, logger: Self.logger)
        let task = Task { try await service.run() }
        func status(_ args: [String]) throws -> (code: Int32, out: String) {
            let p = Foundation.Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = ["status", "--state-dir", dir.path] + args
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        let r = try status([])
        #expect(r.code == 13, "\(r.out)")
        #expect(r.out.contains("edgelog is running on \(dir.path): pid \(getpid())") && r.out.contains("LED code 3-2 = 3 long, 2 short"), "\(r.out)")
        #expect(r.out.contains("detail: env.bme280 (\\x1b[31m5 in a row)"), "escaped, not obeyed: \(r.out)")
        let json = try status(["--json"])
        #expect(json.code == 13 && json.out.contains("\"category\":\"S\""))
        board.set(.sensorFault, active: false)
        #expect(try status([]).code == 0)
        board.set(.storageFault, active: true)
        #expect(try status([]).code == 11)
        task.cancel()
        _ = await task.result
        #expect(try status([]).code == 10)
    }

    @Test("a socket that answers garbage, or nothing: no answer, within the timeout")
    func badServers() throws {
        let dir = try SocketDir()
        let garbage = try fakeServer(dir, answer: Array("\u{1B}]0;owned\u{07}{\"x\":1}\n".utf8))
        guard case .noAnswer(let why) = StatusQuery.ask(stateDir: dir.path) else {
            Issue.record("garbage accepted")
            return
        }
        #expect(why.contains("not a status snapshot"))
        garbage.close()

        let silent = try fakeServer(dir, answer: nil)
        let start = Monitor.monotonicNs()
        let report = try StatusReport.make(stateDir: dir.path, boardPath: nil, json: false, timeoutMs: 300)
        let tookMs = (Monitor.monotonicNs() - start) / 1_000_000
        #expect(report.outcome == .noAnswer && tookMs >= 290 && tookMs < 2000, "\(tookMs) ms")
        #expect(report.output.contains("DOES NOT ANSWER") && report.output.utf8.allSatisfy { $0 == 10 || ($0 >= 0x20 && $0 < 0x7F) })
        silent.close()
    }

    @Test("the text for a terminal escapes what came from the job (escape sequences, newlines)")
    func terminalSafe() throws {
        let board = StatusBoard(board: "b\u{1B}[31mred")
        board.set(.storageFault, active: true, detail: "write error\n\u{1B}[2Jfake line")
        board.update { $0.sources = [SourceFacts(name: "s\u{7}", failing: 1, failures: 1, lastError: "\r\u{9B}x")] }
        let text = StatusText.render(board.snapshot(), stateDir: "/var/lib/\u{1B}edgelog")
        #expect(!text.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x0D || $0.value == 0x9B })
        #expect(text.contains("detail: write error\\x0a\\x1b[2Jfake line"))
        #expect(text.contains("storage_fault: NE 107 F (Failure), LED code 1-1 = 1 long, 1 short"))
    }
}
