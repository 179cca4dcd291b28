// The time path through the real binary: ingest runs under libfaketime while the wall clock is
// stepped backward and forward; mono_ctr must still strictly increase over every record, and each
// step must appear as a clock_step record with the right direction and magnitude.

import Foundation
import Testing

@Suite("Time path", .serialized)
struct TimePathTests {
    // The MT build: with FAKETIME_NO_CACHE every clock call re-reads the timestamp file into
    // libfaketime's static buffers and re-parses it, and the plain build (0.9.10) does that with no
    // lock, so a second thread of ingest reading the clock at the same moment got the real time now
    // and then (2 of 8 runs recorded two extra steps: -3600 s, then 0, then -3600 s again). The MT
    // build takes a mutex around the whole faked call: 0 of 30 runs failed.
    static let libfaketime = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"]
        .first { FileManager.default.fileExists(atPath: $0) }

    @Test("wall-clock steps under libfaketime: mono_ctr strictly increases, every step is recorded with direction and magnitude")
    func fakedSteps() throws {
        let library = try #require(Self.libfaketime, "libfaketime is missing: scripts/bootstrap installs the faketime package")
        let s = try Scratch()
        let store = s.path("store.img"), clockFile = s.path("faketime.rc")
        #expect(try edgelog(["format", "--device", store, "--size", "4M", "--segment-size", "8K"]).code == 0)
        try "+0\n".write(toFile: clockFile, atomically: true, encoding: .utf8)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binary.edgelog)
        process.arguments = ["ingest", "--device", store, "--unsigned", "--source", "probe", "--max-age-ms", "5"]
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = library
        environment["FAKETIME_TIMESTAMP_FILE"] = clockFile
        environment["FAKETIME_NO_CACHE"] = "1"
        // Boot time must stay the kernel's: it is what a step is measured against.
        environment["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        process.environment = environment
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()

        // Offsets of the faked wall clock, in seconds; each change is one step.
        let phases = [0, -30, 90, -3600, -3599, 0]
        var sent = 0
        var acked = 0
        var pendingOutput = ""
        for offset in phases {
            try "\(offset >= 0 ? "+" : "")\(offset)\n".write(toFile: clockFile, atomically: true, encoding: .utf8)
            for _ in 0..<5 {
                sent += 1
                try stdin.fileHandleForWriting.write(contentsOf: Data("{\"n\":\(sent)}\n".utf8))
            }
            // Wait until ingest has committed this phase, so the next change is a separate step.
            let deadline = Date().addingTimeInterval(20)
            while acked < sent && Date() < deadline {
                pendingOutput += String(decoding: stdout.fileHandleForReading.availableData, as: UTF8.self)
                for line in jsonLines(pendingOutput) { acked = max(acked, line["last_seq"] as? Int ?? 0) }
            }
            #expect(acked >= sent, "phase \(offset): only \(acked) of \(sent) acknowledged")
        }
        try stdin.fileHandleForWriting.close()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)

        let rows = jsonLines(try edgelog(["export", "--device", store]).out)
        let monos = rows.compactMap { $0["mono_ctr"] as? Int }
        #expect(monos.count == rows.count && monos.count > sent)
        #expect(zip(monos, monos.dropFirst()).allSatisfy { $0 < $1 }, "mono_ctr not strictly increasing: \(monos)")
        #expect(rows.filter { $0["type"] as? String == "data" }.count == sent)
        #expect(rows.filter { $0["type"] as? String == "boot" }.count == 1)

        let steps = rows.filter { $0["type"] as? String == "clock_step" }.compactMap { $0["payload"] as? [String: Any] }
        let expected = zip(phases, phases.dropFirst()).map { $1 - $0 }.filter { $0 != 0 && abs($0) * 1000 > 100 }
        #expect(steps.count == expected.count, "steps \(steps) for changes \(expected)")
        for (step, change) in zip(steps, expected) {
            #expect(step["direction"] as? String == (change > 0 ? "forward" : "backward"), "\(step) for \(change) s")
            let magnitude = Double(step["magnitude_ns"] as? Int ?? 0) / 1e9
            #expect(abs(magnitude - Double(abs(change))) < 0.05, "\(step) for \(change) s")
            #expect(step["source"] as? String == "manual")
        }
        // The record after each step carries after_step... and the inspect summary counts them.
        let inspect = try edgelog(["inspect", "--device", store, "--json"])
        let state = try #require(try JSONSerialization.jsonObject(with: Data(inspect.out.utf8)) as? [String: Any])
        #expect(state["clock_steps"] as? Int == expected.count)
        #expect(state["largest_step_ns"] as? Int ?? 0 >= 3_690_000_000_000 - 50_000_000)

        // Corrected wall time maps the whole boot onto its reference: one constant offset from boot time.
        let corrected = jsonLines(try edgelog(["export", "--device", store, "--wall", "corrected"]).out)
        let offsets = Set(corrected.compactMap { row -> Int? in
            guard let c = row["wall_corrected_ns"] as? Int, let b = row["boot_ns"] as? Int else { return nil }
            return c - b
        })
        #expect(offsets.count == 1, "corrected wall time is not one offset from boot time: \(offsets.count) offsets")
        // The independent decoder applies the documented rule the same way (FORMAT.md section 7
        // over the committed records of A.9), record for record.
        let theirs = try runProcess("/usr/bin/env", ["python3", Binary.decoder, "--packed-store", store, "--wall", "corrected"])
        #expect(theirs.code == 0, "\(theirs.err)")
        let decoded = jsonLines(theirs.out).filter { $0["kind"] == nil }
        #expect(decoded.count == corrected.count && !decoded.isEmpty)
        let fields = ["seq", "mono_ctr", "wall_ns", "wall_corrected_ns", "boot_ns", "boot_seq", "time_flags"]
        let differ = zip(corrected, decoded).filter { a, b in fields.contains { (a[$0] as? Int) != (b[$0] as? Int) } }
        #expect(differ.isEmpty, "export --wall corrected differs from scripts/edgelog_decode.py: \(differ.prefix(2))")
        // The CSV export carries the same corrected times as the JSON lines.
        let csv = try edgelog(["export", "--device", store, "--wall", "corrected", "--format", "csv"]).out.split(separator: "\n").dropFirst()
        #expect(csv.map { $0.split(separator: ",").dropFirst(7).first.map(String.init) } == corrected.map { ($0["wall_corrected_ns"] as? Int).map(String.init) },
                "csv and jsonl differ")
    }
}
