// The format 6 verifier (docs/FORMAT.md A.11) on stores the format 6 evidence store wrote: honest
// ones pass, signed; what an attacker with the card but no key can do to them fails with the
// reason A.11 names; power cuts are notes.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

private let segment6 = 16384

/// A signed format 6 store built in memory through the evidence store, with snapshots after each session.
private struct Signed6 {
    var device: MemoryBlockDevice
    var signer: FileSigner
    var snapshots: [[UInt8]] = []
    var trusted: TrustedKey { signer.key.trusted }
    var n = 0

    init(key: PrivateSigningKey = .hmacSHA256(Array(repeating: 0x42, count: 32)), slots: Int = 6) throws {
        device = MemoryBlockDevice(size: PackedGeometry.ringOffset + slots * segment6, sectorSize: 512)
        try PackedEvidenceStore.format(device: device, segmentSize: segment6, storeUUID: storeUUID, deviceID: deviceID, wallNs: 0, force: false)
        signer = FileSigner(key: key, epoch: 1)
    }

    var identity: SealIdentity { SealIdentity(deviceID: deviceID, fwVerHash: firmware, signer: signer) }

    /// One session of `commits` commits of `per` records; closed unless `close` is false.
    mutating func session(commits: Int, per: Int = 6, close: Bool = true, policy: RingFullPolicy = .overwriteOldest,
                          identity: SealIdentity? = nil, extra: ((PackedEvidenceStore) throws -> Void)? = nil) throws {
        let store = try PackedEvidenceStore.open(device: device, policy: policy, identity: identity ?? self.identity, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000)) { _ in }
        for _ in 0..<commits {
            for _ in 0..<per {
                _ = Array("{\"n\":\(n),\"t\":\(20 + n % 5)}".utf8).withUnsafeBytes { pipeline.append(source: "sensor", payload: $0, time: CrashOracle.fixedClock()) }
                n += 1
            }
            try pipeline.flush()
        }
        try extra?(store)
        if close { try pipeline.close() }
        snapshots.append(device.bytes)
    }

    func verify(_ device: BlockDevice? = nil, trusted: [TrustedKey]? = nil, anchor: [UInt8]? = nil, allowUnsigned: Bool = false) -> PackedVerifyReport {
        PackedVerifier.verify(device: device ?? self.device, options: VerifyOptions(trusted: trusted ?? [self.trusted], anchor: anchor, allowUnsigned: allowUnsigned))
    }
}

private func reasons(_ r: PackedVerifyReport) -> [String] { r.reasons }

/// The chosen metadata slot rewritten by `edit`, its CRC fixed (what anyone can do).
private func editMetadata(_ device: MemoryBlockDevice, _ edit: (inout PackedMetadata) -> Void) throws {
    let h = try PackedHistory.analyze(device: device)
    let offset = h.recovery.metadataSlot * PackedGeometry.metadataSlotSize
    var m = try #require(Array(device.bytes[offset..<(offset + PackedGeometry.metadataSlotSize)]).withUnsafeBytes {
        PackedMetadata.decode($0, deviceSize: device.byteCount)
    })
    edit(&m)
    let bytes = m.encoded()
    try bytes.withUnsafeBytes { try device.write(at: UInt64(offset), from: $0) }
}

@Suite("Format 6 verifier")
struct PackedVerifierTests {
    @Test("an honest signed store that wrapped, with an unclean stop in between, passes signed; its power cut is explained")
    func honest() throws {
        var s = try Signed6()
        try s.session(commits: 30)
        try s.session(commits: 20, close: false)
        try s.session(commits: 150)
        let r = s.verify()
        #expect(r.passed, "\(r.reasons) \(r.findings.map(\.detail)) \(r.segments.filter { !$0.passed }.map(\.detail))")
        #expect(r.signed && r.sigAlg == .hmacSHA256)
        #expect(r.framesPassed == r.frames && r.frames > 50)
        #expect(r.notes.contains { $0.note == "power_cut_explained" })
        #expect(r.notes.contains { $0.note == "ring_overwrite" })
        #expect(r.notes.contains { $0.note == "not_retained" })
        #expect(r.notes.last?.note == "truncation_not_excluded")
    }

    @Test("ed25519 and ECDSA P-256 stores pass; another key is unknown_key; no key at all fails")
    func algorithms() throws {
        for alg in [SignatureAlgorithm.ed25519, .ecdsaP256] {
            var s = try Signed6(key: try PrivateSigningKey.generate(alg))
            try s.session(commits: 5)
            #expect(s.verify().passed)
            let other = try PrivateSigningKey.generate(alg).trusted
            #expect(reasons(s.verify(trusted: [other])) == ["unknown_key"])
        }
    }

    @Test("an unsigned store passes only with --allow-unsigned")
    func unsigned() throws {
        var s = try Signed6()
        try s.session(commits: 5, identity: .unsigned(deviceID: deviceID))
        #expect(reasons(s.verify(trusted: [])) == ["unsigned"])
        let r = s.verify(trusted: [], allowUnsigned: true)
        #expect(r.passed && !r.signed)
    }

    @Test("a record edited and its frame CRC fixed fails the frame, and only from there")
    func editedRecord() throws {
        var s = try Signed6()
        try s.session(commits: 10)
        let h = try PackedHistory.analyze(device: s.device)
        let frames = h.frames(device: s.device)
        let target = frames[4]
        // The frame's stored bytes: flip one, then fix frame_crc as anyone can.
        let slotOffset = PackedGeometry.ringOffset + h.headSlot * segment6
        let at = slotOffset + target.offset
        var image = s.device.bytes
        let length = target.frameLength
        image[at + length - 4 - 32 - 2] ^= 0x01
        let seedHeader = try PackedSegmentReader.walk(UnsafeRawBufferPointer(start: image.withUnsafeBytes { $0.baseAddress! + slotOffset }, count: segment6), sectorSize: 512).header
        _ = seedHeader
        var crcInput = storeUUID
        withUnsafeBytes(of: target.segmentID.littleEndian) { crcInput += $0 }
        let seed = CRC32C.checksum(crcInput)
        let crc = CRC32C.checksum(Array(image[at..<(at + length - 4)]), seed: seed)
        withUnsafeBytes(of: crc.littleEndian) { image.replaceSubrange((at + length - 4)..<(at + length), with: $0) }
        let r = s.verify(MemoryBlockDevice(image: image, sectorSize: 512))
        #expect(!r.passed)
        #expect(r.frameFailures.first?.frameID == target.frameID, "\(r.frameFailures)")
        #expect(["bad_signature", "crc_mismatch"].contains(r.frameFailures.first?.reason.rawValue ?? ""))
    }

    @Test("edited metadata numbers are metadata_mismatch at their offsets")
    func editedMetadata() throws {
        var s = try Signed6()
        try s.session(commits: 8)
        try editMetadata(s.device) { $0.state.recordsTotal -= 3; $0.state.droppedTotal += 1 }
        let r = s.verify()
        #expect(reasons(r) == ["metadata_mismatch"])
        #expect(r.findings.map { $0.offset % UInt64(PackedGeometry.metadataSlotSize) } == [160, 176])
    }

    @Test("an older image against a later anchor is truncated_tail or rollback; the same image passes with its own head; another store's head is foreign")
    func anchors() throws {
        var s = try Signed6()
        try s.session(commits: 6)
        let older = s.device.bytes
        try s.session(commits: 6)
        let head = try #require(try FrameHead.of(device: s.device))
        #expect(s.verify(anchor: head.fileBytes).passed)
        let r = s.verify(MemoryBlockDevice(image: older, sectorSize: 512), anchor: head.fileBytes)
        #expect(!r.passed && (reasons(r) == ["rollback"] || reasons(r) == ["truncated_tail"]), "\(reasons(r))")
        var bytes = head.fileBytes
        bytes[bytes.count - 3] = bytes[bytes.count - 3] == 0x30 ? 0x31 : 0x30
        #expect(reasons(s.verify(anchor: bytes)).contains { $0 == "anchor_malformed" || $0 == "anchor_bad_signature" })
        var t = try Signed6()
        try t.session(commits: 2)
        let foreign = try #require(try FrameHead.of(device: t.device))
        // Same key, same device id, another store uuid? Both use storeUUID: make the other device id differ instead.
        _ = foreign
        #expect(try FrameHead.parse(head.fileBytes) == head)
    }

    @Test("frames erased from the end of the head segment with the metadata rolled back show only against an anchor")
    func erasedFrames() throws {
        var s = try Signed6()
        try s.session(commits: 6)
        let anchorEarly = try #require(try FrameHead.of(device: s.device))
        try s.session(commits: 3, close: false)
        let head = try #require(try FrameHead.of(device: s.device))
        // Erase the last frame of the head segment: a torn-looking end with clean_flag 0.
        let h = try PackedHistory.analyze(device: s.device)
        let last = try #require(h.frames(device: s.device).last)
        let at = PackedGeometry.ringOffset + h.headSlot * segment6 + last.offset
        var image = s.device.bytes
        image.replaceSubrange(at..<(at + 512), with: [UInt8](repeating: 0, count: 512))
        let cut = MemoryBlockDevice(image: image, sectorSize: 512)
        #expect(s.verify(cut, anchor: anchorEarly.fileBytes).passed, "older anchor: nothing to show")
        #expect(reasons(s.verify(cut, anchor: head.fileBytes)).contains("truncated_tail"))
    }

    @Test("a committed segment beyond the head the metadata names is truncated_tail")
    func beyondHead() throws {
        var s = try Signed6()
        try s.session(commits: 100, policy: .pause)
        let h = try PackedHistory.analyze(device: s.device)
        #expect(h.headSegmentID >= 4)
        // Roll the metadata back to a frame of segment 2 and erase segment 3: segment 4 and later
        // lie beyond the head the store now shows.
        let frames = h.frames(device: s.device)
        let early = try #require(frames.first { $0.segmentID == 2 })
        var image = s.device.bytes
        let slot3 = PackedGeometry.ringOffset + 2 * segment6
        image.replaceSubrange(slot3..<(slot3 + segment6), with: [UInt8](repeating: 0, count: segment6))
        let device = MemoryBlockDevice(image: image, sectorSize: 512)
        try editMetadata(device) { m in
            m.headFrameID = early.frameID
            m.headSegmentID = early.segmentID
            m.headSlot = 1
            m.headOffset = early.offset
            m.hashHead = early.frameHash
            m.headCRC = early.frameCRC
            m.state = early.stateAfter
        }
        let r = s.verify(device)
        #expect(r.reasons == ["truncated_tail"], "\(r.reasons)")
        #expect(r.findings.contains { $0.reason == .truncatedTail && $0.offset == UInt64(PackedGeometry.ringOffset + 3 * segment6) })
    }
}

@Suite("Format 6 trust path")
struct PackedTrustPathTests {
    @Test("the writer's anchor check: the same history passes, an older image is rollback, another history is fork, another store is a mismatch")
    func anchorCheck() throws {
        var s = try Signed6()
        try s.session(commits: 6)
        let older = s.device.bytes
        let early = try #require(try FrameHead.of(device: s.device))
        try s.session(commits: 6)
        let late = try #require(try FrameHead.of(device: s.device))
        let now = try PackedHistory.analyze(device: s.device)
        #expect(FrameAnchorCheck.refusal(anchor: early, history: now, device: s.device) == nil)
        #expect(FrameAnchorCheck.refusal(anchor: late, history: now, device: s.device) == nil)
        let old = MemoryBlockDevice(image: older, sectorSize: 512)
        #expect(FrameAnchorCheck.refusal(anchor: late, history: try PackedHistory.analyze(device: old), device: old)?.reason == "rollback")
        // Another history of the same store and device, as long: the anchored frame differs.
        var t = try Signed6()
        t.n = 1000    // other readings
        try t.session(commits: 6)
        try t.session(commits: 9)
        let other = try PackedHistory.analyze(device: t.device)
        #expect(FrameAnchorCheck.refusal(anchor: late, history: other, device: t.device)?.reason == "fork")
    }

    @Test("a key rotation: the old key's frame endorses the new key, which signs from the next segment; the verifier trusting only the old key passes")
    func rotation() throws {
        var s = try Signed6(key: try PrivateSigningKey.generate(.ed25519))
        try s.session(commits: 5)
        let next = try PrivateSigningKey.generate(.ed25519)
        let record = try rotationRecord(old: s.signer, next: next)
        try s.session(commits: 2) { store in
            _ = try store.commitEvidence(.keyRotation, record)
        }
        #expect(FrameHead.endorses(keyID: next.trusted.keyID, device: s.device, oldKey: s.trusted, oldEpoch: 1))
        let newSigner = FileSigner(key: next, epoch: 2)
        // Only a frame the old key signed can tell: checked with another key or epoch, nothing endorses.
        #expect(!FrameHead.endorses(keyID: next.trusted.keyID, device: s.device, oldKey: next.trusted, oldEpoch: 1))
        #expect(!FrameHead.endorses(keyID: next.trusted.keyID, device: s.device, oldKey: s.trusted, oldEpoch: 2))
        var newIdentity = SealIdentity(deviceID: deviceID, fwVerHash: firmware, signer: newSigner)
        // Without the old key the new one refuses the head the old key signed.
        #expect(throws: StoreError.self) {
            _ = try PackedEvidenceStore.open(device: MemoryBlockDevice(image: s.device.bytes, sectorSize: 512), identity: newIdentity, clock: CrashOracle.fixedClock)
        }
        let old = s.trusted
        newIdentity.predecessorVerifies = { keyID, epoch, alg, signature, message in
            keyID == old.keyID && epoch == 1 && alg == old.algorithm.rawValue && old.verifies(signature, of: message)
        }
        try s.session(commits: 4, identity: newIdentity)
        let r = s.verify()
        #expect(r.passed, "\(r.reasons) \(r.segments.filter { !$0.passed }.map(\.detail)) \(r.frameFailures.map(\.detail))")
        #expect(r.signed)
        // Without the rotation record the new key is unknown.
        let head = try #require(try FrameHead.of(device: s.device))
        #expect(head.statement.keyEpoch == 2)
        #expect(reasons(s.verify(trusted: [next.trusted])).contains("unknown_key"))
    }
}

/// Both verifiers' --json lines on one image, each without its free-text detail.
private func compareVerifiers(_ image: [UInt8], key: TrustedKey?, anchor: [UInt8]? = nil, allowUnsigned: Bool = false) throws -> (swift: [String], python: [String]) {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-v6cmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let imagePath = dir.appendingPathComponent("store.img").path
    try Data(image).write(to: URL(fileURLWithPath: imagePath))
    var args = ["python3", root.appendingPathComponent("scripts/edgelog_verify.py").path, "--device", imagePath, "--json"]
    var options = VerifyOptions(trusted: key.map { [$0] } ?? [], anchor: anchor, allowUnsigned: allowUnsigned)
    options.epochs = [:]
    if let key {
        let keyPath = dir.appendingPathComponent("key").path
        try Data(key.fileText.utf8).write(to: URL(fileURLWithPath: keyPath))
        args += ["--trust", keyPath]
    }
    if let anchor {
        let anchorPath = dir.appendingPathComponent("anchor.json").path
        try Data(anchor).write(to: URL(fileURLWithPath: anchorPath))
        args += ["--anchor", anchorPath]
    }
    if allowUnsigned { args.append("--allow-unsigned") }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = args
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    func strip(_ lines: [String]) -> [String] {
        lines.map { line in
            guard let r = line.range(of: ",\"detail\":\"") else { return line }
            // detail is the last key of finding and note lines.
            return String(line[..<r.lowerBound]) + "}"
        }
    }
    let report = PackedVerifier.verify(device: MemoryBlockDevice(image: image, sectorSize: 512), options: options)
    let swift = strip(PackedVerifyJSON.lines(report))
    var python = strip(String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init))
    if python.isEmpty { python = ["python verifier: exit \(process.terminationStatus): \(errText)"] }
    return (swift, python)
}

@Suite("Format 6 verifiers agree", .serialized)
struct PackedVerifierComparisonTests {
    @Test("the Swift and the independent Python verifier print the same lines on honest and attacked format 6 images")
    func agree() throws {
        let key = try PrivateSigningKey.generate(.ed25519)
        var s = try Signed6(key: key)
        try s.session(commits: 30)
        try s.session(commits: 20, close: false)
        try s.session(commits: 150)
        var cases: [(String, [UInt8], TrustedKey?, [UInt8]?, Bool)] = []
        let honest = s.device.bytes
        let head = try #require(try FrameHead.of(device: s.device))
        cases.append(("honest", honest, s.trusted, nil, false))
        cases.append(("honest with its anchor", honest, s.trusted, head.fileBytes, false))
        cases.append(("another key", honest, try PrivateSigningKey.generate(.ed25519).trusted, nil, false))
        cases.append(("an older image against the anchor", s.snapshots[0], s.trusted, head.fileBytes, false))
        // Attacks on bytes: one byte of each frame area in turn, of the metadata, of a header.
        var rng = SplitMix64(seed: 77)
        for n in 0..<48 {
            var image = honest
            let at = n < 4 ? Int(rng.next() % UInt64(2 * PackedGeometry.metadataSlotSize))
                : PackedGeometry.ringOffset + Int(rng.next() % UInt64(image.count - PackedGeometry.ringOffset))
            image[at] ^= UInt8(1 << (n % 8))
            cases.append(("flip \(at)", image, s.trusted, nil, false))
        }
        var zeroed = honest
        let slot = PackedGeometry.ringOffset + 2 * segment6
        zeroed.replaceSubrange(slot..<(slot + segment6), with: [UInt8](repeating: 0, count: segment6))
        cases.append(("a segment erased", zeroed, s.trusted, nil, false))
        var u = try Signed6()
        try u.session(commits: 6, identity: .unsigned(deviceID: deviceID))
        // A rotated store, verified from the old key.
        var rot = try Signed6(key: key)
        try rot.session(commits: 5)
        let next = try PrivateSigningKey.generate(.ed25519)
        let record = try rotationRecord(old: rot.signer, next: next)
        try rot.session(commits: 2) { store in _ = try store.commitEvidence(.keyRotation, record) }
        var rotIdentity = SealIdentity(deviceID: deviceID, fwVerHash: firmware, signer: FileSigner(key: next, epoch: 2))
        let oldKey = rot.trusted
        rotIdentity.predecessorVerifies = { keyID, epoch, alg, signature, message in
            keyID == oldKey.keyID && epoch == 1 && alg == oldKey.algorithm.rawValue && oldKey.verifies(signature, of: message)
        }
        try rot.session(commits: 4, identity: rotIdentity)
        cases.append(("rotated", rot.device.bytes, rot.trusted, nil, false))
        // Images a power cut leaves in a signed session that wraps (before recovery).
        let cutDevice = FaultBlockDevice(image: try Signed6(key: key, slots: 4).device.bytes, sectorSize: 512)
        var c = try Signed6(key: key, slots: 4)
        c.device = MemoryBlockDevice(image: cutDevice.current, sectorSize: 512)
        let store = try PackedEvidenceStore.open(device: cutDevice, policy: .overwriteOldest, identity: c.identity, clock: CrashOracle.fixedClock)
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000)) { _ in }
        for n in 0..<90 {
            _ = Array("{\"n\":\(n)}".utf8).withUnsafeBytes { pipeline.append(source: "sensor", payload: $0, time: CrashOracle.fixedClock()) }
            if n % 2 == 1 { try pipeline.flush() }
        }
        try pipeline.close()
        let images = CrashImageBuilder(device: cutDevice)
        for cut in stride(from: 1, to: images.cuts.upperBound, by: 9) {
            for variant in [CrashVariant.torn512, .garbage] {
                cases.append(("cut \(cut) \(variant)", images.image(at: CrashPoint(cut: cut, variant: variant, seed: UInt64(cut)), sectorSize: 512), s.trusted, nil, false))
            }
        }
        // Both command lines want a --trust key: one that signed nothing here.
        cases.append(("unsigned", u.device.bytes, s.trusted, nil, true))
        cases.append(("unsigned, not allowed", u.device.bytes, s.trusted, nil, false))
        var disagreements: [String] = []
        for (name, image, trusted, anchor, allow) in cases {
            let (a, b) = try compareVerifiers(image, key: trusted, anchor: anchor, allowUnsigned: allow)
            if a != b {
                let firstDiff = zip(a, b).first { $0 != $1 }.map { "swift \($0.0) | python \($0.1)" } ?? "line counts \(a.count) and \(b.count)"
                disagreements.append("\(name): \(firstDiff)")
            }
        }
        print("format 6 verifiers: \(cases.count) images, \(disagreements.count) disagreements")
        for d in disagreements { print("DISAGREE " + d) }
        #expect(disagreements.count == 0, "\(disagreements.prefix(6).joined(separator: "\n"))")
    }
}

/// The slots commits reported, from the committer thread.
private final class ReceiptSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Int] = []
    func add(_ slot: Int) { lock.withLock { slots.append(slot) } }
    var all: [Int] { lock.withLock { slots } }
}

@Suite("Format 6 bad slots")
struct PackedBadSlotTests {
    @Test("a slot whose writes fail is marked bad and skipped through the evidence store: the store passes in both verifiers, the slot in its sealed tables",
          .serialized, arguments: [false, true])
    func badSlot(landed: Bool) throws {
        let base = MemoryBlockDevice(size: PackedGeometry.ringOffset + 6 * segment6, sectorSize: 512)
        try PackedEvidenceStore.format(device: base, segmentSize: segment6, storeUUID: storeUUID, deviceID: deviceID, wallNs: 0, force: false)
        let device = FaultBlockDevice(image: base.bytes)
        // The write fails and nothing lands; or it lands and its flush fails, leaving a valid
        // signed first frame in the slot given up.
        let bad = UInt64(PackedGeometry.ringOffset + 2 * segment6)
        device.failWrites(at: bad, landed: landed)
        let key = try PrivateSigningKey.generate(.ed25519)
        let identity = SealIdentity(deviceID: deviceID, fwVerHash: firmware, signer: FileSigner(key: key, epoch: 1))
        var n = 0
        let slots = ReceiptSlots()
        for _ in 0..<3 {
            let store = try PackedEvidenceStore.open(device: device, policy: .overwriteOldest, identity: identity, clock: CrashOracle.fixedClock)
            let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000)) { slots.add($0.slot) }
            for _ in 0..<70 {
                for _ in 0..<6 {
                    _ = Array("{\"n\":\(n),\"t\":\(20 + n % 5)}".utf8).withUnsafeBytes { pipeline.append(source: "sensor", payload: $0, time: CrashOracle.fixedClock()) }
                    n += 1
                }
                try pipeline.flush()
            }
            try pipeline.close()
        }
        let image = device.current
        let h = try PackedHistory.analyze(device: MemoryBlockDevice(image: image))
        #expect(h.metadata.state.tables.badSlots.map(\.slot) == [2] && h.metadata.state.tables.badSlots.first?.reason == (landed ? 2 : 1))
        #expect(h.wrapCount >= 1, "the ring wrapped past the bad slot")
        // What a commit reported is the frame as written: the moved one, never the one in slot 2.
        let reported = slots.all
        #expect(reported.count >= 210 && !reported.contains(2))
        let (swift, python) = try compareVerifiers(image, key: key.trusted)
        #expect(swift == python, "\(zip(swift, python).first { $0.0 != $0.1 }.map { "\($0.0) | \($0.1)" } ?? "\(swift.count) vs \(python.count) lines")")
        #expect(swift.last?.contains("\"verdict\":\"PASS\"") == true, "\(swift.suffix(4))")
    }
}

@Suite("Format 6 verifier: what it cannot tell apart")
struct PackedVerifierLimitsTests {
    @Test("the oldest segment of a full ring erased under a forged clean_flag 0 looks like a reclaim cut short: PASS, with the tail_given_up note saying so")
    func tailGivenUpIsLabelled() throws {
        var s = try Signed6()
        var h = try PackedHistory.analyze(device: s.device)
        // Until the ring is full: the segment after the head's is the oldest.
        for _ in 0..<40 where h.headFrameID == 0 || h.tailSegmentID == 1 || h.metadata.nextSlot(after: h.headSlot) != h.tailSlot {
            try s.session(commits: 10, policy: .overwriteOldest)
            h = try PackedHistory.analyze(device: s.device)
        }
        #expect(h.metadata.nextSlot(after: h.headSlot) == h.tailSlot, "the ring is full")
        var image = s.device.bytes
        let tail = PackedGeometry.ringOffset + h.tailSlot * segment6
        image.replaceSubrange(tail..<(tail + segment6), with: [UInt8](repeating: 0, count: segment6))
        let device = MemoryBlockDevice(image: image, sectorSize: 512)
        try editMetadata(device) { $0.clean = false }
        let r = s.verify(device)
        #expect(r.passed)
        #expect(r.notes.contains { $0.note == "tail_given_up" && $0.segmentID == h.tailSegmentID })
        // Left clean, the same erasure is a gap.
        let clean = MemoryBlockDevice(image: image, sectorSize: 512)
        #expect(s.verify(clean).reasons == ["gap"])
    }
}

extension PackedVerifierLimitsTests {
    @Test("a cut write of the metadata slot beside a clean one (what every open does first) is a note, not a finding; a wiped slot is a finding")
    func tornMetadataWrite() throws {
        var s = try Signed6()
        try s.session(commits: 5)
        let h = try PackedHistory.analyze(device: s.device)
        let other = (1 - h.recovery.metadataSlot) * PackedGeometry.metadataSlotSize
        var image = s.device.bytes
        image[other + 100] ^= 1
        let r = s.verify(MemoryBlockDevice(image: image, sectorSize: 512))
        #expect(r.passed && r.notes.first?.note == "torn_metadata_write")
        image.replaceSubrange(other..<(other + PackedGeometry.metadataSlotSize), with: [UInt8](repeating: 0, count: PackedGeometry.metadataSlotSize))
        #expect(s.verify(MemoryBlockDevice(image: image, sectorSize: 512)).reasons == ["crc_mismatch"])
    }
}
