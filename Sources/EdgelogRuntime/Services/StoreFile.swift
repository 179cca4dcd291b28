// The file that stands in for a partition: created and formatted on the first run of a board whose
// store is a path that does not exist yet. A block device, or any existing file, is never formatted
// by `run`: a store that fails to open is reported and left as it is.

import EdgelogLinux
import EdgelogStore

public enum StoreFile {
    public static func createIfMissing(path: String, size: UInt64, segmentSize: UInt64, say: (String) -> Void) throws(JobError) {
        guard !LocalFile.exists(path) else { return }
        let geometry = PackedGeometry(storeSize: size, sectorSize: 512, segmentSize: Int(clamping: segmentSize))
        if let problem = PackedGeometry.problem(storeSize: size, sectorSize: 512, segmentSize: geometry.segmentSize) { throw .store(.invalidArgument(problem)) }
        // A partition that is not there (a mistyped /dev/mmcblk0p3, a card not inserted) is a
        // missing device, not a file to create: in /dev a file would live in RAM and vanish.
        if path.hasPrefix("/dev/") {
            throw .hardware("store device \(path) does not exist: check the board's store.path (run creates files, never devices)")
        }
        do {
            try LocalFile.makeDirectory(LocalFile.parent(of: path))
        } catch {
            throw .file(error)
        }
        do {
            try FileBlockDevice.createFile(path: path, size: size)
            // A file this call created and could not format is removed: left, it would read as
            // "not a store" on every later run, even after the board file is fixed.
            var formatted = false
            defer { if !formatted { LocalFile.remove(path) } }
            let target = try FileBlockDevice(path: path)
            try PackedEvidenceStore.format(device: target, segmentSize: geometry.segmentSize, storeUUID: SystemClock.randomBytes(16),
                                           deviceID: DeviceIdentity.machineID(), wallNs: SystemClock.now().wallNs, force: false)
            formatted = true
            say("created store \(path): format \(PackedMetadata.formatVersion), \(geometry.ringSlots) segments of \(geometry.segmentSize) bytes")
        } catch let error as DeviceError {
            throw .device(error)
        } catch let error as StoreError {
            throw .store(error)
        } catch {
            throw .internal("\(error)")
        }
    }
}
