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
            A committed segment that fails validation is reported on stderr with its place, the \
            others are still printed, and the exit code is 3.

            Example: edgelog export --device var/store.img --format csv > records.csv
            """
    )

    @Option(help: "Store device or file.")
    var device: String

    @Option(help: "jsonl (one JSON object per line) or csv.")
    var format: ExportFormat = .jsonl

    @Option(help: "Only records of commits after this commit id.")
    var sinceCommit: UInt64 = 0

    func run() throws {
        let (target, analysis) = try openReadOnly(device)
        let out = FDOutput(fd: 1)
        if format == .csv { out.write(ExportFormat.csvHeader) }
        var line: [UInt8] = []
        let damage = StoreReader.forEachRecord(device: target, analysis: analysis, sinceCommit: sinceCommit) { info, record in
            line.removeAll(keepingCapacity: true)
            format.append(info, record, to: &line)
            line.withUnsafeBytes { out.write($0) }
        }
        out.flush()
        for d in damage { Exit.say("damaged: \(d)") }
        if !damage.isEmpty { throw ExitCode(Exit.damaged) }
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
