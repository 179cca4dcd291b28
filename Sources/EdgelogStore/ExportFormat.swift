// The export line formats (docs/FORMAT.md section 7), shared by `edgelog export` and the tests
// that compare it with the independent Python decoder.

import EdgelogCore

public enum ExportFormat: String, Sendable, CaseIterable {
    case jsonl, csv

    public static let csvHeader = "segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,boot_ns," + timeColumns
    public static let csvHeaderCorrected = "segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,wall_corrected_ns,boot_ns," + timeColumns
    private static let timeColumns = "boot_seq,time_flags,maxerror_us,esterror_us,last_sync_ns,payload\n"

    /// The record's time quality as export prints it: not sampled and never synced are null.
    private static func quality(_ r: RecordView, null: String) -> (maxError: String, estError: String, lastSync: String) {
        let t = r.time
        return (t.maxErrorUs == CaptureTime.notSampled ? null : String(t.maxErrorUs),
                t.estErrorUs == CaptureTime.notSampled ? null : String(t.estErrorUs),
                t.lastSyncNs == 0 ? null : String(t.lastSyncNs))
    }

    /// Appends one record's line to `out`; `correctedWall` adds wall_corrected_ns after wall_ns.
    public func append(_ info: SegmentInfo, _ record: RecordView, correctedWall: Int64? = nil, to out: inout [UInt8]) {
        let corrected = correctedWall.map { "\"wall_corrected_ns\":\($0)," } ?? ""
        let correctedColumn = correctedWall.map { "\($0)," } ?? ""
        let known = RecordType(rawValue: record.rawType)
        switch self {
        case .jsonl:
            let type = known.map { "\"\($0.name)\"" } ?? String(record.rawType)
            out.append(contentsOf: "{\"segment_id\":\(info.segmentID),\"commit_id\":\(info.commitID),\"type\":\(type),\"source\":\"".utf8)
            out.append(contentsOf: record.source)
            let q = Self.quality(record, null: "null")
            out.append(contentsOf: "\",\"seq\":\(record.seq),\"mono_ctr\":\(record.mono),\"wall_ns\":\(record.time.wallNs),\(corrected)\"boot_ns\":\(record.time.bootNs),".utf8)
            out.append(contentsOf: "\"boot_seq\":\(record.bootSeq),\"time_flags\":\(record.time.flags.rawValue),\"maxerror_us\":\(q.maxError),\"esterror_us\":\(q.estError),\"last_sync_ns\":\(q.lastSync),\"payload\":".utf8)
            if JSONObjectValidator.isPrintablePayload(record.payload) {
                out.append(contentsOf: record.payload)
            } else {
                // Bytes the writer did not store as they are: shown, never interpreted.
                out.append(contentsOf: "null,\"payload_hex\":\"\(Hex.encode(record.payload))\"".utf8)
            }
            out.append(contentsOf: "}\n".utf8)
        case .csv:
            let type = known?.name ?? String(record.rawType)
            out.append(contentsOf: "\(info.segmentID),\(info.commitID),\(type),".utf8)
            Self.appendCSVText(record.source, to: &out)
            let q = Self.quality(record, null: "")
            out.append(contentsOf: ",\(record.seq),\(record.mono),\(record.time.wallNs),\(correctedColumn)\(record.time.bootNs),".utf8)
            out.append(contentsOf: "\(record.bootSeq),\(record.time.flags.rawValue),\(q.maxError),\(q.estError),\(q.lastSync),".utf8)
            if JSONObjectValidator.isPrintablePayload(record.payload) {
                Self.appendCSVText(record.payload, to: &out)
            } else {
                out.append(contentsOf: "\"hex:\(Hex.encode(record.payload))\"".utf8)
            }
            out.append(contentsOf: "\n".utf8)
        }
    }

    /// A quoted CSV cell: `"` doubled, and a `'` before a first character a spreadsheet would run
    /// as a formula (`=`, `+`, `-`, `@`, tab, carriage return), FORMAT.md 7.
    static func appendCSVText(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(0x22)
        if let first = bytes.first, [0x3D, 0x2B, 0x2D, 0x40, 0x09, 0x0D].contains(first) { out.append(0x27) }
        for byte in bytes {
            out.append(byte)
            if byte == 0x22 { out.append(0x22) }
        }
        out.append(0x22)
    }
}
