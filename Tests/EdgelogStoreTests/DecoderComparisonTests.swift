// The independent Python decoder (scripts/edgelog_decode.py, written from docs/FORMAT.md alone)
// must print exactly what the engine's export prints, on the images power cuts leave (before and
// after recovery), including adopted, torn and reclaimed cases.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

enum PackageRoot {
    static let url: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// Runs a command; returns its exit code and standard output.
func run(_ executable: String, _ arguments: [String]) throws -> (code: Int32, out: Data, err: Data) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, outData, errData)
}

func swiftExport(_ device: BlockDevice) -> (lines: [UInt8], damaged: Bool)? {
    guard let analysis = try? EvidenceStore.analyze(device: device) else { return nil }
    var out: [UInt8] = []
    let damage = StoreReader.forEachRecord(device: device, analysis: analysis) { info, record in
        ExportFormat.jsonl.append(info, record, to: &out)
    }
    return (out, !damage.isEmpty)
}

@Suite("Independent decoder agrees with export", .serialized)
struct DecoderComparisonTests {
    @Test("on crash images of every workload, before and after recovery")
    func crashImages() throws {
        let decoder = PackageRoot.url.appendingPathComponent("scripts/edgelog_decode.py").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-decoder-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var compared = 0
        var mismatches: [String] = []
        for (index, w) in CrashHarness.workloads.enumerated() {
            let run = try CrashHarness.record(w, seed: UInt64(index) + 1)
            let images = CrashImageBuilder(device: run.device)
            // Every seventh cut, in the variants that tears or scrambles the most.
            for cut in stride(from: 0, to: images.cuts.upperBound, by: 7) {
                for (v, variant) in [CrashVariant.torn512, .garbage].enumerated() {
                    let point = CrashPoint(cut: cut, variant: variant, seed: CrashHarness.seed(index, cut, v + 3))
                    let raw = images.image(at: point, sectorSize: w.sectorSize)
                    let device = MemoryBlockDevice(image: raw, sectorSize: w.sectorSize)
                    _ = try EvidenceStore.recover(device: device, policy: w.policy, clock: CrashOracle.fixedClock)
                    for (label, image) in [("raw", raw), ("recovered", device.bytes)] {
                        let path = dir.appendingPathComponent("store.img").path
                        #expect(FileManager.default.createFile(atPath: path, contents: Data(image)), "could not write the test file")
                        let python = try DecoderComparisonTestsSupport.python(decoder, path)
                        let swift = swiftExport(MemoryBlockDevice(image: image, sectorSize: w.sectorSize))
                        compared += 1
                        let expectedCode: Int32 = swift == nil ? 2 : (swift!.damaged ? 3 : 0)
                        if python.code != expectedCode || (swift != nil && Array(python.out) != swift!.lines) {
                            mismatches.append("\(w.name) \(point) \(label): python exit \(python.code), swift \(expectedCode); \(String(decoding: python.err, as: UTF8.self).prefix(200))")
                        }
                    }
                }
            }
        }
        print("decoder comparisons: \(compared) images, \(mismatches.count) mismatches")
        #expect(compared > 150)
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5).joined(separator: " | "))")
    }
}

enum DecoderComparisonTestsSupport {
    static func python(_ decoder: String, _ path: String) throws -> (code: Int32, out: Data, err: Data) {
        try run("/usr/bin/env", ["python3", decoder, path])
    }
}
