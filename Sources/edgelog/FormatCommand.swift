import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogRuntime
import EdgelogSeal
import EdgelogStore
import Glibc

struct FormatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "format",
        abstract: "Create an empty store on a block device or a file.",
        discussion: """
            A plain file that does not exist is created at --size. A device or file that already holds \
            a store is refused (exit 7) unless --force is given: formatting erases the evidence.

            The store is format 6 (docs/FORMAT.md appendix A): commits packed end to end in \
            segments, each commit sealed. Stores of format 5 are still read by export, inspect, \
            head and verify, but run, ingest and keys rotate refuse them (exit 2).

            Example: edgelog format --device var/store.img --size 64M
            """
    )

    @Option(help: "Block device or file to format.")
    var device: String

    @Option(help: "Size of a new file (bytes, or with K, M, G).")
    var size: ByteSize?

    @Option(help: "Sector size the store assumes: 512 or 4096 (default: the device's).")
    var sectorSize: Int?

    @Option(help: "Bytes per segment: a multiple of 4096 from 8K to 16M, and the store holds 4 at least. Commits are packed into it end to end (docs/DESIGN.md 13).")
    var segmentSize = ByteSize(bytes: 32 << 10)

    @Option(help: "The gateway's 128-bit id in hex, repeated in every seal (default: /etc/machine-id).")
    var deviceID: String?

    @Flag(help: "Erase an existing store.")
    var force = false

    @Flag(help: "Print the new store's geometry as JSON.")
    var json = false

    func run() throws {
        // An existing file or device is never written here: format itself refuses a store without
        // --force. Only a file that does not exist (or, with --force, has another size) is created.
        let existing = try? FileBlockDevice(path: device, readOnly: true, direct: false)
        if let size {
            if let existing, existing.byteCount != size.bytes {
                guard force, !existing.isBlockDevice else {
                    Exit.say("error: \(device) exists with \(existing.byteCount) bytes; --size \(size.bytes) would change it"
                        + (existing.isBlockDevice ? " (a block device keeps its size)" : " (add --force)"))
                    throw ExitCode(existing.isBlockDevice ? Exit.usage : Exit.alreadyFormatted)
                }
            }
            if existing == nil || existing?.byteCount != size.bytes {
                let showProgress = size.bytes >= 256 << 20 && isatty(2) != 0
                do {
                    try FileBlockDevice.createFile(path: device, size: size.bytes) { done, total in
                        if showProgress && (done % (64 << 20) == 0 || done == total) {
                            FDOutput.write(2, "\rwriting \(device): \(done >> 20) of \(total >> 20) MiB")
                            if done == total { FDOutput.write(2, "\n") }
                        }
                    }
                } catch {
                    throw Exit.fail(error)
                }
            }
        }
        let target: FileBlockDevice
        do { target = try FileBlockDevice(path: device) } catch {
            if error.code == 2 { Exit.say("hint: give --size to create a file store") }
            throw Exit.fail(error)
        }
        var id = DeviceIdentity.machineID()
        if let deviceID {
            guard let parsed = Hex.decode(deviceID), parsed.count == 16 else {
                Exit.say("error: --device-id must be 32 hex digits")
                throw ExitCode(Exit.usage)
            }
            id = parsed
        }
        let uuid = SystemClock.randomBytes(16)
        do {
            try PackedEvidenceStore.format(device: target, sectorSize: sectorSize, segmentSize: Int(clamping: segmentSize.bytes), storeUUID: uuid,
                                           deviceID: id, wallNs: SystemClock.now().wallNs, force: force)
        } catch {
            throw Exit.fail(error)
        }
        let g = PackedGeometry(storeSize: target.byteCount, sectorSize: sectorSize ?? max(target.sectorSize, 512), segmentSize: Int(clamping: segmentSize.bytes))
        if json {
            print("{\"device\":\"\(jsonEscaped(device))\",\"store_size\":\(g.storeSize),\"sector_size\":\(g.sectorSize),\"segment_size\":\(g.segmentSize),\"ring_slots\":\(g.ringSlots),\"store_uuid\":\"\(hex(uuid))\",\"device_id\":\"\(hex(id ?? uuid))\",\"format_version\":\(PackedMetadata.formatVersion)}")
        } else {
            print("formatted \(device): format \(PackedMetadata.formatVersion), \(g.ringSlots) segments of \(g.segmentSize) bytes, \(g.sectorSize)-byte sectors, store \(hex(uuid))")
        }
    }
}
