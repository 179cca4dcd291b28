// Seed inputs for the fuzz targets, taken from the crash workloads: store images after cuts,
// their metadata slots and segments, and ingest lines.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogRuntime
import EdgelogTestKit
#if canImport(Glibc)
import Glibc
#endif

enum FileBytes {
    static func read(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    static func write(_ path: String, _ bytes: [UInt8]) throws(SeedError) {
        guard let file = fopen(path, "wb") else { throw SeedError(text: "cannot create \(path)") }
        defer { fclose(file) }
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        guard n == bytes.count else { throw SeedError(text: "short write to \(path)") }
    }
}

struct SeedError: Error, CustomStringConvertible { let text: String; var description: String { text } }

enum SeedCorpus {
    static func write(to root: String) throws {
        mkdir(root, 0o755)
        for target in FuzzTarget.allCases { mkdir(root + "/" + target.rawValue, 0o755) }
        let lines = ["{}", "{\"t\":21.5,\"u\":\"C\"}", "{\"a\":[1,2,{\"b\":null}],\"s\":\"\\u00e9\\n\"}", "[1]", "{\"a\":", "{\"x\":1e400}"]
        for (i, line) in lines.enumerated() { try FileBytes.write("\(root)/json/seed\(i)", Array(line.utf8)) }

        let memory = MemoryBlockDevice(size: 8192 + 6 * 4096, sectorSize: 512)
        try EvidenceStore.format(device: memory, sectorSize: 512, segmentSize: 4096, storeUUID: Array(1...16), wallNs: 0, force: false)
        let fault = FaultBlockDevice(image: memory.bytes, sectorSize: 512)
        // Signed, so the verify and head targets start from real seals and signatures.
        let identity = SealIdentity(deviceID: Array(1...16), fwVerHash: Array(repeating: 7, count: 32),
                                    signer: FileSigner(key: FuzzTarget.seedKey, epoch: 1))
        let (store, _) = try EvidenceStore.open(device: fault, policy: .overwriteOldest, identity: identity, clock: CrashOracle.fixedClock)
        let driver = StoreDriver(store: store, clock: ManualClock())
        var heads: [String] = []
        driver.afterCommit = { receipt in if let seal = receipt.seal { heads.append(SignedHead(seal: seal).json) } }
        for n in 0..<120 {
            try driver.append(source: n % 2 == 0 ? "s1" : "s2", payload: Array("{\"n\":\(n),\"v\":\"\(String(repeating: "x", count: n % 90))\"}".utf8))
            if n % 7 == 6 { try driver.commit() }
        }
        try driver.commit()
        let images = CrashImageBuilder(device: fault)
        var written = 0
        for cut in stride(from: 0, to: images.cuts.upperBound, by: 9) {
            for variant in [CrashVariant.torn512, .garbage, .pendingKept] {
                let image = images.image(at: CrashPoint(cut: cut, variant: variant, seed: UInt64(cut)), sectorSize: 512)
                try FileBytes.write("\(root)/image/cut\(cut)-\(variant.rawValue)", image)
                try FileBytes.write("\(root)/verify/cut\(cut)-\(variant.rawValue)", image)
                try FileBytes.write("\(root)/metadata/cut\(cut)-\(variant.rawValue)", Array(image[0..<4096]))
                written += 1
            }
        }
        for slot in 0..<6 {
            let start = 8192 + slot * 4096
            try FileBytes.write("\(root)/segment/slot\(slot)", [UInt8](repeating: 0, count: 8) + Array(memoryImage(fault)[start..<(start + 4096)]))
        }
        for (i, head) in heads.enumerated() where i % 3 == 0 { try FileBytes.write("\(root)/head/head\(i)", Array((head + "\n").utf8)) }
        // Field edits: each seed sets a few metadata fields of both slots to chosen kinds of value.
        var rng = SplitMix64(seed: 9)
        for n in 0..<24 {
            var seed: [UInt8] = []
            for _ in 0..<(1 + n % 4) {
                seed.append(UInt8(truncatingIfNeeded: rng.next()))
                seed.append(UInt8(n % 9))
                for _ in 0..<8 { seed.append(UInt8(truncatingIfNeeded: rng.next())) }
            }
            try FileBytes.write("\(root)/fields/edit\(n)", seed)
        }
        // Device answers: a BME280's registers (the simulated board's calibration), an SHT3x reply,
        // MAX31855 frames, a Modbus reply, an NMEA stream and balance lines, each after its selector.
        var bme = [UInt8](repeating: 0, count: 256)
        bme[0xD0] = 0x60
        for (i, b) in [0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC, 0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B, 0x27, 0x0B, 0x8C, 0x00, 0xF9, 0xFF, 0x8C, 0x3C,
                       0xF8, 0xC6, 0x70, 0x17, 0x00, 0x4B].enumerated() { bme[0x88 + i] = UInt8(b) }
        for (i, b) in [0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E].enumerated() { bme[0xE1 + i] = UInt8(b) }
        for (i, b) in [0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x71, 0x61].enumerated() { bme[0xF7 + i] = UInt8(b) }
        let devices: [[UInt8]] = [
            [0] + bme,
            [1, 0x66, 0x66, 0x93, 0x80, 0x00, 0xA2],
            [2] + bme,
            [3, 0, 0x02, 0x00, 0x00, 0x01, 0xFF],
            [4, 0x01, 0x90, 0x18, 0x10, 0x00, 0x00, 0x00, 0x01],
            [5, 13, 0x01, 0x03, 0x08, 0, 1, 0, 2, 0, 3, 0, 4, 0x00, 0x00],
            [6] + Array("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n".utf8),
            [7] + Array("ST,GS,   12.345 g,x,1\r\nUS,GS,-0.001 kg,y,2\n".utf8),
        ]
        for (i, seed) in devices.enumerated() { try FileBytes.write("\(root)/devices/seed\(i)", seed) }
        // Board files: the shipped ones, beside this source file's package.
        var repo = #filePath
        for _ in 0..<3 { repo = String(repo[..<(repo.lastIndex(of: "/") ?? repo.startIndex)]) }
        for name in ["sim", "qemu", "qemu-power", "qemu-cut", "raspberry-pi-4", "beaglebone-black"] {
            if let text = FileBytes.read(repo + "/board/\(name).yaml") { try FileBytes.write("\(root)/board/\(name)", text) }
        }
        // Status answers: a running job's snapshot with every section filled.
        let statusBoard = StatusBoard(board: "seed", pid: 42, startedWallNs: 1_800_000_000_000_000_000)
        statusBoard.set(.powerFailHold, active: true, detail: "gpio edgelog-sim/PWR_FAIL")
        statusBoard.set(.sensorFault, active: true, detail: "env.bme280 (3 in a row)")
        statusBoard.update {
            $0.phase = .running
            $0.power = .holding
            $0.boEvent = 2
            $0.unexpRst = 1
            $0.holdUp = HoldUpStatus(verdict: "shrunk", holdUpMs: 100, worstWindowUs: 61_000, marginPct: 50, fillLimitBytes: 9000)
            $0.lastSafeCommit = SafeCommitWindow(trigger: "gpio", input: "gpiochip0/GPIO17", edgeToFreezeUs: 40, edgeToCleanUs: 9000,
                                                 committedRecords: 12, commits: 2, withinBudget: true)
            $0.store = StoreFacts(path: "/dev/mmcblk0p3", headSegmentID: 77, recordsTotal: 9000, clean: true)
            $0.timeSynced = false
        }
        try FileBytes.write("\(root)/status/seed0", Array((StatusJSON.encode(statusBoard.snapshot()) + "\n").utf8))
        // Format 6 frames: the usual load, stored and deflated against the previous frame.
        var workload = SensorWorkload(sources: 4, seed: 3)
        var frameContext = RecordBlockContext()
        var previousBlock: [UInt8] = []
        var frames: [UInt8] = []
        for i in 0..<4 {
            let records = workload.nextSecond()
            var block: [UInt8] = []
            for r in records { try RecordBlock.append(r, to: &block, context: &frameContext) }
            let packed = i % 2 == 1 ? Deflate.compress(block, dictionary: previousBlock) : nil
            let stored = packed ?? block
            frames.append(packed == nil ? 0 : 1)
            for v in [UInt16(records.count), UInt16(block.count), UInt16(stored.count)] { withUnsafeBytes(of: v.littleEndian) { frames.append(contentsOf: $0) } }
            frames.append(contentsOf: stored)
            previousBlock = block
        }
        try FileBytes.write("\(root)/frames/seed0", frames)
        // A format 6 slot: a header and frames of the usual load, one with a state list.
        var header = PackedSegmentHeader()
        header.storeUUID = Array(1...16)
        header.segmentID = 3
        header.firstFrameID = 10
        header.ringSlots = 8
        header.state.tables = PackedTables(sources: [(name: "env.bme280-1", lastSeq: 4)])
        var packedWriter = PackedSegmentWriter(header: header, sectorSize: 512, segmentSize: 8192)
        var slot = [UInt8](repeating: 0, count: 8192)
        for i in 0..<4 {
            let (offset, bytes) = try packedWriter.append(workload.nextSecond(), changes: i == 2 ? [(.uplinkCursor, 2)] : [])
            slot.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        }
        try FileBytes.write("\(root)/packed/seed0", Array(slot[0..<packedWriter.nextOffset]))
        // A format 6 store: formatted, three commits, closed; and one left open after two more.
        let packedStore = MemoryBlockDevice(size: PackedGeometry.ringOffset + 4 * 8192, sectorSize: 512)
        try PackedLog.format(device: packedStore, segmentSize: 8192, storeUUID: Array(1...16), deviceID: Array(repeating: 1, count: 16), wallNs: 0)
        let packedLog = try PackedLog(device: packedStore, identity: PackedLog.PackedIdentity(deviceID: Array(repeating: 1, count: 16)), clock: { 0 })
        packedLog.metadataEvery = 2
        for _ in 0..<3 { try packedLog.append(workload.nextSecond()) }
        try packedLog.close()
        try FileBytes.write("\(root)/packedstore/seed0", packedStore.bytes)
        let reopened = try PackedLog(device: packedStore, identity: PackedLog.PackedIdentity(deviceID: Array(repeating: 1, count: 16)), clock: { 0 })
        for _ in 0..<2 { try reopened.append(workload.nextSecond()) }
        try FileBytes.write("\(root)/packedstore/seed1", packedStore.bytes)
        // Signed by the seed key through the evidence store, with its head as a version 3 anchor.
        let signedStore = MemoryBlockDevice(size: PackedGeometry.ringOffset + 4 * 8192, sectorSize: 512)
        try PackedEvidenceStore.format(device: signedStore, segmentSize: 8192, storeUUID: Array(1...16), wallNs: 0, force: false)
        let evidence = try PackedEvidenceStore.open(device: signedStore, identity: SealIdentity(deviceID: Array(1...16), fwVerHash: Array(repeating: 2, count: 32),
                                                                                             signer: FileSigner(key: FuzzTarget.seedKey, epoch: 1)),
                                                    clock: { CaptureTime(wallNs: 1, bootNs: 1) })
        for _ in 0..<3 {
            let b = evidence.makeBuilder()
            var mono = evidence.metadata.state.monoHWM
            for r in workload.nextSecond() {
                mono += 1
                b.append(type: .data, source: r.source, seq: (evidence.metadata.state.tables.lastSeq(r.source) ?? 0) + UInt64(b.recordCount) + 1,
                         mono: mono, time: r.time, payload: r.payload, evidence: false)
            }
            b.evidenceMono = mono + 1
            b.evidenceMonoLimit = mono + 8
            _ = try evidence.commit(b)
        }
        try evidence.close()
        try FileBytes.write("\(root)/packedstore/seed2", signedStore.bytes)
        if let head = try FrameHead.of(device: signedStore) { try FileBytes.write("\(root)/head/seed-v3", head.fileBytes) }
        FuzzOutput.line("seed corpus: \(lines.count) lines, \(written) images and metadata slots, 6 segments, \(devices.count) device answers under \(root)")
    }

    private static func memoryImage(_ device: FaultBlockDevice) -> [UInt8] { device.current }
}
