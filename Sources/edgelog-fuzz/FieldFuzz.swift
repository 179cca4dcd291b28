// The `fields` fuzz target: a genuine signed store whose metadata fields are set to values a byte
// fuzzer rarely finds (0, the maximum, 2^62, 2^63, 2^40, small numbers) with the slot's CRC made
// good again, as someone with the card would. Every read command's code path (analysis, export in
// both formats, the head, inspect's seal check, the verifier with an anchor) and the writer (open,
// commit, close) must return or throw a typed error: a trap, a hang or a write by a reader is a bug.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit

enum FieldFuzz {
    /// (offset, size) of every number of a metadata slot (FORMAT.md section 2) and of the first
    /// entries of both tables.
    static let fields: [(offset: Int, size: Int)] = {
        var list: [(Int, Int)] = [
            (40, 8), (48, 8), (56, 4), (60, 4), (64, 8), (72, 4), (80, 8), (88, 8), (96, 4), (100, 4), (104, 8), (112, 4),
            (116, 4), (120, 4), (124, 4), (128, 4), (132, 4), (136, 8), (144, 8), (152, 8), (160, 8), (168, 8), (176, 4),
            (180, 4), (184, 8), (224, 4), (2832, 8), (2888, 4), (2892, 1), (2893, 1), (2912, 4), (2916, 4), (2920, 8),
            (2928, 8), (2936, 8), (2944, 8), (2952, 1), (2956, 8),
        ]
        for i in 0..<4 { list += [(256 + 16 * i, 4), (260 + 16 * i, 2), (264 + 16 * i, 8)] }
        for i in 0..<4 { list += [(1280 + 48 * i, 1), (1281 + 48 * i, 1), (1320 + 48 * i, 8)] }
        return list
    }()

    static let identity = SealIdentity(deviceID: Array(1...16), fwVerHash: Array(repeating: 7, count: 32),
                                       signer: FileSigner(key: FuzzTarget.seedKey, epoch: 1))

    /// A closed, signed store whose ring of 8 has wrapped, and its signed head.
    static let base: (image: [UInt8], head: [UInt8]) = {
        let memory = MemoryBlockDevice(size: 8192 + 8 * 4096, sectorSize: 512)
        var head: [UInt8] = []
        do {
            try EvidenceStore.format(device: memory, sectorSize: 512, segmentSize: 4096, storeUUID: Array(1...16), wallNs: 0, force: false)
            let (store, _) = try EvidenceStore.open(device: memory, policy: .overwriteOldest, identity: identity, clock: CrashOracle.fixedClock)
            let driver = StoreDriver(store: store, clock: ManualClock())
            driver.afterCommit = { receipt in if let seal = receipt.seal { head = SignedHead(seal: seal).fileBytes } }
            for n in 0..<60 {
                _ = try driver.append(source: n % 3 == 0 ? "s1" : "s2", payload: Array("{\"n\":\(n)}".utf8))
                if n % 5 == 4 { _ = try driver.commit() }
            }
            try store.close()
        } catch {
            FuzzReport.fail("cannot build the fields target's store: \(error)")
        }
        return (memory.bytes, head)
    }()

    /// Input: groups of 10 bytes, each (field and slot, value kind, 8 value bytes).
    static func run(_ data: UnsafeRawBufferPointer) {
        var image = base.image
        var touched = Set<Int>()
        var i = 0
        while i + 10 <= data.count && touched.count < 64 {
            let pick = Int(data[i])
            let field = fields[(pick & 0x7F) % fields.count]
            let slot = pick >> 7
            var raw: UInt64 = 0
            for k in 0..<8 { raw |= UInt64(data[i + 2 + k]) << (8 * UInt64(k)) }
            let value: UInt64
            switch data[i + 1] % 9 {
            case 0: value = raw
            case 1: value = 0
            case 2: value = .max
            case 3: value = .max - 1
            case 4: value = 1 << 62
            case 5: value = 1 << 63
            case 6: value = 1 << 40
            case 7: value = raw % 64
            default: value = raw % 3
            }
            let at = slot * Layout.metadataSlotSize + field.offset
            for k in 0..<field.size { image[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
            touched.insert(slot)
            i += 10
        }
        // The slots' CRCs made good again: these are edits, not damage.
        for slot in touched {
            let base = slot * Layout.metadataSlotSize
            let crc = image.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[base..<(base + 4092)])) }
            for k in 0..<4 { image[base + 4092 + k] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(k))) }
        }
        readers(image)
        writer(image)
    }

    /// Every read-only path: none may write.
    static func readers(_ image: [UInt8]) {
        let device = MemoryBlockDevice(image: image, sectorSize: 512)
        if let analysis = try? EvidenceStore.analyze(device: device) {
            var out: [UInt8] = []
            StoreReader.forEachRecord(device: device, analysis: analysis) { info, record in
                ExportFormat.jsonl.append(info, record, to: &out)
                ExportFormat.csv.append(info, record, to: &out)
            }
            if let seal = analysis.headSeal {
                for m in analysis.state.mismatches(against: seal.statement, tailGivenUp: analysis.tailLost.count) { _ = m.description }
            }
            _ = analysis.state.segmentCount
            _ = try? StoreHead.seal(device: device)
        }
        let report = Verifier.verify(device: device, options: VerifyOptions(trusted: [FuzzTarget.seedKey.trusted], anchor: base.head))
        _ = report.reasons
        if device.writes != 0 { FuzzReport.fail("a reader wrote to the device") }
    }

    /// The writer on the edited store: open (recovery, the seal check), one commit, close.
    static func writer(_ image: [UInt8]) {
        let device = MemoryBlockDevice(image: image, sectorSize: 512)
        guard let (store, _) = try? EvidenceStore.open(device: device, policy: .overwriteOldest, identity: identity,
                                                       clock: CrashOracle.fixedClock) else { return }
        let driver = StoreDriver(store: store, clock: ManualClock())
        _ = try? driver.append(source: "s1", payload: Array("{\"after\":1}".utf8))
        _ = try? driver.commit()
        try? store.close()
    }
}
