// The same commands on a real kernel block device (a loop device over a file), at 512- and
// 4096-byte logical sectors: size and sector size come from BLKGETSIZE64 and BLKSSZGET.

import Foundation
import Testing

enum LoopDevice {
    /// Root, the loop driver and losetup, and a probe attach that works: otherwise the suite is
    /// reported as skipped (a machine without loop devices is not a failure of edgelog).
    static let available: Bool = {
        guard getuid() == 0, FileManager.default.fileExists(atPath: "/dev/loop-control"),
              FileManager.default.isExecutableFile(atPath: "/usr/sbin/losetup"),
              let scratch = try? Scratch(), let file = try? scratch.sparseFile("probe.img", size: 1 << 20),
              let device = try? attach(file, sectorSize: 512)
        else { return false }
        detach(device)
        return true
    }()

    /// Attaches `file` as a loop device with `sectorSize`; returns its path.
    static func attach(_ file: String, sectorSize: Int) throws -> String {
        let r = try runProcess("/usr/sbin/losetup", ["-f", "--show", "--sector-size", String(sectorSize), file])
        guard r.code == 0 else { throw LoopError(text: r.err) }
        return r.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func detach(_ device: String) { _ = try? runProcess("/usr/sbin/losetup", ["-d", device]) }

    struct LoopError: Error { let text: String }
}

@Suite("Real block devices", .serialized, .enabled(if: LoopDevice.available, "needs root and loop devices"))
struct BlockDeviceTests {
    @Test("format takes the kernel's size and sector size; records round-trip", arguments: [512, 4096])
    func loop(sectorSize: Int) throws {
        let s = try Scratch()
        let file = try s.sparseFile("disk.img", size: 4 << 20)
        let device = try LoopDevice.attach(file, sectorSize: sectorSize)
        defer { LoopDevice.detach(device) }

        let format = try edgelog(["format", "--device", device, "--segment-size", "16K", "--json"])
        #expect(format.code == 0, "\(format.err)")
        let geometry = try #require(try JSONSerialization.jsonObject(with: Data(format.out.utf8)) as? [String: Any])
        #expect(geometry["store_size"] as? Int == 4 << 20)
        #expect(geometry["sector_size"] as? Int == sectorSize)

        let input = (1...300).map { "{\"i\":\($0)}" }.joined(separator: "\n") + "\n"
        let ingest = try edgelog(["ingest", "--unsigned", "--device", device, "--source", "blk"], input: input)
        #expect(ingest.code == 0, "\(ingest.err)")
        #expect(try exportedData(device, source: "blk").map(\.seq) == Array(1...300))
        #expect(try edgelog(["inspect", "--device", device, "--verify"]).code == 0)
    }

    @Test("a 512-byte-sector store on a 4096-byte-sector device is refused for writing, readable")
    func sectorMismatch() throws {
        let s = try Scratch()
        let file = try s.sparseFile("disk.img", size: 2 << 20)
        var device = try LoopDevice.attach(file, sectorSize: 512)
        #expect(try edgelog(["format", "--device", device]).code == 0)
        try edgelog(["ingest", "--unsigned", "--device", device], input: "{\"a\":1}\n")
        LoopDevice.detach(device)
        device = try LoopDevice.attach(file, sectorSize: 4096)
        defer { LoopDevice.detach(device) }
        let r = try edgelog(["ingest", "--unsigned", "--device", device], input: "{\"a\":2}\n")
        #expect(r.code == 6)
        #expect(r.err.contains("formatted for 512-byte sectors"))
        #expect(try exportedData(device, source: "stdin").map(\.seq) == [1])
    }
}
