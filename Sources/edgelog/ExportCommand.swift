import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogStore

extension ExportFormat: ExpressibleByArgument {}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Print the committed records in order (docs/FORMAT.md section 7). Never writes.",
        discussion: """
            Evidence records (gap, incomplete, drop, recovery) are included: they explain every loss. \
            A committed segment that fails validation, its hash or its hash chain is reported on \
            stderr with its place, the others are still printed, and the exit code is 3. Export \
            does not check signatures (it has no keys): edgelog verify does.

            Example: edgelog export --device var/store.img --format csv > records.csv
            """
    )

    @Option(help: "Store device or file.")
    var device: String

    @Option(help: "jsonl (one JSON object per line) or csv.")
    var format: ExportFormat = .jsonl

    @Option(help: "Only records of commits after this commit id.")
    var sinceCommit: UInt64 = 0

    @Option(help: "raw: wall_ns as captured; corrected: also wall_corrected_ns, each boot's steps mapped onto its last good clock (docs/FORMAT.md section 7).")
    var wall: WallMode = .raw

    enum WallMode: String, ExpressibleByArgument { case raw, corrected }

    func run() throws {
        if let (target, history) = try openPackedReadOnly(device) {
            let out = FDOutput(fd: 1)
            let damage = PackedExport.run(device: target, history: history, format: format, sinceFrame: sinceCommit,
                                          correctedWall: wall == .corrected) { out.write($0) }
            out.flush()
            Exit.say("note: frame CRCs and the chain between segments checked, signatures not checked: edgelog verify with the "
                + "trusted keys says who wrote these records")
            for d in damage { Exit.say("damaged: \(d)") }
            if !damage.isEmpty { throw ExitCode(Exit.damaged) }
            return
        }
        let (target, analysis) = try openReadOnly(device)
        let out = FDOutput(fd: 1)
        // The correction needs every record of a boot before it prints the first: two passes.
        var correction: WallCorrection?
        if wall == .corrected {
            var c = WallCorrection()
            StoreReader.forEachRecord(device: target, analysis: analysis) { _, record in c.note(record) }
            correction = c
        }
        if format == .csv { out.write(correction == nil ? ExportFormat.csvHeader : ExportFormat.csvHeaderCorrected) }
        var line: [UInt8] = []
        let damage = StoreReader.forEachRecord(device: target, analysis: analysis, sinceCommit: sinceCommit) { info, record in
            line.removeAll(keepingCapacity: true)
            format.append(info, record, correctedWall: correction?.corrected(record), to: &line)
            line.withUnsafeBytes { out.write($0) }
        }
        out.flush()
        // What export checked, so that its output is not taken for more than it is.
        Exit.say("note: hash chain checked, signatures not checked: edgelog verify with the trusted keys says who wrote these records")
        for d in damage { Exit.say("damaged: \(d)") }
        if !damage.isEmpty { throw ExitCode(Exit.damaged) }
    }
}

/// Opens a format 6 store without writing to it and reads its history (A.9); nil when the device
/// holds no format 6 metadata slot (a store of format 5, or one that is no store, is read or
/// refused by `openReadOnly`).
func openPackedReadOnly(_ path: String) throws -> (FileBlockDevice, PackedHistory)? {
    let target: FileBlockDevice
    do { target = try FileBlockDevice(path: path, readOnly: true) } catch { throw Exit.fail(error) }
    do {
        return (target, try PackedHistory.analyze(device: target))
    } catch .notAStore {
        return nil
    } catch .otherFormat(let v) where v < PackedMetadata.formatVersion {
        return nil
    } catch {
        throw Exit.fail(PackedEvidenceStore.storeError(error, device: target))
    }
}

/// Opens a store without writing to it and runs recovery's analysis.
func openReadOnly(_ path: String) throws -> (FileBlockDevice, StoreAnalysis) {
    let target: FileBlockDevice
    do { target = try FileBlockDevice(path: path, readOnly: true) } catch { throw Exit.fail(error) }
    do {
        return (target, try EvidenceStore.analyze(device: target))
    } catch {
        throw Exit.fail(error)
    }
}
