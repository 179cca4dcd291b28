// The unsigned metadata against the signed state of its head segment (docs/FORMAT.md section 9,
// item 4). The metadata slot has no signature: anyone who can write the card can rewrite it with a
// good CRC. Every number in it that an auditor or the writer relies on is also in the head
// segment's seal, so the slot is believed only where the two agree. The verifier reports each
// disagreement, inspect labels it, and the writer refuses to continue from it.

import EdgelogCore

/// One metadata field that disagrees with the head segment's sealed state.
public struct StateMismatch: Equatable, Sendable, CustomStringConvertible {
    public var field: String
    /// Offset of the field inside the metadata slot.
    public var offset: Int
    public var metadata: String
    public var sealed: String
    /// True when the metadata may legitimately be above the sealed value and is below it.
    public var atLeast: Bool

    public var description: String {
        "\(field) is \(metadata) in the metadata but \(atLeast ? "at least " : "")\(sealed) in the seal"
    }
}

extension Metadata {
    /// Fields whose values no writer reaches: ids, the generation and the u64 counters at 2^61 or
    /// more, the u32 counters at 2^31 or more (FORMAT.md 2). Readers accept them (they are valid up
    /// to 2^62); a writer refuses them, so that none of its increments can leave a bound or wrap.
    public var implausibleFields: [String] {
        let wide: [(String, UInt64)] = [("generation", generation), ("commit_id", commitID), ("head_segment_id", headSegmentID),
                                        ("tail_segment_id", tailSegmentID), ("mono_hwm", monoHWM), ("rollback_ctr", rollbackCtr),
                                        ("uplink_cursor", uplinkCursor), ("records_total", recordsTotal),
                                        ("dropped_total", droppedTotal), ("lost_total", lostTotal)]
        let narrow: [(String, UInt32)] = [("wrap_count", wrapCount), ("unexp_rst", unexpRst), ("bo_event", boEvent),
                                          ("ecc_err_cnt", eccErrCnt), ("boot_seq", bootSeq), ("clock_steps", time.clockSteps)]
        var found = wide.filter { $0.1 >= 1 << 61 }.map { "\($0.0) \($0.1)" }
        found += narrow.filter { $0.1 >= 1 << 31 }.map { "\($0.0) \($0.1)" }
        found += sources.filter { $0.lastSeq >= 1 << 61 }.map { "last_seq of \($0.name) \($0.lastSeq)" }
        return found
    }

    /// The fields of this metadata (recovery's analysis state) that disagree with the sealed state
    /// of its head segment. `tailGivenUp` tails were given up by the analysis since that seal.
    public func mismatches(against statement: Statement, tailGivenUp: Int = 0) -> [StateMismatch] {
        let t = statement.sealed
        var found: [StateMismatch] = []
        func equal<T: Equatable & CustomStringConvertible>(_ field: String, _ offset: Int, _ mine: T, _ theirs: T) {
            if mine != theirs { found.append(StateMismatch(field: field, offset: offset, metadata: mine.description, sealed: theirs.description, atLeast: false)) }
        }
        func atLeast<T: Comparable & CustomStringConvertible>(_ field: String, _ offset: Int, _ mine: T, _ theirs: T) {
            if mine < theirs { found.append(StateMismatch(field: field, offset: offset, metadata: mine.description, sealed: theirs.description, atLeast: true)) }
        }
        // The tail's slot and the ring's size decide when the ring is full and what a reclaim
        // overwrites: an edited one would make the writer overwrite history it still holds.
        equal("ring_slots", 72, UInt32(truncatingIfNeeded: geometry.ringSlots), t.ringSlots)
        var sealedTailSlot: Int? = Int(t.tailSlot)
        for _ in 0..<tailGivenUp { sealedTailSlot = sealedTailSlot.flatMap { nextSlot(after: $0) } }
        if sealedTailSlot != tailSlot {
            found.append(StateMismatch(field: "tail_slot", offset: 100, metadata: "\(tailSlot)",
                                       sealed: "\(t.tailSlot)" + (tailGivenUp > 0 ? " (+\(tailGivenUp) given up)" : ""), atLeast: false))
        }
        let (tail, overflow) = t.tailSegmentID.addingReportingOverflow(UInt64(tailGivenUp))
        if overflow || tailSegmentID != tail {
            found.append(StateMismatch(field: "tail_segment_id", offset: 104, metadata: "\(tailSegmentID)",
                                       sealed: "\(t.tailSegmentID)" + (tailGivenUp > 0 ? " (+\(tailGivenUp) given up)" : ""), atLeast: false))
        }
        equal("wrap_count", 112, wrapCount, t.wrapCount)
        atLeast("unexp_rst", 120, unexpRst, t.unexpRst)
        equal("bo_event", 124, boEvent, t.boEvent)
        atLeast("ecc_err_cnt", 128, eccErrCnt, t.eccErrCnt)
        equal("mono_hwm", 136, monoHWM, t.monoHWM)
        atLeast("uplink_cursor", 144, uplinkCursor, t.uplinkCursor)
        equal("records_total", 152, recordsTotal, t.recordsTotal)
        equal("dropped_total", 160, droppedTotal, t.droppedTotal)
        equal("lost_total", 168, lostTotal, t.lostTotal)
        if tablesHash != t.tablesHash {
            found.append(StateMismatch(field: "bad_block_tbl and source table", offset: 256, metadata: "tables_hash \(Hex.encode(tablesHash))",
                                       sealed: Hex.encode(t.tablesHash), atLeast: false))
        }
        atLeast("rollback_ctr", 2832, rollbackCtr, statement.rollbackCtr)
        equal("key_id", 2872, Hex.encode(keyID), Hex.encode(statement.keyID))
        equal("key_epoch", 2888, keyEpoch, statement.keyEpoch)
        equal("sig_alg", 2892, sigAlg, statement.sigAlg)
        equal("key_src", 2893, keySrc, statement.keySrc)
        atLeast("boot_seq", 2912, bootSeq, t.bootSeq)
        equal("clock_steps", 2916, time.clockSteps, t.clockSteps)
        return found
    }
}
