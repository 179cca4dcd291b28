// `export --wall corrected` (docs/FORMAT.md section 7): per boot, the wall − boot offset of the last
// record captured with the clock synchronized and trusted (else the last record of that boot) is the
// reference; a record's corrected wall time is its boot time plus that offset. Steps within a boot
// are mapped away onto the clock as it was last known good; boots are never mixed (boot time
// restarts at each boot).

public struct WallCorrection: Sendable {
    private var lastGood: [UInt16: Int64] = [:]
    private var lastAny: [UInt16: Int64] = [:]

    public init() {}

    /// First pass: every committed record, in order.
    public mutating func note(_ record: RecordView) { note(record.time, bootSeq: record.bootSeq) }
    public mutating func note(_ record: PackedRecord) { note(record.time, bootSeq: record.bootSeq) }

    private mutating func note(_ time: CaptureTime, bootSeq: UInt16) {
        let offset = time.wallNs &- time.bootNs
        lastAny[bootSeq] = offset
        if time.flags.contains(.synced) && !time.flags.contains(.wallUntrusted) {
            lastGood[bootSeq] = offset
        }
    }

    /// Second pass: the corrected wall time of a record.
    public func corrected(_ record: RecordView) -> Int64 { corrected(record.time, bootSeq: record.bootSeq) }
    public func corrected(_ record: PackedRecord) -> Int64 { corrected(record.time, bootSeq: record.bootSeq) }

    private func corrected(_ time: CaptureTime, bootSeq: UInt16) -> Int64 {
        let reference = lastGood[bootSeq] ?? lastAny[bootSeq] ?? (time.wallNs &- time.bootNs)
        return time.bootNs &+ reference
    }
}
