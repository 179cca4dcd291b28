// `edgelog run --board` and `edgelog board` as a user runs them: the simulated board end to end,
// a clean stop on SIGTERM, the summary, a board mistake named by file and line.

import Foundation
import Testing

@Suite("edgelog run --board", .serialized)
struct BoardRunTests {
    static let simBoard = Binary.root.appendingPathComponent("board/sim.yaml").path

    @Test("the simulated board: every source commits, signed; the summary and the store agree; verify passes")
    func simulatedBoard() throws {
        let s = try Scratch()
        #expect(try edgelog(["keys", "generate", "--out", s.path("keys")]).code == 0)
        let r = try edgelog(["run", "--board", Self.simBoard, "--state-dir", s.path(""), "--duration", "3", "--json"])
        #expect(r.code == 0, "\(r.err)")
        let summary = try #require(jsonLines(r.out).first)
        let sources = try #require(summary["sources"] as? [[String: Any]])
        #expect(sources.count == 9)
        let store = s.path("store.img")
        let records = jsonLines(try edgelog(["export", "--device", store]).out)
        for source in sources {
            let name = try #require(source["name"] as? String)
            let reads = source["reads"] as? Int ?? 0
            let data = records.filter { $0["source"] as? String == name && $0["type"] as? String == "data" }
            #expect(data.count == reads, "\(name): \(data.count) data records, \(reads) reads")
            if name != "meter.modbus7" { #expect(reads > 0, "\(name) read nothing") }
        }
        // The silent Modbus slave: faults, never a value.
        // (Its line's polls wait for the timeouts: poll_overrun records may come too.)
        let silent = records.filter { $0["source"] as? String == "meter.modbus7" && $0["type"] as? String != "poll_overrun" }
        #expect(!silent.isEmpty && silent.allSatisfy { $0["type"] as? String == "source_fault" })
        let bme = try #require(records.first { $0["source"] as? String == "env.bme280" }?["payload"] as? [String: Any])
        #expect((bme["temperature_c"] as? Double) == 25.08)
        let verdict = try edgelog(["verify", "--device", store, "--trust", s.path("keys/signing-key.pub.pem"), "--anchor", s.path("anchor.json")])
        #expect(verdict.code == 0, "\(verdict.out)")
    }

    @Test("SIGTERM: what is buffered is committed, the store is closed cleanly, exit 0")
    func stopsOnSignal() throws {
        let s = try Scratch()
        #expect(try edgelog(["keys", "generate", "--out", s.path("keys")]).code == 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binary.edgelog)
        process.arguments = ["run", "--board", Self.simBoard, "--state-dir", s.path("")]
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 2.5)
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let inspect = try edgelog(["inspect", "--device", s.path("store.img"), "--json"])
        #expect(inspect.out.contains("\"clean_flag\":true"), "\(inspect.out.prefix(400))")
    }

    @Test("board check names a mistake by file, line and key (exit 64); board list shows the shipped boards")
    func boardCommands() throws {
        let s = try Scratch()
        let bad = s.path("bad.yaml")
        try "board: x\nsensors:\n  - name: a\n    driver: bme280\n    bus: nowhere\n    period_ms: 10\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let r = try edgelog(["board", "check", bad])
        #expect(r.code == 64 && r.err.contains("bad.yaml:5: sensors[0].bus: no bus named nowhere"), "\(r.err)")
        let good = try edgelog(["board", "check", Self.simBoard, "--json"])
        #expect(good.code == 0 && good.out.contains("\"valid\":true"))
        let list = try edgelog(["board", "list"])
        #expect(list.code == 0 && list.out.contains("sim.yaml") && list.out.contains("qemu.yaml") && list.out.contains("raspberry-pi-4.yaml"))
    }

    @Test("stdin is one source kind: JSON lines go through the same queue as the sensors; a bad line is a rejected_input record")
    func stdinSource() throws {
        let s = try Scratch()
        #expect(try edgelog(["keys", "generate", "--out", s.path("keys")]).code == 0)
        let board = s.path("b.yaml")
        let image = Binary.root.appendingPathComponent("board/sim/max31855.yaml").path
        try """
            board: mixed
            buses:
              - {name: tc, kind: sim-spi}
            sensors:
              - {name: oven, driver: max31855, bus: tc, image: \(image), period_ms: 100}
              - {name: lab.notes, driver: stdin}
              - {name: lab.notes2, driver: stdin}
            """.write(toFile: board, atomically: true, encoding: .utf8)
        let twice = try edgelog(["board", "check", board])
        #expect(twice.code == 64 && twice.err.contains("a board has one stdin source"), "\(twice.err)")
        try String(contentsOfFile: board, encoding: .utf8).replacingOccurrences(of: "\n  - {name: lab.notes2, driver: stdin}", with: "")
            .write(toFile: board, atomically: true, encoding: .utf8)
        let r = try edgelog(["run", "--board", board, "--state-dir", s.path(""), "--duration", "1.5", "--json"],
                            input: "{\"note\":\"calibrated\",\"by\":\"kim\"}\nnot json\n{\"note\":\"door open\"}")
        #expect(r.code == 0, "\(r.err)")
        let records = jsonLines(try edgelog(["export", "--device", s.path("store.img")]).out)
        let notes = records.filter { $0["source"] as? String == "lab.notes" }
        #expect(notes.map { $0["type"] as? String ?? "" } == ["data", "rejected_input", "data"], "\(notes)")
        #expect((notes.first?["payload"] as? [String: Any])?["by"] as? String == "kim")
        #expect(((notes[1]["payload"] as? [String: Any])?["detail"] as? String ?? "").contains("line 2: not a JSON object"))
        #expect(records.contains { $0["source"] as? String == "oven" && $0["type"] as? String == "data" })
    }

    @Test("values that do not fit are usage errors, not traps: --duration nan, a settings file's store_size beyond 2^63")
    func hostileNumbers() throws {
        let s = try Scratch()
        let nan = try edgelog(["run", "--board", Self.simBoard, "--state-dir", s.path(""), "--duration", "nan"])
        #expect(nan.code == 64 && nan.err.contains("--duration"), "\(nan.err)")
        let config = s.path("e.yaml")
        try "device: \(s.path("x.img"))\nunsigned: true\nanchor: none\nstore_size: 9223372036854775808\n".write(toFile: config, atomically: true, encoding: .utf8)
        let big = try edgelog(["run", "--config", config], input: "{}\n")
        #expect(big.code == 64 && big.err.contains("e.yaml:4"), "\(big.err)")
        #expect(!FileManager.default.fileExists(atPath: s.path("x.img")))
    }

    @Test("a board whose key directory is missing writes nothing (exit 9)")
    func missingKey() throws {
        let s = try Scratch()
        let r = try edgelog(["run", "--board", Self.simBoard, "--state-dir", s.path(""), "--duration", "1"])
        #expect(r.code == 9, "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: s.path("store.img")))
    }
}

@Suite("edgelog run --board on a serial line", .serialized)
struct SerialOwnerTests {
    @Test("a second edgelog on a serial line the first one holds is refused at start, naming the line (exit 6)")
    func secondOwnerRefused() throws {
        let s = try Scratch()
        #expect(try edgelog(["keys", "generate", "--out", s.path("keys")]).code == 0)
        #expect(try edgelog(["keys", "generate", "--out", s.path("keys2")]).code == 0)
        // A pseudo-terminal stands for the line; python3 holds its master end open.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", "import os,pty,sys,time; m,s=pty.openpty(); print(os.ttyname(s), flush=True); time.sleep(20)"]
        let out = Pipe()
        holder.standardOutput = out
        try holder.run()
        defer { holder.terminate() }
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(line.hasPrefix("/dev/pts/"))
        func board(_ name: String, _ keys: String) throws -> String {
            let path = s.path(name)
            try """
                board: \(name)
                store: {path: \(name).img, key_dir: \(keys), anchor: none}
                buses:
                  - {name: rs485, kind: serial, device: \(line), baud: 9600, response_timeout_ms: 50}
                sensors:
                  - {name: meter, driver: modbus, bus: rs485, slave: 1, function: 3, register: 0, count: 1, period_ms: 200}
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let first = Process()
        first.executableURL = URL(fileURLWithPath: Binary.edgelog)
        first.arguments = ["run", "--board", try board("a", s.path("keys")), "--state-dir", s.path(""), "--duration", "6"]
        first.standardError = FileHandle.nullDevice
        try first.run()
        Thread.sleep(forTimeInterval: 2)
        // Its own state directory (one job per state directory is a rule of its own): the line is the clash.
        try FileManager.default.createDirectory(atPath: s.path("second"), withIntermediateDirectories: true)
        let second = try edgelog(["run", "--board", try board("b", s.path("keys2")), "--state-dir", s.path("second"), "--duration", "1"])
        #expect(second.code == 6 && second.err.contains(line) && second.err.contains("busy"), "\(second.err)")
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        // The first one's silent slave left faults, and it kept the line to itself.
        let records = jsonLines(try edgelog(["export", "--device", s.path("a.img")]).out)
        #expect(records.contains { $0["source"] as? String == "meter" && $0["type"] as? String == "source_fault" })
    }
}
