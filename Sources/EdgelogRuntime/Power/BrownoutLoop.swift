// A brownout loop (docs/DESIGN.md section 12): the supply keeps collapsing before the writer can
// close, so the store sees start after unexpected start. This start counts when it found the store
// unclean; so does each earlier start whose boot record says so and which lies within the window.
// Time between starts: wall time when both ends are trusted and in order; otherwise the sum of the
// writer sessions' own spans (CLOCK_BOOTTIME inside each session), a lower bound that ignores the
// time the board was off, so the record says which measure it used.

import EdgelogCore
import EdgelogStore

public struct BrownoutLoop: Sendable, Equatable {
    /// Unexpected resets found within the window, this start included.
    public var resets: Int
    public var withinS: Int
    /// Time from the oldest of them to this start, as measured.
    public var spanNs: Int64
    /// "wall" or "session_spans".
    public var measuredBy: String

    public var json: EvidenceJSON {
        var j = EvidenceJSON()
        j.add("resets", UInt64(resets))
        j.add("within_s", UInt64(withinS))
        j.add("span_ms", int: spanNs / 1_000_000)
        j.add("measured_by", .word(measuredBy))
        return j
    }

    /// nil unless this start was unexpected and `resets` of them fall within `withinS`.
    /// `previous` is newest first (BootHistory); `now` is this start's capture.
    public static func detect(thisStartUnexpected: Bool, previous: [BootEntry], nowWallNs: Int64, nowWallTrusted: Bool,
                              resets needed: Int, withinS: Int) -> BrownoutLoop? {
        guard thisStartUnexpected, needed >= 2 else { return nil }
        let windowNs = Int64(withinS) * 1_000_000_000
        var count = 1
        var spans: Int64 = 0
        var byWall = nowWallTrusted
        var oldest: Int64 = 0
        for entry in previous {
            // Time from this entry's start to now: its own session and every later one, at least.
            // Numbers from the card: checked, saturating (a forged chain in an unsigned store
            // must not trap the writer at every start).
            let span = entry.lastBootNs.subtractingReportingOverflow(entry.bootNs)
            let add = span.overflow ? Int64.max : max(span.partialValue, 0)
            let sum = spans.addingReportingOverflow(add)
            spans = sum.overflow ? Int64.max : sum.partialValue
            let wallGap = nowWallNs.subtractingReportingOverflow(entry.wallNs)
            byWall = byWall && entry.wallTrusted && !wallGap.overflow && wallGap.partialValue >= spans
            let distance = byWall ? wallGap.partialValue : spans
            guard distance <= windowNs else { break }
            if entry.unexpectedReset {
                count += 1
                oldest = distance
            }
            if count >= needed {
                return BrownoutLoop(resets: count, withinS: withinS, spanNs: oldest, measuredBy: byWall ? "wall" : "session_spans")
            }
        }
        return nil
    }
}
