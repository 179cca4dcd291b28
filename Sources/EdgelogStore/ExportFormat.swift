// The export line formats (docs/FORMAT.md section 7), shared by `edgelog export` and the tests
// that compare it with the independent Python decoder.

import EdgelogCore

public enum ExportFormat: String, Sendable, CaseIterable {
    case jsonl, csv

    public static let csvHeader = "segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,boot_ns," + timeColumns
    public static let csvHeaderCorrected = "segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,wall_corrected_ns,boot_ns," + timeColumns
    private static let timeColumns = "boot_seq,time_flags,maxerror_us,esterror_us,last_sync_ns,payload\n"

    /// The record's time quality as export prints it: not sampled and never synced are null.
    private static func quality(_ t: CaptureTime, null: String) -> (maxError: String, estError: String, lastSync: String) {
        return (t.maxErrorUs == CaptureTime.notSampled ? null : String(t.maxErrorUs),
                t.estErrorUs == CaptureTime.notSampled ? null : String(t.estErrorUs),
                t.lastSyncNs == 0 ? null : String(t.lastSyncNs))
    }

    /// Appends one record's line to `out`; `correctedWall` adds wall_corrected_ns after wall_ns.
    public func append(_ info: SegmentInfo, _ record: RecordView, correctedWall: Int64? = nil, to out: inout [UInt8]) {
        append(segmentID: info.segmentID, commitID: info.commitID, rawType: record.rawType, source: record.source, seq: record.seq,
               mono: record.mono, time: record.time, bootSeq: record.bootSeq, payload: record.payload, correctedWall: correctedWall, to: &out)
    }

    /// A format 6 record's line: its commit is its frame (commit_id is the frame id).
    public func append(segmentID: UInt64, frameID: UInt64, _ record: PackedRecord, correctedWall: Int64? = nil, to out: inout [UInt8]) {
        var source = record.source
        source.withUTF8 { s in
            record.payload.withUnsafeBytes { p in
                append(segmentID: segmentID, commitID: frameID, rawType: record.rawType, source: UnsafeRawBufferPointer(s), seq: record.seq,
                       mono: record.mono, time: record.time, bootSeq: record.bootSeq, payload: p, correctedWall: correctedWall, to: &out)
            }
        }
    }

    private func append(segmentID: UInt64, commitID: UInt64, rawType: UInt16, source: UnsafeRawBufferPointer, seq: UInt64, mono: UInt64,
                        time: CaptureTime, bootSeq: UInt16, payload: UnsafeRawBufferPointer, correctedWall: Int64?, to out: inout [UInt8]) {
        let corrected = correctedWall.map { "\"wall_corrected_ns\":\($0)," } ?? ""
        let correctedColumn = correctedWall.map { "\($0)," } ?? ""
        let known = RecordType(rawValue: rawType)
        switch self {
        case .jsonl:
            let type = known.map { "\"\($0.name)\"" } ?? String(rawType)
            out.append(contentsOf: "{\"segment_id\":\(segmentID),\"commit_id\":\(commitID),\"type\":\(type),\"source\":\"".utf8)
            out.append(contentsOf: source)
            let q = Self.quality(time, null: "null")
            out.append(contentsOf: "\",\"seq\":\(seq),\"mono_ctr\":\(mono),\"wall_ns\":\(time.wallNs),\(corrected)\"boot_ns\":\(time.bootNs),".utf8)
            out.append(contentsOf: "\"boot_seq\":\(bootSeq),\"time_flags\":\(time.flags.rawValue),\"maxerror_us\":\(q.maxError),\"esterror_us\":\(q.estError),\"last_sync_ns\":\(q.lastSync),\"payload\":".utf8)
            if JSONObjectValidator.isPrintablePayload(payload) {
                out.append(contentsOf: payload)
            } else {
                // Bytes the writer did not store as they are: shown, never interpreted.
                out.append(contentsOf: "null,\"payload_hex\":\"\(Hex.encode(payload))\"".utf8)
            }
            out.append(contentsOf: "}\n".utf8)
        case .csv:
            let type = known?.name ?? String(rawType)
            out.append(contentsOf: "\(segmentID),\(commitID),\(type),".utf8)
            Self.appendCSVText(source, to: &out)
            let q = Self.quality(time, null: "")
            out.append(contentsOf: ",\(seq),\(mono),\(time.wallNs),\(correctedColumn)\(time.bootNs),".utf8)
            out.append(contentsOf: "\(bootSeq),\(time.flags.rawValue),\(q.maxError),\(q.estError),\(q.lastSync),".utf8)
            if JSONObjectValidator.isPrintablePayload(payload) {
                Self.appendCSVText(payload, to: &out)
            } else {
                out.append(contentsOf: "\"hex:\(Hex.encode(payload))\"".utf8)
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
