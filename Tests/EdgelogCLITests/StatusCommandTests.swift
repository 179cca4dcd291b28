// `edgelog status` as a technician runs it when no job answers: from the store the board file
// names, saying it comes from the store and which numbers no seal vouches for; after a clean stop,
// after a kill, with the metadata edited; and its exit codes.

import Foundation
import Testing

@Suite("edgelog status", .serialized)
struct StatusCommandTests {
    /// An unsigned board without sensors whose store is created by the first run.
    static func board(_ s: Scratch, store: String = "store.img") throws -> String {
        let path = s.path("b.yaml")
        try "board: bench\nstore:\n  path: \(store)\n  size: 1M\n  segment_size: 8K\n  unsigned: true\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A short state directory (the status socket's path must fit in 107 bytes).
    static func stateDir() throws -> String {
        let dir = "/tmp/elsc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("nothing runs and no board: not running (exit 10), in words and as JSON")
    func notRunning() throws {
        let dir = try Self.stateDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = try edgelog(["status", "--state-dir", dir])
        #expect(text.code == 10 && text.out.contains("edgelog is NOT running on \(dir)") && text.out.contains("give --board FILE"), "\(text.out)")
        let json = try edgelog(["status", "--state-dir", dir, "--json"])
        let object = try #require(jsonLines(json.out).first)
        #expect(json.code == 10 && object["origin"] as? String == "none" && object["state"] as? String == "not_running")
    }

    @Test("from the store after a clean stop: labelled as the store's account, clean, the metadata checked against the seal")
    func fromStoreClean() throws {
        let s = try Scratch()
        let dir = try Self.stateDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let board = try Self.board(s)
        #expect(try edgelog(["run", "--board", board, "--state-dir", dir, "--duration", "0.5"]).code == 0)
        let text = try edgelog(["status", "--state-dir", dir, "--board", board])
        #expect(text.code == 10, "\(text.err)")
        #expect(text.out.contains("From the store, read-only"))
        #expect(text.out.contains("shutdown    clean: the last job closed the store"), "\(text.out)")
        #expect(text.out.contains("checked     metadata agrees with the sealed state of frame"), "\(text.out)")
        #expect(text.out.contains("not sealed  clean_flag"))
        let json = try edgelog(["status", "--state-dir", dir, "--board", board, "--json"])
        let object = try #require(jsonLines(json.out).first)
        let store = try #require(object["store"] as? [String: Any])
        #expect(object["origin"] as? String == "store" && object["state"] as? String == "not_running")
        #expect(store["clean"] as? Bool == true && store["head_segment_id"] as? Int == 1 && store["unverified"] as? [String] == ["clean_flag"])
        #expect((object["power"] as? [String: Any])?["bo_event"] as? Int == 0)
    }

    @Test("after a kill the store says NOT clean; edited counters are named as not vouched for")
    func fromStoreKilledAndEdited() throws {
        let s = try Scratch()
        let dir = try Self.stateDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let board = try Self.board(s)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binary.edgelog)
        process.arguments = ["run", "--board", board, "--state-dir", dir]
        process.standardError = FileHandle.nullDevice
        try process.run()
        let store = dir + "/store.img"
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: store) { Thread.sleep(forTimeInterval: 0.05) }
        Thread.sleep(forTimeInterval: 1.5)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let killed = try edgelog(["status", "--state-dir", dir, "--board", board])
        #expect(killed.code == 10 && killed.out.contains("NOT clean: the last job did not close the store"), "\(killed.out)")

        let original = try Data(contentsOf: URL(fileURLWithPath: store))
        // bo_event (A.8 offset 192) is shown as sealed, whatever the slot says; unexp_rst (140) as
        // the slot says, labelled with what the head segment vouches for.
        try editMeta6(editMeta6(original, 192, 7, size: 4), 140, 9, size: 4).write(to: URL(fileURLWithPath: store))
        let edited = try edgelog(["status", "--state-dir", dir, "--board", board, "--json"])
        let object = try #require(jsonLines(edited.out).first)
        let report = try #require(object["store"] as? [String: Any])
        let unverified = report["unverified"] as? [String] ?? []
        #expect(unverified.contains { $0.hasPrefix("unexp_rst (the head segment vouches for") }, "\(unverified)")
        #expect((report["metadata_check"] as? String)?.hasPrefix("CONTRADICTS") == true, "\(report)")
        #expect((report["metadata_check"] as? String)?.contains("bo_event is 7, sealed 0") == true, "\(report)")
        #expect((object["power"] as? [String: Any])?["bo_event"] as? Int == 0)
        #expect((object["power"] as? [String: Any])?["unexp_rst"] as? Int == 9)
    }

    @Test("errors keep their codes: a store that is not there (6), not a store (2), a board mistake (64)")
    func errors() throws {
        let s = try Scratch()
        let dir = try Self.stateDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let missing = try edgelog(["status", "--state-dir", dir, "--board", try Self.board(s, store: "nothing-here.img")])
        #expect(missing.code == 6 && missing.err.contains("nothing-here.img"), "\(missing.err)")
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: dir + "/zero.img"))
        let zero = try edgelog(["status", "--state-dir", dir, "--board", try Self.board(s, store: "zero.img")])
        #expect(zero.code == 2, "\(zero.err)")
        let bad = s.path("bad.yaml")
        try "board: x\nleds:\n  blinky: {name: a}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let usage = try edgelog(["status", "--state-dir", dir, "--board", bad])
        #expect(usage.code == 64 && usage.err.contains("bad.yaml"), "\(usage.err)")
    }
}
