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
        #expect(try edgelog(["format", "--device", store, "--size", String(size), "--segment-size", "32K"]).code == 0)
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
        #expect(verify.code == 0, "\(verify.out.suffix(2000))")
        // The independent Python verifier agrees (it reads either format).
        let python = try runProcess("/usr/bin/env", ["python3", Binary.root.appendingPathComponent("scripts/edgelog_verify.py").path,
                                                     "--device", store, "--trust", keys + "/signing-key.pub.pem", "--anchor", anchor])
        #expect(python.code == 0, "\(python.out.suffix(2000)) \(python.err)")

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
        // The independent decoder reads the same records: frame, seq, mono_ctr, source, times.
        let mine = jsonLines(ours.out)
        let theirs = jsonLines(try runProcess("/usr/bin/env", ["python3", Binary.decoder, "--packed-store", store]).out).filter { $0["kind"] == nil }
        #expect(mine.count == theirs.count && !mine.isEmpty)
        let differ = zip(mine, theirs).filter { a, b in
            ["seq", "mono_ctr", "wall_ns", "boot_ns"].contains { (a[$0] as? Int) != (b[$0] as? Int) }
                || (a["commit_id"] as? Int) != (b["frame"] as? Int) || (a["source"] as? String) != (b["source"] as? String)
        }.count
        #expect(differ == 0, "\(differ) records differ between export and the independent decoder")
    }
}

/// Power yank (docs/DESIGN.md section 12, proof): SIGPWR, then SIGKILL before, inside or after the
/// safe-commit window, at random moments and at named points (EDGELOG_KILL_AT). Afterwards every
/// acknowledged record is present, mono_ctr never goes back, and the store's own evidence tells the
/// truth: a start reports a clean store exactly when the session before it ended with its window's
/// brownout record, unexp_rst counts the unclean starts, bo_event counts the brownout records.
@Suite("Process kills around the power window", .serialized)
struct ProcessKillPowerTests {
    static let points: [String?] = [nil, nil, "window.frozen", "window.in_flight_done", "clean_commit.written", "window.clean"]

    @Test("SIGPWR then SIGKILL before, inside and after the window: the evidence tells the truth")
    func powerYank() throws {
        signal(SIGPIPE, SIG_IGN)
        let kills = max(20, (Int(ProcessInfo.processInfo.environment["EDGELOG_KILLS"] ?? "") ?? 200) / 2)
        let s = try Scratch()
        let store = s.path("store.img")
        let size = max(16 << 20, kills * 20_000)
        #expect(try edgelog(["format", "--device", store, "--size", String(size), "--segment-size", "32K"]).code == 0)
        let keys = s.path("keys")
        #expect(try edgelog(["keys", "generate", "--out", keys]).code == 0)
        // Absent: every SIGPWR means "failing".
        let powerStatus = s.path("powerstatus")

        var rng = SystemRandomNumberGenerator()
        var next = 0
        var acked = Set<UInt64>()
        var byPoint: [String: Int] = [:]
        var selfKilled = 0
        for _ in 0..<kills {
            let point = Self.points.randomElement(using: &rng) ?? nil
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binary.edgelog)
            process.arguments = ["ingest", "--device", store, "--key-dir", keys, "--source", "k", "--power-status-file", powerStatus,
                                 "--max-age-ms", String(Int.random(in: 1...30, using: &rng))]
            var environment = ProcessInfo.processInfo.environment
            environment["EDGELOG_KILL_AT"] = point
            process.environment = environment
            let stdin = Pipe(), stdout = Pipe()
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = FileHandle.nullDevice
            try process.run()
            var text = ""
            for _ in 0..<Int.random(in: 0...150, using: &rng) {
                next += 1
                text += "{\"n\":\(next)}\n"
            }
            try? stdin.fileHandleForWriting.write(contentsOf: Data(text.utf8))
            // Start-up takes tens of milliseconds in a debug build: some signals come before the
            // handler exists (SIGPWR's default action ends the process: an unclean stop too).
            usleep(UInt32.random(in: 0...120_000, using: &rng))
            kill(process.processIdentifier, SIGPWR)
            if point != nil {
                // The process kills itself at the point; a point it never reaches (no commit in
                // flight at the freeze) ends with a SIGKILL after the window.
                let deadline = Date().addingTimeInterval(1)
                while process.isRunning && Date() < deadline { usleep(2000) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) } else { selfKilled += 1 }
            } else {
                // Before, inside or after the window (a window takes a few milliseconds here).
                let phase = Int.random(in: 0..<3, using: &rng)
                usleep(phase == 0 ? 0 : phase == 1 ? UInt32.random(in: 100...5000, using: &rng) : UInt32.random(in: 20_000...100_000, using: &rng))
                kill(process.processIdentifier, SIGKILL)
            }
            byPoint[point ?? "random", default: 0] += 1
            process.waitUntilExit()
            try? stdin.fileHandleForWriting.close()
            let out = stdout.fileHandleForReading.readDataToEndOfFile()
            for ack in jsonLines(String(decoding: out, as: UTF8.self)) {
                guard let first = ack["first_seq"] as? Int, let last = ack["last_seq"] as? Int else { continue }
                for seq in first...last { acked.insert(UInt64(seq)) }
            }
        }
        // A last, ordinary start and stop: it reads what the last killed one left.
        #expect(try edgelog(["ingest", "--device", store, "--key-dir", keys, "--source", "k"], input: "").code == 0)

        let rows = try exportedData(store, source: "k")
        let missing = acked.subtracting(rows.map(\.seq))
        #expect(missing.isEmpty, "acknowledged but missing: \(missing.sorted().prefix(10))")
        let records = jsonLines(try edgelog(["export", "--device", store]).out)
        let monos = records.compactMap { $0["mono_ctr"] as? Int }
        #expect(zip(monos, monos.dropFirst()).allSatisfy { $0 < $1 }, "mono_ctr went backward or repeated across restarts")

        // Walk the records: what came right before each start's boot record, and what it said.
        // A start that found the store unclean writes its recovery record first; recovery leaves
        // the store clean, so a start that dies right after it leaves a clean store behind.
        var brownouts = 0, uncleanRecoveries = 0, incompletes = 0, windowsSeenClean = 0
        var previous: (type: String, unclean: Bool)?
        for r in records {
            let type = r["type"] as? String ?? "?"
            let payload = r["payload"] as? [String: Any] ?? [:]
            if type == "brownout" { brownouts += 1 }
            if type == "incomplete" { incompletes += 1 }
            let unclean = type == "recovery" && payload["unclean_shutdown"] as? Bool == true
            if unclean { uncleanRecoveries += 1 }
            if type == "recovery" {
                #expect(payload["from_metadata"] as? [String] == ["unclean_shutdown", "metadata_slot", "generation"],
                        "a recovery record names the facts it took from the unsealed metadata")
            }
            if type == "boot", let before = previous {
                let unexpected = payload["unexpected_reset"] as? Bool
                if unexpected == true {
                    #expect(before.type == "recovery" && before.unclean, "an unexpected reset reported after \(before.type), not after its recovery record")
                } else {
                    #expect(before.type == "brownout" || before.type == "recovery", "a clean store reported after a session that ended with \(before.type)")
                }
                if before.type == "brownout" {
                    windowsSeenClean += 1
                    #expect(unexpected == false, "the window completed but the next start reported an unexpected reset")
                }
            }
            previous = (type, unclean)
        }
        let inspect = try edgelog(["inspect", "--device", store, "--json", "--verify"])
        let state = try #require(try JSONSerialization.jsonObject(with: Data(inspect.out.utf8)) as? [String: Any])
        print("power yank: \(kills) cycles \(byPoint.sorted { $0.key < $1.key }), \(selfKilled) killed at their point, \(brownouts) windows committed, \(windowsSeenClean) seen clean by the next start, \(uncleanRecoveries) unclean starts, \(acked.count) acknowledged, \(missing.count) missing")
        #expect(state["bo_event"] as? Int == brownouts, "bo_event \(state["bo_event"] ?? "nil") for \(brownouts) brownout records")
        #expect(state["unexp_rst"] as? Int == uncleanRecoveries, "unexp_rst \(state["unexp_rst"] ?? "nil") for \(uncleanRecoveries) unclean starts")
        #expect(state["clean_flag"] as? Int == 1 || state["clean"] as? Bool == true, "the last, ordinary stop leaves the store clean")
        #expect(incompletes == 0, "a process kill cannot tear a write: \(incompletes) incomplete records")
        #expect(brownouts > kills / 4, "too few windows completed: \(brownouts)")
        #expect(uncleanRecoveries > kills / 10, "too few kills landed before the clean mark: \(uncleanRecoveries)")
        #expect(windowsSeenClean > kills / 10)

        let verify = try edgelog(["verify", "--device", store, "--trust", keys + "/signing-key.pub.pem"])
        #expect(verify.code == 0, "\(verify.out)")
        let python = try runProcess("/usr/bin/env", ["python3", Binary.root.appendingPathComponent("scripts/edgelog_verify.py").path,
                                                     "--device", store, "--trust", keys + "/signing-key.pub.pem"])
        #expect(python.code == 0, "\(python.out.suffix(2000))")
        let theirs = jsonLines(try runProcess("/usr/bin/env", ["python3", Binary.decoder, "--packed-store", store]).out).filter { $0["kind"] == nil }
        #expect(theirs.map { $0["seq"] as? Int } == records.map { $0["seq"] as? Int } && theirs.count == records.count,
                "independent decoder disagrees on the yanked store")
    }
}
