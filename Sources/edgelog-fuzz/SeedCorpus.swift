// Seed inputs for the fuzz targets, taken from the crash workloads: store images after cuts,
// their metadata slots and segments, and ingest lines.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
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
        FuzzOutput.line("seed corpus: \(lines.count) lines, \(written) images and metadata slots, 6 segments under \(root)")
    }

    private static func memoryImage(_ device: FaultBlockDevice) -> [UInt8] { device.current }
}
