import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogStore

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

    enum Format: String, ExpressibleByArgument { case jsonl, csv }

    @Option(help: "Store device or file.")
    var device: String

    @Option(help: "jsonl (one JSON object per line) or csv.")
    var format: Format = .jsonl

    @Option(help: "Only records of commits after this commit id.")
    var sinceCommit: UInt64 = 0

    func run() throws {
        let (target, analysis) = try openReadOnly(device)
        let out = FDOutput(fd: 1)
        if format == .csv { out.write("segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,boot_ns,payload\n") }
        let damage = StoreReader.forEachRecord(device: target, analysis: analysis, sinceCommit: sinceCommit) { info, record in
            let type = RecordType(rawValue: record.rawType).map { format == .csv ? $0.name : "\"\($0.name)\"" } ?? String(record.rawType)
            switch format {
            case .jsonl:
                out.write("{\"segment_id\":\(info.segmentID),\"commit_id\":\(info.commitID),\"type\":\(type),\"source\":\"")
                out.write(record.source)
                out.write("\",\"seq\":\(record.seq),\"mono_ctr\":\(record.mono),\"wall_ns\":\(record.time.wallNs),\"boot_ns\":\(record.time.bootNs),\"payload\":")
                out.write(record.payload)
                out.write("}\n")
            case .csv:
                out.write("\(info.segmentID),\(info.commitID),\(type),")
                out.write(record.source)
                out.write(",\(record.seq),\(record.mono),\(record.time.wallNs),\(record.time.bootNs),\"")
                var doubled: [UInt8] = []
                doubled.reserveCapacity(record.payload.count + 8)
                for byte in record.payload {
                    doubled.append(byte)
                    if byte == 0x22 { doubled.append(0x22) }
                }
                doubled.withUnsafeBytes { out.write($0) }
                out.write("\"\n")
            }
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
