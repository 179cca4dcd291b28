// The tamper suite (issue 3): every attack has its expected verdict, not just "fails".

import EdgelogCore
import Foundation
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit
import Testing

@Suite("Tamper verification")
struct TamperTests {
    static let otherKey = PrivateSigningKey.hmacSHA256(Array(repeating: 0x77, count: 32))

    func sixSegments(key: PrivateSigningKey = .hmacSHA256(Array(repeating: 0x42, count: 32))) throws -> SignedStore {
        var store = try SignedStore(key: key)
        try store.session(segments: 6)
        return store
    }

    @Test("an intact store passes with every algorithm, and the head hash matches", arguments: [
        PrivateSigningKey.ed25519(.init()), .ecdsaP256(.init()), .hmacSHA256(Array(repeating: 9, count: 32)),
    ])
    func intact(key: PrivateSigningKey) throws {
        let store = try sixSegments(key: key)
        let report = store.verify()
        #expect(report.passed, "\(report.segments) \(report.findings)")
        #expect(report.segments.count == 6)
        #expect(report.sigAlg == key.algorithm)
        // Without an anchor the only note says that a shorter copy cannot be excluded (FORMAT.md 9 item 7).
        #expect(report.notes.map(\.note) == ["truncation_not_excluded"])
        #expect(report.signed)
    }

    @Test("every bit flip in either metadata slot is reported for that slot, and no segment fails")
    func metadataBitFlips() throws {
        var store = try SignedStore()
        try store.session(segments: 2, perSegment: 2)
        let image = store.device.bytes
        var reported = 0
        for slot in 0..<2 {
            for bit in stride(from: 0, to: 4096 * 8, by: 1) {
                var flipped = image
                flipped[slot * 4096 + bit / 8] ^= UInt8(1 << (bit % 8))
                let report = store.verify(flipped)
                // A flipped format_version reading as a newer version refuses the whole store (FORMAT.md opening).
                let versionField = (64..<80).contains(bit)
                let named = report.findings.contains { $0.reason == .crcMismatch && $0.offset == UInt64(slot * 4096) }
                    || (versionField && report.findingReasons == ["not_a_store"])
                    || report.notes.contains { $0.note == "torn_metadata_write" && $0.detail.contains("slot \(Layout.slotName(slot))") }
                #expect(named, "slot \(slot) bit \(bit) went unreported")
                #expect(report.failedSegments == 0, "slot \(slot) bit \(bit) failed a segment")
                if named { reported += 1 }
            }
        }
        #expect(reported == 2 * 4096 * 8)
    }

    @Test("every bit flip in sampled records fails exactly that segment with crc_mismatch")
    func recordBitFlips() throws {
        let store = try sixSegments()
        let image = store.device.bytes
        let forge = Forge(image: image)
        for slot in [0, 3, 5] {
            let record = forge.records(slot: slot)[1]
            let length = Int(forge.u32(record))
            for bit in 0..<(length * 8) {
                var flipped = image
                flipped[record + bit / 8] ^= UInt8(1 << (bit % 8))
                let report = store.verify(flipped)
                let verdicts = report.reasonsBySegment
                #expect(verdicts[UInt64(slot + 1)] == "crc_mismatch", "slot \(slot) bit \(bit): \(verdicts)")
                #expect(report.failedSegments == 1, "slot \(slot) bit \(bit): \(verdicts)")
            }
        }
    }

    @Test("a modified payload: CRCs fixed gives hash_mismatch, hash also fixed gives bad_signature")
    func modifiedPayload() throws {
        let store = try sixSegments()
        var forge = Forge(image: store.device.bytes)
        let record = forge.records(slot: 2)[0]
        forge.image[record + 44 + 6 + 6] ^= 0x01 // inside {"n":10}: a digit changes
        #expect(store.verify(forge.image).reasonsBySegment[3] == "crc_mismatch")
        forge.fixRecordCRC(at: record)
        forge.fixBodyAndMarker(slot: 2)
        let hashReport = store.verify(forge.image)
        #expect(hashReport.reasonsBySegment == [1: "PASS", 2: "PASS", 3: "hash_mismatch", 4: "PASS", 5: "PASS", 6: "PASS"])
        forge.resealHash(slot: 2)
        let sigReport = store.verify(forge.image)
        #expect(sigReport.reasonsBySegment[3] == "bad_signature")
        // The next segment's prev_hash names the original: the chain shows the substitution too.
        #expect(sigReport.reasonsBySegment[4] == "chain_break")
    }

    @Test("a deleted record: fixing the header gives seal_mismatch; re-signing with a foreign key gives unknown_key")
    func deletedRecord() throws {
        let store = try sixSegments()
        var forge = Forge(image: store.device.bytes)
        let slot = 1, s = Forge.slotOffset(slot)
        let records = forge.records(slot: slot)
        let victim = records[4] // the last record: first/last mono change too
        let length = Int(forge.u32(victim))
        let markerBytes = Array(forge.image[forge.markerOffset(slot: slot)..<(forge.markerOffset(slot: slot) + Layout.commitMarkerSize)])
        forge.image.replaceSubrange(victim..<(victim + length + Layout.commitMarkerSize), with: markerBytes + Array(repeating: 0, count: length))
        let previousMono: UInt64 = forge.image.withUnsafeBytes { $0.le(records[3] + 16) }
        forge.setU32(4, at: s + 56)
        forge.setU32(UInt32(forge.payloadLength(slot: slot) - length), at: s + 60)
        forge.setU64(previousMono, at: s + 72)
        forge.fixHeaderCRC(slot: slot)
        let m = forge.markerOffset(slot: slot)
        forge.setU32(4, at: m + 24)
        forge.setU32(UInt32(forge.payloadLength(slot: slot)), at: m + 28)
        forge.fixBodyAndMarker(slot: slot)
        #expect(store.verify(forge.image).reasonsBySegment[2] == "seal_mismatch")
        // Patch the statement too and sign with a key the auditor does not trust.
        forge.setU32(4, at: m + 40 + 56)
        forge.setU64(previousMono, at: m + 40 + 48)
        forge.resealHash(slot: slot)
        try forge.resign(slot: slot, with: FileSigner(key: Self.otherKey, epoch: 1))
        #expect(store.verify(forge.image).reasonsBySegment[2] == "unknown_key")
    }

    @Test("a forged record with a valid CRC in place of a real one gives hash_mismatch")
    func insertedRecord() throws {
        let store = try sixSegments()
        var forge = Forge(image: store.device.bytes)
        let record = forge.records(slot: 4)[2]
        // Same length, different content, valid record CRC: {"n":22} becomes {"n":99}.
        let o = record + Layout.recordHeadSize + 6 + 5
        forge.image.replaceSubrange(o..<(o + 2), with: Array("99".utf8))
        forge.fixRecordCRC(at: record)
        forge.fixBodyAndMarker(slot: 4)
        #expect(store.verify(forge.image).reasonsBySegment == [1: "PASS", 2: "PASS", 3: "PASS", 4: "PASS", 5: "hash_mismatch", 6: "PASS"])
    }

    @Test("a deleted segment is a gap at its id; the segments around it pass")
    func deletedSegment() throws {
        let store = try sixSegments()
        var forge = Forge(image: store.device.bytes)
        forge.zeroSlot(2)
        let report = store.verify(forge.image)
        #expect(report.reasonsBySegment == [1: "PASS", 2: "PASS", 3: "gap", 4: "PASS", 5: "PASS", 6: "PASS"])
        #expect(!report.passed)
    }

    @Test("a segment from another device is foreign_segment; one re-signed by another key is unknown_key")
    func splicedSegment() throws {
        let store = try sixSegments()
        var other = try SignedStore(uuid: Array(repeating: 0xAB, count: 16), device: Array(repeating: 0xCD, count: 16))
        try other.session(segments: 6)
        var forge = Forge(image: store.device.bytes)
        let s = Forge.slotOffset(3)
        forge.image.replaceSubrange(s..<(s + segmentSize), with: other.device.bytes[s..<(s + segmentSize)])
        #expect(store.verify(forge.image).reasonsBySegment[4] == "foreign_segment")

        var resigned = Forge(image: store.device.bytes)
        try resigned.resign(slot: 3, with: FileSigner(key: Self.otherKey, epoch: 1))
        #expect(store.verify(resigned.image).reasonsBySegment == [1: "PASS", 2: "PASS", 3: "PASS", 4: "unknown_key", 5: "PASS", 6: "PASS"])
    }

    @Test("two swapped segments are both reordered")
    func swappedSegments() throws {
        let store = try sixSegments()
        var forge = Forge(image: store.device.bytes)
        let a = Forge.slotOffset(1), b = Forge.slotOffset(2)
        let first = Array(forge.image[a..<(a + segmentSize)])
        forge.image.replaceSubrange(a..<(a + segmentSize), with: forge.image[b..<(b + segmentSize)])
        forge.image.replaceSubrange(b..<(b + segmentSize), with: first)
        #expect(store.verify(forge.image).reasonsBySegment == [1: "PASS", 2: "reordered", 3: "reordered", 4: "PASS", 5: "PASS", 6: "PASS"])
    }

    @Test("an older image against a later anchor: rollback across sessions, truncated_tail within one")
    func replayAgainstAnchor() throws {
        var store = try SignedStore()
        try store.session(segments: 3)
        let firstSession = store.device.bytes
        try store.session(segments: 3)
        let sameSessionEarlier = store.snapshots[4]
        let anchor = try #require(store.seals.last)
        #expect(store.verify(anchor: anchor).passed)
        #expect(store.verify(firstSession, anchor: anchor).findingReasons == ["rollback"])
        #expect(store.verify(sameSessionEarlier, anchor: anchor).findingReasons == ["truncated_tail"])
        // Without the anchor the old image is a valid, shorter history (documented in FORMAT.md 8).
        #expect(store.verify(firstSession).passed)
    }

    @Test("a rewritten history from the anchor's point on is a fork")
    func forkedHistory() throws {
        var store = try SignedStore()
        try store.session(segments: 3)
        let branchPoint = store.device.bytes
        try store.session(segments: 3)
        let anchor = try #require(store.seals.last)
        var fork = store
        fork.device = MemoryBlockDevice(image: branchPoint)
        try fork.session(segments: 3, payloads: { Array("{\"forged\":\($0)}".utf8) })
        #expect(store.verify(fork.device.bytes, anchor: anchor).findingReasons == ["fork"])
    }

    @Test("a truncated tail: the metadata names segments that are gone")
    func truncatedTail() throws {
        let store = try sixSegments()
        var forge = Forge(image: store.device.bytes)
        forge.zeroSlot(4)
        forge.zeroSlot(5)
        let report = store.verify(forge.image)
        #expect(report.findingReasons.contains("truncated_tail"))
        #expect(report.reasonsBySegment[5] == "gap" && report.reasonsBySegment[6] == "gap")
    }

    @Test("payloads holding a fake segment header, marker and statement still verify")
    func fakeHeaderInPayload() throws {
        var store = try SignedStore()
        try store.session(segments: 4, payloads: { n in
            Array("{\"x\":\"EDGELOGS\\u0000EDGELOGC EDGESIG1 EDGEROT1 RECE \(n)\"}".utf8)
        })
        #expect(store.verify().passed)
    }

    @Test("a firmware hash not in the allowed list is fw_not_allowed")
    func wrongFirmware() throws {
        let store = try sixSegments()
        #expect(store.verify(firmware: [firmware]).passed)
        let report = store.verify(firmware: [Array(repeating: 0, count: 32)])
        #expect(Set(report.reasonsBySegment.values) == ["fw_not_allowed"])
    }

    @Test("a decreasing rollback_ctr, re-signed by the real key, is rollback")
    func decreasingRollbackCounter() throws {
        var store = try SignedStore()
        try store.session(segments: 2)
        try store.session(segments: 2)
        var forge = Forge(image: store.device.bytes)
        let m = forge.markerOffset(slot: 3)
        forge.setU64(1, at: m + 40 + 80)
        try forge.resign(slot: 3, with: store.signer)
        #expect(store.verify(forge.image).reasonsBySegment[4] == "rollback")
    }

    @Test("mutations of the signed head: wrong size, wrong hash, every bit flip")
    func signedHeadMutations() throws {
        var store = try SignedStore()
        try store.session(segments: 2, perSegment: 1)
        let seal = try #require(store.seals.last)
        let good = SignedHead(seal: seal).fileBytes
        #expect(store.verify(anchorBytes: good).passed)

        let text = SignedHead(seal: seal).json + "\n"
        let short = text.replacingOccurrences(of: "\"statement\":\"4544", with: "\"statement\":\"")
        #expect(store.verify(anchorBytes: Array(short.utf8)).findingReasons == ["anchor_malformed"])
        let wrongHash = text.replacingOccurrences(of: "\"hash_head\":\"", with: "\"hash_head\":\"00")
        #expect(store.verify(anchorBytes: Array(wrongHash.utf8)).findingReasons == ["anchor_malformed"])
        // The anchor file is exactly one head (FORMAT.md 8): re-encoded, doubled, truncated or
        // upper-cased heads are malformed, so both verifiers read every file the same way.
        let variants = [
            text + text, String(text.dropLast()), text.uppercased(), text.replacingOccurrences(of: ",", with: ", "),
            text.replacingOccurrences(of: "}", with: ",\"extra\":1}"), " " + text,
        ]
        for variant in variants {
            #expect(store.verify(anchorBytes: Array(variant.utf8)).findingReasons == ["anchor_malformed"], "\(variant.prefix(60))")
        }
        // A consistent head whose statement was edited: the signature no longer verifies.
        var statement = seal.statementBytes
        statement[152] ^= 1
        var edited = seal
        edited.statementBytes = statement
        edited.statement = try #require(statement.withUnsafeBytes { Statement.decode($0, at: 0) })
        #expect(store.verify(anchor: edited).findingReasons == ["anchor_bad_signature"])

        for bit in 0..<(good.count * 8) {
            var flipped = good
            flipped[bit / 8] ^= UInt8(1 << (bit % 8))
            let reasons = store.verify(anchorBytes: flipped).findingReasons
            // Every flip is caught, a change of hex case included (the file must be exact).
            #expect(reasons == ["anchor_malformed"] || reasons == ["anchor_bad_signature"], "bit \(bit): \(reasons)")
        }
    }

    @Test("key rotation is followed from the first key; a forged endorsement is bad_signature; the retired key may not sign")
    func rotation() throws {
        var store = try SignedStore(key: .ed25519(.init()))
        try store.session(segments: 2)
        let first = store.trusted
        let next = PrivateSigningKey.ed25519(.init())
        let nextSigner = FileSigner(key: next, epoch: 2)
        func rotate(endorsement tamper: Bool) throws -> [UInt8] {
            var copy = store
            copy.device = MemoryBlockDevice(image: store.device.bytes)
            let (writer, _) = try EvidenceStore.open(device: copy.device, identity: copy.identity, clock: CrashOracle.fixedClock)
            _ = try writer.commitEvidence(.keyRotation, rotationRecord(old: store.signer, next: next, tamper: tamper))
            try writer.close()
            copy.signer = nextSigner
            try copy.session(segments: 2)
            return copy.device.bytes
        }
        let rotated = try rotate(endorsement: false)
        let report = store.verify(rotated, trusted: [first])
        #expect(report.passed, "\(report.segments)")
        #expect(report.segments.map(\.keyEpoch) == [1, 1, 1, 2, 2])
        let forged = store.verify(try rotate(endorsement: true), trusted: [first])
        #expect(forged.reasonsBySegment == [1: "PASS", 2: "PASS", 3: "bad_signature", 4: "unknown_key", 5: "unknown_key"])

        // After the rotation the old key signing again is unknown_key, even though it is trusted.
        var stale = store
        stale.device = MemoryBlockDevice(image: rotated)
        try stale.session(segments: 1)
        #expect(store.verify(stale.device.bytes, trusted: [first]).reasonsBySegment[6] == "unknown_key")
    }

    @Test("a power cut is not tampering: the torn tail is a note before recovery and explained after it")
    func powerCut() throws {
        var store = try SignedStore()
        try store.session(segments: 3)
        let before = store.device.bytes
        try store.session(segments: 1)
        // The image as a cut leaves it: the next segment's first sector landed, the metadata did not.
        var cut = before
        let s = Forge.slotOffset(3)
        cut.replaceSubrange(s..<(s + 512), with: store.device.bytes[s..<(s + 512)])
        // Mark the chosen slot as open (a writer had it), as it is when the power goes.
        let analysis = try EvidenceStore.analyze(device: MemoryBlockDevice(image: cut))
        var forge = Forge(image: cut)
        forge.setU32(0, at: analysis.chosenSlot * 4096 + 116)
        forge.fixMetadataCRC(slot: analysis.chosenSlot)
        let unrecovered = store.verify(forge.image)
        #expect(unrecovered.passed, "\(unrecovered.segments) \(unrecovered.findings)")
        #expect(unrecovered.notes.contains { $0.note == "torn_tail_power_cut" && $0.segmentID == 4 })

        let device = MemoryBlockDevice(image: forge.image)
        _ = try EvidenceStore.recover(device: device, identity: store.identity, clock: CrashOracle.fixedClock)
        let recovered = store.verify(device.bytes)
        #expect(recovered.passed, "\(recovered.segments) \(recovered.findings)")
        #expect(recovered.notes.contains { $0.note == "power_cut_explained" })
    }
}
