// `edgelog export` over a format 6 store (FORMAT.md section 7's lines; a format 6 commit is a frame,
// so commit_id is the frame id): the committed records in order, streamed, with the places where the
// history stops short of its head.

import EdgelogCore

public enum PackedExport {
    /// Writes the export line of every committed record of frames above `sinceFrame` through
    /// `write`; `correctedWall` adds wall_corrected_ns (a first pass over the records finds each
    /// boot's reference). Returns where the history stopped short of its head.
    @discardableResult
    public static func run(device: BlockDevice, history: PackedHistory, format: ExportFormat, sinceFrame: UInt64 = 0,
                           correctedWall: Bool = false, write: (UnsafeRawBufferPointer) -> Void) -> [FrameDamage] {
        var correction: WallCorrection?
        if correctedWall {
            var c = WallCorrection()
            history.forEachFrame(device: device) { _, frame in for r in frame.records { c.note(r) } }
            correction = c
        }
        if format == .csv {
            let header = correction == nil ? ExportFormat.csvHeader : ExportFormat.csvHeaderCorrected
            Array(header.utf8).withUnsafeBytes(write)
        }
        var line: [UInt8] = []
        return history.forEachFrame(device: device, sinceFrame: sinceFrame) { header, frame in
            for r in frame.records {
                line.removeAll(keepingCapacity: true)
                format.append(segmentID: header.segmentID, frameID: frame.frameID, r, correctedWall: correction?.corrected(r), to: &line)
                line.withUnsafeBytes(write)
            }
        }
    }
}
