// The command line as a technician and a script meet it: exit codes, messages, files left untouched.

import Foundation
import Testing

@Suite("edgelog command line", .serialized)
struct CLITests {
    @Test("format, ingest, export, inspect: the round trip")
    func roundTrip() throws {
        let s = try Scratch()
        let store = s.path("store.img")
        #expect(try edgelog(["format", "--device", store, "--size", "2M", "--segment-size", "8K"]).code == 0)
        let input = (1...50).map { "{\"t\":\($0),\"unit\":\"C\"}" }.joined(separator: "\n") + "\n"
        let ingest = try edgelog(["ingest", "--unsigned", "--device", store, "--source", "probe1"], input: input)
        #expect(ingest.code == 0, "\(ingest.err)")
        let acks = jsonLines(ingest.out)
        #expect(!acks.isEmpty)
        #expect(acks.last?["last_seq"] as? Int == 50)
        let rows = try exportedData(store, source: "probe1")
        #expect(rows.map(\.seq) == Array(1...50))
        #expect(rows.map { $0.payload["t"] as? Int } == (1...50).map { $0 })
        let inspect = try edgelog(["inspect", "--device", store, "--json", "--verify"])
        #expect(inspect.code == 0)
        let state = try #require(try JSONSerialization.jsonObject(with: Data(inspect.out.utf8)) as? [String: Any])
        #expect(state["records_total"] as? Int == 50)
        #expect(state["clean_flag"] as? Bool == true)
        // 50 data records and the writer's boot record.
        #expect(state["verified_records"] as? Int == 51)
        let csv = try edgelog(["export", "--device", store, "--format", "csv"])
        #expect(csv.out.hasPrefix("segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,boot_ns,boot_seq,time_flags,maxerror_us,esterror_us,last_sync_ns,payload\n"))
        // Every record carries the time quality of its capture (FORMAT.md 3.2): the kernel's errors
        // from a real adjtimex sample, and the boot record's line agrees with its own payload.
        let lines = jsonLines(try edgelog(["export", "--device", store]).out)
        #expect(lines.count == 51)
        for line in lines {
            #expect(line["maxerror_us"] is Int && line["esterror_us"] is Int, "not sampled: \(line)")
            #expect((line["boot_seq"] as? Int ?? 0) >= 1)
            #expect(line["time_flags"] is Int)
        }
        let boot = try #require(lines.first { $0["type"] as? String == "boot" })
        let payload = try #require(boot["payload"] as? [String: Any])
        #expect(boot["maxerror_us"] as? Int == payload["maxerror_us"] as? Int)
        #expect(boot["esterror_us"] as? Int == payload["esterror_us"] as? Int)
        #expect(((boot["time_flags"] as? Int ?? 0) & 1 == 1) == (payload["synced"] as? Bool))
        #expect((boot["last_sync_ns"] as? Int) == (payload["last_sync_wall_ns"] as? Int))
        #expect(csv.out.contains(",data,\"probe1\",1,2,"))  // mono_ctr 1 is the boot record; the source is quoted
        #expect(csv.out.contains("\"{\"\"t\"\":1,\"\"unit\"\":\"\"C\"\"}\""))
    }

    @Test("output cannot be turned against its reader: formula-like source names and control characters are refused; verify text is escaped")
    func hostileText() throws {
        let s = try Scratch()
        let store = s.path("store.img")
        #expect(try edgelog(["format", "--device", store, "--size", "1M", "--segment-size", "8K"]).code == 0)
        for name in ["-2-3", "=cmd", "+1", "@SUM", ".hidden"] {
            let r = try edgelog(["ingest", "--unsigned", "--device", store, "--source=" + name], input: "{\"a\":1}\n")
            #expect(r.code == 64 && r.err.contains("letter or a digit"), "\(name): \(r.code) \(r.err)")
        }
        // A tab or a carriage return between tokens is refused; the next line is still taken.
        let ingest = try edgelog(["ingest", "--unsigned", "--device", store, "--source", "ok"],
                                 input: "{\"a\":\t1}\n{\"a\":1,\r\"b\":2}\n{\"c\":3}\n")
        #expect(ingest.code == 0 && ingest.err.contains("line 1: rejected: control character"), "\(ingest.err)")
        #expect(ingest.err.contains("line 2: rejected: control character"))
        #expect(try exportedData(store, source: "ok").count == 1)
        // An anchor file full of terminal escapes: the text report prints them as \xNN.
        let anchor = s.path("anchor.json")
        try Data("\u{1B}[2J\u{1B}[1;1HPASS: all good\r\n{\"x\":\"\u{1B}]0;title\u{07}\"}".utf8).write(to: URL(fileURLWithPath: anchor))
        let verdict = try edgelog(["verify", "--device", store, "--allow-unsigned", "--anchor", anchor])
        #expect(verdict.code == 1 && verdict.out.contains("anchor_malformed"), "\(verdict.out)")
        #expect(!verdict.out.utf8.contains(0x1B) && !verdict.out.utf8.contains(0x0D) && !verdict.out.utf8.contains(0x07))
    }

    @Test("export --since-commit keeps only later commits")
    func sinceCommit() throws {
        let s = try Scratch()
        let store = s.path("store.img")
        try edgelog(["format", "--device", store, "--size", "1M"])
        try edgelog(["ingest", "--unsigned", "--device", store], input: "{\"a\":1}\n{\"a\":2}\n")
        try edgelog(["ingest", "--unsigned", "--device", store], input: "{\"a\":3}\n")
        let all = jsonLines(try edgelog(["export", "--device", store]).out)
        let last = try #require(all.compactMap { $0["commit_id"] as? Int }.max())
        let later = jsonLines(try edgelog(["export", "--device", store, "--since-commit", String(last - 1)]).out)
        #expect(!later.isEmpty)
        #expect(later.allSatisfy { ($0["commit_id"] as? Int) == last })
        #expect(later.count < all.count)
    }

    @Test("lines that are not JSON objects are reported with their line number and skipped")
    func rejectsBadLines() throws {
        let s = try Scratch()
        let store = s.path("store.img")
        try edgelog(["format", "--device", store, "--size", "1M"])
        let ingest = try edgelog(["ingest", "--unsigned", "--device", store], input: "{\"a\":1}\nnot json\n[1]\n{\"b\":2\n{\"c\":3}\n")
        #expect(ingest.code == 0)
        #expect(ingest.err.contains("line 2: rejected"))
        #expect(ingest.err.contains("line 3: rejected"))
        #expect(ingest.err.contains("line 4: rejected"))
        #expect(ingest.err.contains("5 lines, 2 records accepted, 3 rejected"))
        #expect(try exportedData(store, source: "stdin").map(\.seq) == [1, 2])
    }

    @Test("format refuses an existing store (exit 7) unless --force")
    func formatRefuses() throws {
        let s = try Scratch()
        let store = s.path("store.img")
        try edgelog(["format", "--device", store, "--size", "1M"])
        try edgelog(["ingest", "--unsigned", "--device", store], input: "{\"a\":1}\n")
        let before = try Data(contentsOf: URL(fileURLWithPath: store))
        let again = try edgelog(["format", "--device", store, "--size", "1M"])
        #expect(again.code == 7)
        #expect(again.err.contains("already holds an edgelog store"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: store)) == before)
        let resized = try edgelog(["format", "--device", store, "--size", "2M"])
        #expect(resized.code == 7)
        #expect(try Data(contentsOf: URL(fileURLWithPath: store)) == before, "a refused format must not touch the file")
        #expect(try edgelog(["format", "--device", store, "--force"]).code == 0)
        #expect(try exportedData(store, source: "stdin").isEmpty)
    }

    @Test("not a store, truncated, newer format, missing: distinct exit codes, file untouched")
    func refusals() throws {
        let s = try Scratch()
        let junk = s.path("junk.bin")
        let bytes = Data((0..<300_000).map { _ in UInt8.random(in: 0...255) })
        #expect(FileManager.default.createFile(atPath: junk, contents: bytes), "could not write the test file")
        for command in [["export"], ["inspect"], ["ingest", "--unsigned"]] {
            let r = try edgelog(command + ["--device", junk], input: "{\"a\":1}\n")
            #expect(r.code == 2, "\(command): \(r.err)")
            #expect(r.err.contains("not an edgelog store"))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: junk)) == bytes)

        let store = s.path("store.img")
        try edgelog(["format", "--device", store, "--size", "1M"])
        let full = try Data(contentsOf: URL(fileURLWithPath: store))
        let cut = s.path("cut.img")
        #expect(FileManager.default.createFile(atPath: cut, contents: full.prefix(600_000)), "could not write the test file")
        let truncated = try edgelog(["inspect", "--device", cut])
        #expect(truncated.code == 2)
        #expect(truncated.err.contains("truncated"))

        var newer = full
        newer[8] = 9
        let newerPath = s.path("newer.img")
        #expect(FileManager.default.createFile(atPath: newerPath, contents: newer), "could not write the test file")
        let r = try edgelog(["ingest", "--unsigned", "--device", newerPath], input: "{\"a\":1}\n")
        #expect(r.code == 5)
        #expect(r.err.contains("format version 9"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: newerPath)) == newer)

        let missing = try edgelog(["export", "--device", s.path("nope.img")])
        #expect(missing.code == 6)
        #expect(missing.err.contains("no such file"))
    }

    /// Formats the smallest format 6 store (its metadata and 4 segments of 8K) and returns 3000 lines
    /// of input that overfill it: the pads are hex of a pseudo-random sequence, so that compression
    /// cannot make them fit.
    func formatSmallestStore(_ store: String) throws -> String {
        #expect(try edgelog(["format", "--device", store, "--size", String(32768 + 4 * 8192), "--segment-size", "8K"]).code == 0)
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (1...3000).map { n -> String in
            let pad = (0..<4).map { _ -> String in
                x = x &* 6364136223846793005 &+ 1442695040888963407
                return String(x >> 1, radix: 16)
            }.joined()
            return "{\"n\":\(n),\"pad\":\"\(pad)\"}"
        }.joined(separator: "\n") + "\n"
    }

    @Test("ring full with policy pause: exit 4, and every acknowledged record is there")
    func ringFull() throws {
        let s = try Scratch()
        let store = s.path("store.img")
        let input = try formatSmallestStore(store)
        let r = try edgelog(["ingest", "--unsigned", "--device", store, "--max-age-ms", "100000"], input: input)
        #expect(r.code == 4, "\(r.err)")
        #expect(r.err.contains("ring full (policy pause)"))
        let acked = jsonLines(r.out).compactMap { $0["last_seq"] as? Int }.max() ?? 0
        let rows = try exportedData(store, source: "stdin")
        #expect(acked > 0)
        #expect(rows.map(\.seq) == Array(1...UInt64(rows.count)))
        #expect(rows.count >= acked)
        #expect(try edgelog(["inspect", "--device", store, "--json"]).out.contains("\"clean_flag\":true"))
    }

    @Test("overwrite-oldest keeps logging and a gap record names each lost segment")
    func overwriteOldest() throws {
        let s = try Scratch()
        let store = s.path("store.img")
        let input = try formatSmallestStore(store)
        let r = try edgelog(["ingest", "--unsigned", "--device", store, "--ring-full", "overwrite-oldest", "--max-age-ms", "100000"], input: input)
        #expect(r.code == 0, "\(r.err)")
        let export = try edgelog(["export", "--device", store])
        let gaps = jsonLines(export.out).filter { $0["type"] as? String == "gap" }
        #expect(!gaps.isEmpty)
        #expect(export.out.contains("\"reason\":\"ring_overwrite\""))
        #expect(try exportedData(store, source: "stdin").last?.seq == 3000)
    }

    @Test("--help teaches, and usage errors exit 64")
    func help() throws {
        let help = try edgelog(["ingest", "--help"])
        #expect(help.code == 0)
        #expect(help.out.contains("Only what an acknowledgement names is guaranteed"))
        #expect(try edgelog(["ingest", "--unsigned", "--device", "x", "--source", "bad name!"]).code == 64)
        #expect(try edgelog(["export", "--device", "x", "--format", "xml"]).code == 64)
        #expect(try edgelog([]).out.contains("Exit codes"))
    }
}
