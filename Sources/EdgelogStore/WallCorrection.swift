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
    public mutating func note(_ record: RecordView) {
        let offset = record.time.wallNs &- record.time.bootNs
        lastAny[record.bootSeq] = offset
        if record.time.flags.contains(.synced) && !record.time.flags.contains(.wallUntrusted) {
            lastGood[record.bootSeq] = offset
        }
    }

    /// Second pass: the corrected wall time of a record.
    public func corrected(_ record: RecordView) -> Int64 {
        let reference = lastGood[record.bootSeq] ?? lastAny[record.bootSeq] ?? (record.time.wallNs &- record.time.bootNs)
        return record.time.bootNs &+ reference
    }
}
