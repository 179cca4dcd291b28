// Process kills (docs/DESIGN.md, proof): the real binary is SIGKILLed at random moments while it
// ingests; what it acknowledged must be exported afterwards, in order, exactly once. The number
// of kills is EDGELOG_KILLS (200 in `make test`, 10,000 in `make soak`).

import Foundation
import Testing

@Suite("Process kills", .serialized)
struct ProcessKillTests {
    @Test("SIGKILL at random moments loses nothing that was acknowledged")
    func randomKills() throws {
        signal(SIGPIPE, SIG_IGN)
        let kills = Int(ProcessInfo.processInfo.environment["EDGELOG_KILLS"] ?? "") ?? 200
        let s = try Scratch()
        let store = s.path("store.img")
        // About 6 KB of segments per iteration were measured (small commits, recovery segments);
        // the store gets three times that, so the pause policy never stops the run.
        let size = max(16 << 20, kills * 18_000)
        #expect(try edgelog(["format", "--device", store, "--size", String(size), "--segment-size", "8K"]).code == 0)
        // Killed writers sign: every segment they commit, and every recovery segment, must verify.
        let keys = s.path("keys")
        #expect(try edgelog(["keys", "generate", "--out", keys]).code == 0)
        let anchor = s.path("anchor.json")

        var rng = SystemRandomNumberGenerator()
        var next = 0
        var acked = Set<UInt64>()
        var killed = 0
        var cleanExits = 0
        var iteration = 0
        while killed < kills {
            iteration += 1
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binary.edgelog)
            process.arguments = ["ingest", "--device", store, "--key-dir", keys, "--anchor", anchor, "--anchor-interval", "1", "--source", "k", "--max-age-ms", String(Int.random(in: 1...20, using: &rng))]
            let stdin = Pipe(), stdout = Pipe()
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = FileHandle.nullDevice
            try process.run()
            let clean = iteration % 10 == 0
            let count = Int.random(in: 0...120, using: &rng)
            var text = ""
            for _ in 0..<count {
                next += 1
                text += "{\"n\":\(next)}\n"
            }
            // Some kills land during start-up and recovery, most while lines are committed.
            if Int.random(in: 0..<5, using: &rng) != 0 || clean {
                try? stdin.fileHandleForWriting.write(contentsOf: Data(text.utf8))
            }
            if clean {
                try? stdin.fileHandleForWriting.close()
                process.waitUntilExit()
                if process.terminationStatus == 4 {
                    Issue.record("the store filled up after \(killed) kills: size it for more")
                    break
                }
                #expect(process.terminationStatus == 0)
                cleanExits += 1
            } else {
                // Start-up (hashing the executable, recovery) takes tens of milliseconds in a debug build.
                usleep(UInt32.random(in: 0...150_000, using: &rng))
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                killed += 1
            }
            try? stdin.fileHandleForWriting.close()
            let out = stdout.fileHandleForReading.readDataToEndOfFile()
            for ack in jsonLines(String(decoding: out, as: UTF8.self)) {
                guard let first = ack["first_seq"] as? Int, let last = ack["last_seq"] as? Int else { continue }
                for seq in first...last { acked.insert(UInt64(seq)) }
            }
        }

        let rows = try exportedData(store, source: "k")
        let seqs = rows.map(\.seq)
        let ns = rows.compactMap { $0.payload["n"] as? Int }
        let missing = acked.subtracting(seqs)
        print("process kills: \(killed) SIGKILLs, \(cleanExits) clean exits, \(acked.count) acknowledged, \(rows.count) exported, \(missing.count) missing")
        #expect(missing.isEmpty, "acknowledged but missing: \(missing.sorted().prefix(10))")
        #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 }, "seq not strictly increasing")
        #expect(zip(ns, ns.dropFirst()).allSatisfy { $0 < $1 }, "inputs out of order or repeated")
        #expect(ns.count == rows.count)
        #expect(acked.count > kills)

        let verify = try edgelog(["verify", "--device", store, "--trust", keys + "/signing-key.pub.pem", "--anchor", anchor])
        print("verify after kills: " + (verify.out.split(separator: "\n").last.map(String.init) ?? ""))
        #expect(verify.code == 0, "\(verify.out)")

        let inspect = try edgelog(["inspect", "--device", store, "--json", "--verify"])
        #expect(inspect.code == 0, "\(inspect.err)")
        let state = try #require(try JSONSerialization.jsonObject(with: Data(inspect.out.utf8)) as? [String: Any])
        #expect((state["unexp_rst"] as? Int ?? 0) >= 1)

        let ours = try edgelog(["export", "--device", store])
        // mono_ctr continues above everything committed after every restart: strictly increasing
        // over all records, whatever the kills, recoveries and boot records in between.
        let monos = jsonLines(ours.out).compactMap { $0["mono_ctr"] as? Int }
        #expect(zip(monos, monos.dropFirst()).allSatisfy { $0 < $1 }, "mono_ctr went backward or repeated across restarts")
        #expect(jsonLines(ours.out).contains { $0["type"] as? String == "boot" })
        let theirs = try runProcess("/usr/bin/env", ["python3", Binary.decoder, store])
        #expect(theirs.code == 0)
        #expect(ours.out == theirs.out, "independent decoder disagrees with export on the killed store")
    }
}
