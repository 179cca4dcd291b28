// The trust path through the real binary: keys on disk, signed ingest, `head`, `verify`, and the
// independent checks — openssl on the documented signed bytes, and scripts/edgelog_verify.py
// (written from FORMAT.md alone) giving the same verdicts as `edgelog verify` on tampered stores.

import EdgelogCore
import Foundation
import Testing

/// A key directory (`keys`), a copy of its first public key (`first`) and a 1 MiB store of 8 KiB
/// segments holding one record {"a":1} signed by it, for the rotation tests.
private func signedStoreWithOneRecord(_ s: Scratch) throws -> (keys: String, store: String, first: String) {
    let keys = s.path("keys"), store = s.path("store.img"), first = s.path("first.pub.pem")
    #expect(try edgelog(["keys", "generate", "--out", keys]).code == 0)
    try FileManager.default.copyItem(atPath: keys + "/signing-key.pub.pem", toPath: first)
    #expect(try edgelog(["format", "--device", store, "--size", "1M", "--segment-size", "8K"]).code == 0)
    #expect(try edgelog(["ingest", "--device", store, "--key-dir", keys], input: "{\"a\":1}\n").code == 0)
    return (keys, store, first)
}

@Suite("Trust path", .serialized)
struct TrustPathTests {
    static let pythonVerifier = Binary.root.appendingPathComponent("scripts/edgelog_verify.py").path

    /// A signed store made by the binary: `segments` commits of a few records each.
    func signedStore(_ s: Scratch, alg: String, segments: Int = 6) throws -> (store: String, keys: String, trust: String) {
        let keys = s.path("keys-\(alg)")
        #expect(try edgelog(["keys", "generate", "--out", keys, "--alg", alg]).code == 0)
        let store = s.path("store-\(alg).img")
        #expect(try edgelog(["format", "--device", store, "--size", "1M", "--segment-size", "8K"]).code == 0)
        for i in 0..<segments {
            let lines = (0..<5).map { "{\"i\":\(i),\"j\":\($0)}" }.joined(separator: "\n") + "\n"
            let r = try edgelog(["ingest", "--device", store, "--key-dir", keys, "--anchor", s.path("anchor-\(alg).json")], input: lines)
            #expect(r.code == 0, "\(r.err)")
            // The image after three sessions, for the truncation case of the comparison test.
            if i == 2 { try Data(contentsOf: URL(fileURLWithPath: store)).write(to: URL(fileURLWithPath: s.path("after3-\(alg).img"))) }
        }
        let trust = alg == "hmac-sha256" ? keys + "/hmac-key.hex" : keys + "/signing-key.pub.pem"
        return (store, keys, trust)
    }

    /// What the two verifiers must agree on: every segment line's id, slot, offset, sig_verify, reason
    /// and key_epoch; the findings' reasons and offsets; the notes' codes and segment ids; and the
    /// summary. (Only the detail texts are left to each verifier by FORMAT.md 9.)
    struct Verdicts: Equatable, CustomStringConvertible {
        var segments: [String] = []
        var findings: [String] = []
        var notes: [String] = []
        var verdict = ""
        var reasons: [String] = []
        var summary: [String] = []
        var description: String { "segments \(segments) findings \(findings) notes \(notes) \(verdict) \(reasons) \(summary)" }
    }

    func verdicts(_ jsonText: String) -> Verdicts {
        var v = Verdicts()
        for line in jsonLines(jsonText) {
            switch line["kind"] as? String {
            case "segment":
                v.segments.append("\(line["segment_id"] as? Int ?? -1)/\(line["slot"] as? Int ?? -1)@\(line["offset"] as? Int ?? -1) "
                    + "\(line["sig_verify"] as? String ?? "?"):\(line["reason"] as? String ?? "-") epoch \(line["key_epoch"] as? Int ?? -1)")
            case "finding":
                v.findings.append("\(line["reason"] as? String ?? "?")@\(line["offset"] as? Int ?? -1)")
            case "note":
                v.notes.append("\(line["note"] as? String ?? "?")@\(line["segment_id"] as? Int ?? -1)")
            case "summary":
                v.verdict = line["verdict"] as? String ?? "?"
                v.reasons = line["reasons"] as? [String] ?? []
                v.summary = ["segments", "passed", "failed", "signed", "sig_alg"].map { "\($0)=\(line[$0] ?? "?")" }
            default: break
            }
        }
        v.findings.sort()
        v.notes.sort()
        return v
    }

    @Test("a private key readable by others is refused; ingest without a key refuses to start")
    func keyHandling() throws {
        let s = try Scratch()
        let keys = s.path("keys")
        #expect(try edgelog(["keys", "generate", "--out", keys]).code == 0)
        #expect(try edgelog(["keys", "generate", "--out", keys]).code == 9)
        let store = s.path("store.img")
        #expect(try edgelog(["format", "--device", store, "--size", "1M"]).code == 0)
        #expect(chmod(keys + "/signing-key.pem", 0o644) == 0)
        let exposed = try edgelog(["ingest", "--device", store, "--key-dir", keys], input: "{\"a\":1}\n")
        #expect(exposed.code == 9)
        #expect(exposed.err.contains("chmod 600"))
        #expect(chmod(keys + "/signing-key.pem", 0o600) == 0)
        let none = try edgelog(["ingest", "--device", store], input: "{\"a\":1}\n")
        #expect(none.code == 64)
        #expect(none.err.contains("--unsigned"))
        #expect(try edgelog(["ingest", "--device", store, "--key-dir", keys], input: "{\"a\":1}\n").code == 0)
        // Another key may not continue a store signed by this one without a rotation.
        let other = s.path("other")
        #expect(try edgelog(["keys", "generate", "--out", other]).code == 0)
        #expect(try edgelog(["ingest", "--device", store, "--key-dir", other], input: "{\"a\":1}\n").code == 9)
    }

    @Test("a writer refuses a store older than its anchor, or forked from it (exit 8), and leaves it untouched")
    func anchorRefusals() throws {
        let s = try Scratch()
        let keys = s.path("keys"), store = s.path("store.img"), anchor = s.path("anchor.json")
        #expect(try edgelog(["keys", "generate", "--out", keys]).code == 0)
        #expect(try edgelog(["format", "--device", store, "--size", "1M", "--segment-size", "8K"]).code == 0)
        let ingest = { (file: String, anchorFile: String) throws -> Outcome in
            try edgelog(["ingest", "--device", file, "--key-dir", keys, "--anchor", anchorFile], input: "{\"a\":1}\n")
        }
        #expect(try ingest(store, anchor).code == 0)
        let old = try Data(contentsOf: URL(fileURLWithPath: store))
        #expect(try ingest(store, anchor).code == 0)

        // The old image written back: refused as a rollback, nothing written.
        let replay = s.path("replay.img")
        try old.write(to: URL(fileURLWithPath: replay))
        let refused = try ingest(replay, anchor)
        #expect(refused.code == 8, "\(refused.err)")
        #expect(refused.err.contains("rollback"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: replay)) == old)
        let verdict = try edgelog(["verify", "--device", replay, "--trust", keys + "/signing-key.pub.pem", "--anchor", anchor])
        #expect(verdict.code == 1 && verdict.out.contains("rollback"), "\(verdict.out)")

        // A history continued from the old image elsewhere (another anchor), then shown to this anchor: a fork.
        let other = s.path("other-anchor.json")
        #expect(try ingest(replay, other).code == 0)
        #expect(try ingest(replay, other).code == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: replay))
        let forked = try ingest(replay, anchor)
        #expect(forked.code == 8 && forked.err.contains("fork"), "\(forked.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: replay)) == before)
        let forkVerdict = try edgelog(["verify", "--device", replay, "--trust", keys + "/signing-key.pub.pem", "--anchor", anchor, "--json"])
        #expect(forkVerdict.code == 1 && forkVerdict.out.contains("\"fork\""), "\(forkVerdict.out)")
    }

    @Test("keys rotate: the first public key alone verifies the store across the rotation; inspect names the key")
    func rotationThroughTheBinary() throws {
        let s = try Scratch()
        let (keys, store, first) = try signedStoreWithOneRecord(s)
        let rotated = try edgelog(["keys", "rotate", "--key-dir", keys, "--device", store, "--alg", "ecdsa-p256", "--json"])
        #expect(rotated.code == 0, "\(rotated.err)")
        #expect(rotated.out.contains("\"key_epoch\":2"))
        #expect(try edgelog(["ingest", "--device", store, "--key-dir", keys], input: "{\"a\":2}\n").code == 0)
        let verdict = try edgelog(["verify", "--device", store, "--trust", first, "--json"])
        #expect(verdict.code == 0, "\(verdict.out)")
        #expect(verdict.out.contains("\"key_epoch\":2"))
        // The current key directory alone (key.json: epoch 2) verifies what the new key signed;
        // the epoch-1 segments before the rotation are then unknown_key.
        let current = jsonLines(try edgelog(["verify", "--device", store, "--trust", keys, "--json"]).out)
            .filter { $0["kind"] as? String == "segment" }
        #expect(current.last?["sig_verify"] as? String == "PASS" && current.last?["key_epoch"] as? Int == 2, "\(current)")
        #expect(current.first?["reason"] as? String == "unknown_key")
        let inspect = try edgelog(["inspect", "--device", store])
        #expect(inspect.out.contains("signed ecdsa-p256") && inspect.out.contains("epoch 2"), "\(inspect.out)")
        // The retired key no longer signs for this store.
        let retired = s.path("retired-dir")
        try FileManager.default.createDirectory(atPath: retired, withIntermediateDirectories: true)
        for (from, to) in [("epoch-1-signing-key.pem", "signing-key.pem"), ("epoch-1-signing-key.pub.pem", "signing-key.pub.pem"), ("epoch-1-key.json", "key.json")] {
            try FileManager.default.copyItem(atPath: keys + "/retired/" + from, toPath: retired + "/" + to)
        }
        #expect(try edgelog(["ingest", "--device", store, "--key-dir", retired], input: "{\"a\":3}\n").code == 9)

        let plain = s.path("plain.img")
        #expect(try edgelog(["format", "--device", plain, "--size", "1M"]).code == 0)
        #expect(try edgelog(["ingest", "--device", plain, "--unsigned"], input: "{\"a\":1}\n").code == 0)
        #expect(try edgelog(["inspect", "--device", plain]).out.contains("UNSIGNED"))
        #expect(try edgelog(["inspect", "--device", plain, "--json"]).out.contains("\"signed\":false"))
    }

    @Test("keys rotate killed between its frame and the metadata write, or while it moves the key files: running it again finishes it, the new key continues from the rotation frame, and the first key alone verifies the store")
    func rotationCutBeforeMetadata() throws {
        let s = try Scratch()
        let (keys, store, first) = try signedStoreWithOneRecord(s)
        // Two rotations, each killed right after its frame is durable. The first one's frame opens
        // its session's segment, so the metadata is written with it; the second session starts on
        // a store left open, its first frame says what recovery found, and its rotation frame
        // follows in the same segment: the kill leaves the metadata naming the frame before it.
        for epoch in [2, 3] {
            let killed = try edgelog(["keys", "rotate", "--key-dir", keys, "--device", store],
                                     environment: ["EDGELOG_KILL_AT": "rotation.frame_written"])
            #expect(killed.code == SIGKILL, "exit \(killed.code): \(killed.err)")
            #expect(FileManager.default.fileExists(atPath: keys + "/pending"))
            // Nothing signs while the rotation is unfinished.
            let refused = try edgelog(["ingest", "--device", store, "--key-dir", keys], input: "{\"a\":2}\n")
            #expect(refused.code != 0 && refused.err.contains("keys rotate"), "\(refused.err)")
            let finished = try edgelog(["keys", "rotate", "--key-dir", keys, "--device", store, "--json"])
            #expect(finished.code == 0 && finished.out.contains("finished an interrupted rotation"), "\(finished.out) \(finished.err)")
            #expect(finished.out.contains("\"key_epoch\":\(epoch)"), "\(finished.out)")
        }
        // A third one cut inside its last step: the old key's files are in retired/ already, the
        // new key's still in pending/. Run again, it checks the store with the retired key.
        let cut = try edgelog(["keys", "rotate", "--key-dir", keys, "--device", store],
                              environment: ["EDGELOG_KILL_AT": "rotation.old_key_retired"])
        #expect(cut.code == SIGKILL, "exit \(cut.code): \(cut.err)")
        #expect(!FileManager.default.fileExists(atPath: keys + "/key.json") && FileManager.default.fileExists(atPath: keys + "/pending/key.json"))
        let again = try edgelog(["keys", "rotate", "--key-dir", keys, "--device", store, "--json"])
        #expect(again.code == 0 && again.out.contains("finished an interrupted rotation") && again.out.contains("\"key_epoch\":4"), "\(again.out) \(again.err)")

        let ingested = try edgelog(["ingest", "--device", store, "--key-dir", keys], input: "{\"a\":3}\n")
        #expect(ingested.code == 0, "\(ingested.err)")
        let verdict = try edgelog(["verify", "--device", store, "--trust", first, "--json"])
        #expect(verdict.code == 0, "\(verdict.out)")
        #expect(verdict.out.contains("\"key_epoch\":4"))
        let records = jsonLines(try edgelog(["export", "--device", store]).out)
        let data = records.filter { $0["type"] as? String == "data" }.compactMap { ($0["payload"] as? [String: Any])?["a"] as? Int }
        #expect(data == [1, 3], "\(records)")
        #expect(records.filter { $0["type"] as? String == "key_rotation" }.count == 3)
    }

    @Test("a key directory whose retired key signed the store's head, but which no rotation on this store endorsed, is refused and writes nothing")
    func retiredKeyWithoutRotation() throws {
        let s = try Scratch()
        let first = s.path("first"), other = s.path("other"), forged = s.path("forged"), store = s.path("store.img")
        #expect(try edgelog(["keys", "generate", "--out", first]).code == 0)
        #expect(try edgelog(["keys", "generate", "--out", other]).code == 0)
        #expect(try edgelog(["format", "--device", store, "--size", "1M", "--segment-size", "8K"]).code == 0)
        #expect(try edgelog(["ingest", "--device", store, "--key-dir", first], input: "{\"a\":1}\n").code == 0)
        // A directory laid out as after a rotation (the first key retired at epoch 1, another key
        // current at epoch 2), but the store holds no rotation record endorsing that key.
        let fm = FileManager.default
        try fm.createDirectory(atPath: forged + "/retired", withIntermediateDirectories: true)
        for name in ["signing-key.pem", "signing-key.pub.pem"] {
            try fm.copyItem(atPath: other + "/" + name, toPath: forged + "/" + name)
            try fm.copyItem(atPath: first + "/" + name, toPath: forged + "/retired/epoch-1-" + name)
        }
        try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: forged + "/signing-key.pem")
        let info = try String(contentsOfFile: other + "/key.json", encoding: .utf8)
        try info.replacingOccurrences(of: "\"key_epoch\":1", with: "\"key_epoch\":2").write(toFile: forged + "/key.json", atomically: true, encoding: .utf8)
        let before = try Data(contentsOf: URL(fileURLWithPath: store))
        let refused = try edgelog(["ingest", "--device", store, "--key-dir", forged], input: "{\"a\":2}\n")
        #expect(refused.code == 9, "exit \(refused.code): \(refused.err)")
        #expect(refused.err.contains("not the key rotation that endorsed"), "\(refused.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: store)) == before)
    }

    @Test("edgelog run: the configured key directory signs, a missing file store is created, bad settings name their line")
    func runWithConfiguration() throws {
        let s = try Scratch()
        let keys = s.path("keys")
        #expect(try edgelog(["keys", "generate", "--out", keys]).code == 0)
        let config = s.path("edgelog.yaml")
        let store = s.path("data/store.img"), anchor = s.path("state/anchor.json")
        try """
            # test gateway
            device: \(store)
            key_dir: \(keys)
            anchor: \(anchor)   # kept off the partition
            source: gw.test
            store_size: 2M
            segment_size: 8K
            max_age_ms: 5
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let shown = try edgelog(["run", "--config", config, "--show-config"])
        #expect(shown.code == 0 && shown.out.contains("\"source\":\"gw.test\"") && shown.out.contains("\"store_size\":2097152"), "\(shown.out)")
        let r = try edgelog(["run", "--config", config], input: "{\"t\":1}\n{\"t\":2}\n")
        #expect(r.code == 0, "\(r.err)")
        #expect(r.err.contains("created store"))
        #expect(jsonLines(r.out).reduce(0) { $0 + ($1["records"] as? Int ?? 0) } == 2)
        let verdict = try edgelog(["verify", "--device", store, "--trust", keys + "/signing-key.pub.pem", "--anchor", anchor])
        #expect(verdict.code == 0, "\(verdict.out)")
        #expect(try edgelog(["export", "--device", store]).out.contains("\"source\":\"gw.test\""))

        // No key and not unsigned: refused before anything is written.
        let unsignedConfig = s.path("nokey.yaml")
        try "device: \(s.path("other.img"))\nanchor: none\n".write(toFile: unsignedConfig, atomically: true, encoding: .utf8)
        var refused = try edgelog(["run", "--config", unsignedConfig, "--key-dir", s.path("missing")], input: "{\"a\":1}\n")
        #expect(refused.code == 9, "\(refused.err)")
        try "device: \(s.path("other.img"))\nanchor: none\nunsigned: true\nstore_size: 1M\n".write(toFile: unsignedConfig, atomically: true, encoding: .utf8)
        refused = try edgelog(["run", "--config", unsignedConfig], input: "{\"a\":1}\n")
        #expect(refused.code == 0, "\(refused.err)")

        let bad = s.path("bad.yaml")
        try "device: x\nkey_dri: y\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let badRun = try edgelog(["run", "--config", bad])
        #expect(badRun.code == 64 && badRun.err.contains("bad.yaml:2: key_dri: unknown key"), "\(badRun.err)")
    }

    @Test("openssl verifies the signed head's statement from the documented bytes", arguments: ["ed25519", "ecdsa-p256", "hmac-sha256"])
    func opensslVerifies(alg: String) throws {
        let s = try Scratch()
        let (store, keys, _) = try signedStore(s, alg: alg, segments: 2)
        let head = try edgelog(["head", "--device", store, "--json"])
        #expect(head.code == 0)
        let fields = try #require(jsonLines(head.out).first)
        let statement = try #require(Hex.decode(fields["statement"] as? String ?? ""))
        let signature = try #require(Hex.decode(fields["signature"] as? String ?? ""))
        #expect(statement.count == 352)
        let stmt = s.path("statement.bin"), sig = s.path("signature.bin")
        #expect(FileManager.default.createFile(atPath: stmt, contents: Data(statement)), "could not write the test file")
        let r: Outcome
        switch alg {
        case "ed25519":
            #expect(FileManager.default.createFile(atPath: sig, contents: Data(signature)), "could not write the test file")
            r = try runProcess("/usr/bin/env", ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", keys + "/signing-key.pub.pem",
                                                "-rawin", "-in", stmt, "-sigfile", sig])
        case "ecdsa-p256":
            #expect(FileManager.default.createFile(atPath: sig, contents: Data(derSignature(signature))), "could not write the test file")
            r = try runProcess("/usr/bin/env", ["openssl", "dgst", "-sha256", "-verify", keys + "/signing-key.pub.pem", "-signature", sig, stmt])
        default:
            let secret = try String(contentsOfFile: keys + "/hmac-key.hex", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let mac = try runProcess("/usr/bin/env", ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:" + secret, "-hex", stmt])
            #expect(mac.out.contains(signature.map { String(format: "%02x", $0) }.joined()), "\(mac.out)")
            r = mac
        }
        #expect(r.code == 0, "\(r.out) \(r.err)")
        // A one-bit change of the statement must not verify.
        var bad = statement
        bad[100] ^= 1
        #expect(FileManager.default.createFile(atPath: stmt, contents: Data(bad)), "could not write the test file")
        if alg == "ed25519" {
            let fail = try runProcess("/usr/bin/env", ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", keys + "/signing-key.pub.pem",
                                                       "-rawin", "-in", stmt, "-sigfile", sig])
            #expect(fail.code != 0)
        }
    }

    @Test("metadata edited with the card: inspect labels what contradicts the seal, ingest refuses it untouched (exit 8)")
    func editedMetadataThroughTheBinary() throws {
        let s = try Scratch()
        let (store, keys, trust) = try signedStore(s, alg: "ed25519", segments: 3)
        let original = try Data(contentsOf: URL(fileURLWithPath: store))
        // FORMAT.md A.8 offsets.
        for (field, offset, size, value) in [("records_total", 160, 8, UInt64(1) << 20), ("mono_hwm", 152, 8, UInt64(2)),
                                             ("dropped_total", 176, 8, UInt64(3)), ("lost_total", 168, 8, UInt64(9))] {
            let edited = editMeta6(original, offset, value, size: size)
            try edited.write(to: URL(fileURLWithPath: store))
            let inspect = try edgelog(["inspect", "--device", store, "--json"])
            let state = try #require(try JSONSerialization.jsonObject(with: Data(inspect.out.utf8)) as? [String: Any])
            #expect((state["contradicted_fields"] as? [String])?.contains(field) == true, "\(field): \(inspect.out)")
            #expect((state["metadata_check"] as? String)?.hasPrefix("CONTRADICTS") == true)
            let text = try edgelog(["inspect", "--device", store])
            #expect(text.out.contains("checked      metadata CONTRADICTS the sealed state of frame"), "\(text.out)")
            #expect(text.out.contains(": \(field) is \(value), sealed") || text.out.contains("; \(field) is \(value), sealed"), "\(text.out)")
            let ingest = try edgelog(["ingest", "--device", store, "--key-dir", keys], input: "{\"late\":1}\n")
            #expect(ingest.code == 8 && ingest.err.contains("contradicts the signed head"), "\(field): \(ingest.err)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: store)) == edited)
            let verify = try edgelog(["verify", "--device", store, "--trust", trust, "--json"])
            #expect(verify.code == 1 && verify.out.contains("\"metadata_mismatch\""))
        }
        try original.write(to: URL(fileURLWithPath: store))
        let clean = try edgelog(["inspect", "--device", store, "--json"])
        let state = try #require(try JSONSerialization.jsonObject(with: Data(clean.out.utf8)) as? [String: Any])
        #expect((state["contradicted_fields"] as? [String]) == [])
        #expect((state["metadata_check"] as? String)?.hasPrefix("agrees") == true)
    }

    @Test("edgelog verify and the independent Python verifier give the same verdicts on tampered stores")
    func independentVerifierAgrees() throws {
        let s = try Scratch()
        var compared = 0
        for alg in ["ed25519", "ecdsa-p256", "hmac-sha256"] {
            let (store, keys, trust) = try signedStore(s, alg: alg)
            let anchor = s.path("anchor-\(alg).json")
            let original = try Data(contentsOf: URL(fileURLWithPath: store))
            // Format 6 (FORMAT.md A.5 to A.8): metadata slots at 0 and 16384, the ring from 32768.
            let slot = { (i: Int) in 32768 + i * 8192 }
            let headerLength = { (d: Data, i: Int) in (0..<4).reduce(0) { $0 | Int(d[slot(i) + 12 + $1]) << (8 * $1) } }
            var cases: [(String, Data)] = [("intact", original)]
            var flipped = original
            flipped[slot(2) + headerLength(original, 2) + 60] ^= 0x01
            cases.append(("frame bit", flipped))
            var zeroed = original
            zeroed.replaceSubrange(slot(3)..<slot(4), with: Data(count: 8192))
            cases.append(("deleted segment", zeroed))
            var swapped = original
            swapped.replaceSubrange(slot(1)..<slot(2), with: original[slot(2)..<slot(3)])
            swapped.replaceSubrange(slot(2)..<slot(3), with: original[slot(1)..<slot(2)])
            cases.append(("swapped segments", swapped))
            var headerFlip = original
            headerFlip[slot(4) + 130] ^= 0x80
            cases.append(("segment header bit", headerFlip))
            var slotFlip = original
            slotFlip[300] ^= 0x04
            cases.append(("metadata slot A bit", slotFlip))
            var tail = original
            tail.replaceSubrange(slot(4)..<slot(6), with: Data(count: 2 * 8192))
            cases.append(("truncated tail", tail))
            var bothSlots = original
            bothSlots[300] ^= 0x04
            bothSlots[16384 + 300] ^= 0x04
            cases.append(("both metadata slots", bothSlots))
            cases.append(("truncated image", original.prefix(slot(3))))
            // Attacks with the card (issue 9): unsigned metadata edited with good CRCs, history
            // deleted under a moved tail, hostile ids, the newest history cut away.
            cases.append(("mono_hwm lowered", editMeta6(original, 152, 1, size: 8)))
            cases.append(("records_total raised", editMeta6(original, 160, 1 << 40, size: 8)))
            var oldest = original
            oldest.replaceSubrange(slot(0)..<slot(1), with: Data(count: 8192))
            cases.append(("oldest zeroed, tail moved", editMeta6(editMeta6(oldest, 128, 2, size: 8), 136, 1, size: 4)))
            cases.append(("head id 2^40", editMeta6(original, 64, 1 << 40, size: 8)))
            cases.append(("clean_flag 0, slot A wiped", {
                var d = editMeta6(original, 60, 0, size: 4)
                d.replaceSubrange(0..<16384, with: Data(count: 16384))
                return d
            }()))
            // The metadata as it was after segment 3 (signedStore keeps that image), left open, and
            // the segments after it erased: a truncation dressed as a power cut.
            var truncated = original
            let afterThree = try Data(contentsOf: URL(fileURLWithPath: s.path("after3-\(alg).img")))
            truncated.replaceSubrange(0..<32768, with: afterThree[0..<32768])
            truncated.replaceSubrange(slot(3)..<slot(6), with: Data(count: 3 * 8192))
            cases.append(("newest segments erased under older metadata", editMeta6(truncated, 60, 0, size: 4)))

            // A power cut: one more session's segment, torn inside its first frame, after the head
            // of the original metadata; then the same image after a writer's recovery.
            let longer = s.path("longer-\(alg).img")
            try original.write(to: URL(fileURLWithPath: longer))
            #expect(try edgelog(["ingest", "--device", longer, "--key-dir", keys, "--anchor", s.path("anchor-longer-\(alg).json")],
                                input: "{\"cut\":1}\n{\"cut\":2}\n").code == 0)
            var torn = try Data(contentsOf: URL(fileURLWithPath: longer))
            // As a cut leaves it: the writer had the store open (clean_flag 0, FORMAT.md A.8).
            torn.replaceSubrange(0..<32768, with: editMeta6(original, 60, 0, size: 4)[0..<32768])
            let cutAt = slot(6) + headerLength(torn, 6) + 40
            torn.replaceSubrange(cutAt..<slot(7), with: Data(count: slot(7) - cutAt))
            cases.append(("torn segment after the head", torn))
            let recovered = s.path("recovered-\(alg).img")
            try torn.write(to: URL(fileURLWithPath: recovered))
            let recovery = try edgelog(["ingest", "--device", recovered, "--key-dir", keys], input: "")
            #expect(recovery.code == 0 && recovery.err.contains("torn"), "\(recovery.err)")
            cases.append(("recovered after the torn segment", try Data(contentsOf: URL(fileURLWithPath: recovered))))

            for (name, bytes) in cases {
                let image = s.path("case.img")
                try bytes.write(to: URL(fileURLWithPath: image))
                let powerCut = name.hasPrefix("torn") || name.hasPrefix("recovered")
                var extras = [[String](), ["--anchor", anchor]]
                // A firmware list without the writer's hash fails every segment as fw_not_allowed.
                if name == "intact" { extras.append(["--allow-fw", String(repeating: "ab", count: 32)]) }
                // An anchor file of two heads is malformed in both verifiers (FORMAT.md 8).
                if name == "intact" {
                    let twoHeads = s.path("two-heads.json")
                    try (try Data(contentsOf: URL(fileURLWithPath: anchor)) + Data(contentsOf: URL(fileURLWithPath: anchor)))
                        .write(to: URL(fileURLWithPath: twoHeads))
                    extras.append(["--anchor", twoHeads])
                }
                // Another store of the same device and key: its signed head is no anchor for this one.
                if name == "intact" {
                    let sibling = s.path("sibling-\(alg).img"), siblingAnchor = s.path("sibling-anchor-\(alg).json")
                    #expect(try edgelog(["format", "--device", sibling, "--size", "1M", "--segment-size", "8K"]).code == 0)
                    for n in 0..<8 {
                        #expect(try edgelog(["ingest", "--device", sibling, "--key-dir", keys, "--anchor", siblingAnchor],
                                            input: "{\"s\":\(n)}\n").code == 0)
                    }
                    extras.append(["--anchor", siblingAnchor])
                }
                for extra in extras {
                    let args = ["--device", image, "--trust", trust, "--json"] + extra
                    let ours = try edgelog(["verify"] + args)
                    let theirs = try runProcess("/usr/bin/env", ["python3", Self.pythonVerifier] + args)
                    let a = verdicts(ours.out), b = verdicts(theirs.out)
                    #expect(a == b, "\(alg) \(name) \(extra):\n edgelog \(a)\n python  \(b)")
                    #expect(ours.code == theirs.code, "\(alg) \(name): exit \(ours.code) vs \(theirs.code)")
                    let foreignAnchor = (extra.last ?? "").hasSuffix("two-heads.json") || (extra.last ?? "").contains("sibling-anchor")
                    if foreignAnchor { #expect(a.verdict == "FAIL", "\(name) \(extra): \(a)") }
                    // A damaged metadata slot beside a good one is what a cut metadata write leaves: a
                    // note (FORMAT.md A.11, decisions). An older image of the store passes without an
                    // anchor, with the note that says so; only the anchor tells (FORMAT.md 8).
                    let cutMetadata = name == "metadata slot A bit"
                    let olderImage = name == "newest segments erased under older metadata" && extra.isEmpty
                    if (name == "intact" || cutMetadata) && extra.first != "--allow-fw" && !foreignAnchor || powerCut && extra.isEmpty || olderImage {
                        #expect(a.verdict == "PASS" && ours.code == 0, "\(name): \(ours.out)")
                    } else if !powerCut {
                        #expect(a.verdict == "FAIL", "\(name) \(extra): \(a)")
                    }
                    if cutMetadata { #expect(a.notes.contains { $0.hasPrefix("torn_metadata_write") }, "\(a.notes)") }
                    if olderImage { #expect(a.notes.contains { $0.hasPrefix("truncation_not_excluded") }, "\(a.notes)") }
                    if name == "torn segment after the head" { #expect(a.notes.contains { $0.hasPrefix("torn_tail_power_cut") }) }
                    if name == "recovered after the torn segment" {
                        #expect(a.notes.filter { $0.hasPrefix("power_cut_explained") }.count == 2, "incomplete and recovery records: \(a.notes)")
                    }
                    if extra.first == "--allow-fw" { #expect(a.reasons == ["fw_not_allowed"] && a.segments.allSatisfy { $0.contains(" FAIL:fw_not_allowed ") }) }
                    compared += 1
                }
            }
            _ = keys
        }
        // An unsigned store: FAIL as unsigned, PASS with --allow-unsigned, in both verifiers.
        let plain = s.path("unsigned.img")
        #expect(try edgelog(["format", "--device", plain, "--size", "1M", "--segment-size", "8K"]).code == 0)
        #expect(try edgelog(["ingest", "--device", plain, "--unsigned"], input: "{\"u\":1}\n{\"u\":2}\n").code == 0)
        for extra in [[String](), ["--allow-unsigned"]] {
            let args = ["--device", plain, "--trust", s.path("keys-ed25519") + "/signing-key.pub.pem", "--json"] + extra
            let ours = try edgelog(["verify"] + args)
            let theirs = try runProcess("/usr/bin/env", ["python3", Self.pythonVerifier] + args)
            let a = verdicts(ours.out), b = verdicts(theirs.out)
            #expect(a == b, "unsigned \(extra): \(a) vs \(b)")
            #expect(a.verdict == (extra.isEmpty ? "FAIL" : "PASS"))
            compared += 1
        }
        print("verifier comparisons: \(compared) verdicts, edgelog verify and scripts/edgelog_verify.py")
    }
}

/// r || s (32 bytes each) as DER SEQUENCE { INTEGER r, INTEGER s }, the form openssl reads.
func derSignature(_ raw: [UInt8]) -> [UInt8] {
    func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var v = Array(bytes.drop { $0 == 0 })
        if v.isEmpty { v = [0] }
        if v[0] & 0x80 != 0 { v.insert(0, at: 0) }
        return [0x02, UInt8(v.count)] + v
    }
    let body = integer(raw[0..<32]) + integer(raw[32..<64])
    return [0x30, UInt8(body.count)] + body
}

/// `data` with a metadata field set in both slots and their CRCs made good, as someone with the card can.
/// A format 6 metadata edit (FORMAT.md A.8): the field in each valid slot (at 0 and 16384), the
/// slot's CRC over meta_len bytes recomputed, as someone holding the card would.
func editMeta6(_ data: Data, _ offset: Int, _ value: UInt64, size: Int) -> Data {
    var d = data
    for base in [0, 16384] {
        let metaLen = (0..<4).reduce(0) { $0 | Int(d[base + 12 + $1]) << (8 * $1) }
        guard metaLen >= 1024, metaLen <= 16384 else { continue }
        for k in 0..<size { d[base + offset + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
        let crc = d.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[base..<(base + metaLen - 4)])) }
        d.replaceSubrange((base + metaLen - 4)..<(base + metaLen), with: withUnsafeBytes(of: crc.littleEndian) { Data($0) })
    }
    return d
}

func editMeta(_ data: Data, _ offset: Int, _ value: UInt64, size: Int) -> Data {
    var d = data
    for base in [0, 4096] {
        for k in 0..<size { d[base + offset + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
        let crc = d.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[base..<(base + 4092)])) }
        d.replaceSubrange((base + 4092)..<(base + 4096), with: withUnsafeBytes(of: crc.littleEndian) { Data($0) })
    }
    return d
}
