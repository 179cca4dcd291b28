// Does the worst-case safe-commit window fit the supply's hold-up? (docs/DESIGN.md section 12)
// A commit costs a fixed part (a metadata-sized write and a flush) plus a part that grows with
// the bytes written. The worst window commits two buffers: the one in flight at the freeze and
// the active one. Both are measured at start and re-measured by every commit the writer makes;
// when the worst case with the margin does not fit, the buffers are capped so that it does.

import EdgelogCore
import EdgelogStore
import Synchronization

public struct HoldUpPlan: Sendable, Equatable {
    public enum Verdict: String, Sendable {
        /// Whole buffers can be committed inside the budget with the margin.
        case fits
        /// Only capped buffers can: fillLimit bytes of data per buffer.
        case shrunk
        /// Not even the smallest buffer can: the window will likely not complete.
        case cannotFit = "cannot_fit"
    }

    public var verdict: Verdict
    public var holdUpNs: Int64
    public var marginPct: Int
    /// Cost of a commit's metadata write and flush (the slowest measured).
    public var fixedNs: Int64
    /// Cost per byte written beyond it (picoseconds, to keep small costs exact).
    public var perBytePs: Int64
    /// Data bytes a buffer may hold: the segment's capacity, or less when shrunk.
    public var fillLimit: Int
    public var capacity: Int
    /// The worst window with this limit, before the margin.
    public var worstWindowNs: Int64
    /// "start" (measured before logging) or "commit" (a commit took longer than the model).
    public var reason: String
    /// "segment_writes": the cost per byte was measured; "metadata_writes": only the fixed cost
    /// was (no free slot to write a whole segment into: a full ring), the rest is learned from
    /// the commits and the verdict may still fall.
    public var basis = "segment_writes"

    public var json: EvidenceJSON {
        var j = EvidenceJSON()
        j.add("reason", .word(reason))
        j.add("verdict", .word(verdict.rawValue))
        j.add("basis", .word(basis))
        j.add("hold_up_ms", UInt64(clamping: holdUpNs / 1_000_000))
        j.add("margin_pct", UInt64(clamping: marginPct))
        j.add("worst_window_us", UInt64(max(worstWindowNs, 0) / 1000))
        j.add("commit_fixed_us", UInt64(max(fixedNs, 0) / 1000))
        j.add("write_ns_per_kib", UInt64(max(perBytePs, 0) * 1024 / 1000))
        j.add("fill_limit_bytes", UInt64(clamping: fillLimit))
        j.add("capacity_bytes", UInt64(clamping: capacity))
        return j
    }
}

public final class HoldUpBudget: Sendable {
    /// A buffer is never capped below this: smaller caps only multiply commits.
    public static let minimumFill = 1024
    /// Bytes a commit writes beside the data: header, marker, evidence room.
    static let overhead = 128 + 432 + 512

    private let holdUpNs: Int64
    private let marginPct: Int
    private let capacity: Int
    private let state: Mutex<(fixedNs: Int64, perBytePs: Int64, plan: HoldUpPlan?)>
    /// Whether the per-byte cost has been measured (whole segments written at start, or a large
    /// commit observed).
    private let perByteMeasured: Mutex<Bool>

    /// `flushNs`: metadata write + flush samples; `segmentNs`: whole-segment write + flush samples
    /// of `segmentBytes` (may be empty: then the per-byte cost is learned from commits).
    public init(holdUpMs: Int, marginPct: Int, capacity: Int, segmentBytes: Int, flushNs: [Int64], segmentNs: [Int64]) {
        // Checked: the parser bounds them, but a caller of this public type may not have.
        let ns = Int64(clamping: holdUpMs).multipliedReportingOverflow(by: 1_000_000)
        self.holdUpNs = ns.overflow ? Int64.max : max(ns.partialValue, 0)
        self.marginPct = min(max(marginPct, 0), 1000)
        self.capacity = capacity
        // The fixed part at its slowest; the part per byte from the medians (the difference of two
        // maxima is mostly the noise of one flush).
        let fixed = flushNs.max() ?? 0
        var perByte: Int64 = 0
        if let segment = Self.median(segmentNs), let flush = Self.median(flushNs), segmentBytes > 4096, segment > flush {
            perByte = (segment - flush) * 1000 / Int64(segmentBytes - 4096)
        }
        state = Mutex((fixed, perByte, nil))
        let measured = !segmentNs.isEmpty
        perByteMeasured = Mutex(measured)
        state.withLock {
            var plan = Self.makePlan(fixedNs: fixed, perBytePs: perByte, holdUpNs: self.holdUpNs, marginPct: self.marginPct, capacity: capacity,
                                     reason: "start")
            plan.basis = measured ? "segment_writes" : "metadata_writes"
            $0.plan = plan
        }
    }

    public var plan: HoldUpPlan? { state.withLock { $0.plan } }

    static func median(_ xs: [Int64]) -> Int64? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        return s[s.count / 2]
    }

    /// A commit of `bytes` data bytes took `ns`. Returns the new plan when the limit or the verdict
    /// changes (the caller applies it and records it), nil otherwise.
    public func observe(commitNs ns: Int64, bytes: Int) -> HoldUpPlan? {
        state.withLock { s in
            let predicted = s.fixedNs + s.perBytePs * Int64(bytes + Self.overhead) / 1000
            guard ns > predicted else { return nil }
            if bytes < capacity / 4 {
                s.fixedNs = max(s.fixedNs, ns - s.perBytePs * Int64(bytes + Self.overhead) / 1000)
            } else {
                s.perBytePs = max(s.perBytePs, (ns - s.fixedNs) * 1000 / Int64(bytes + Self.overhead))
                perByteMeasured.withLock { $0 = true }
            }
            var next = Self.makePlan(fixedNs: s.fixedNs, perBytePs: s.perBytePs, holdUpNs: holdUpNs, marginPct: marginPct,
                                     capacity: capacity, reason: "commit")
            next.basis = perByteMeasured.withLock { $0 } ? "segment_writes" : "metadata_writes"
            let old = s.plan
            s.plan = next
            // Recorded only when it matters: a new verdict or a limit at least a tenth lower.
            if let old, old.verdict == next.verdict, next.fillLimit * 10 > old.fillLimit * 9 { return nil }
            return next
        }
    }

    static func window(fixedNs: Int64, perBytePs: Int64, fill: Int) -> Int64 {
        2 * (fixedNs + perBytePs * Int64(fill + overhead) / 1000)
    }

    /// The plan for these costs (tests call it with chosen numbers).
    public static func makePlan(fixedNs: Int64, perBytePs: Int64, holdUpNs: Int64, marginPct: Int, capacity: Int, reason: String) -> HoldUpPlan {
        // The window times (1 + margin) must fit: the window may use holdUp * 100 / (100 + margin).
        let margin = Int64(min(max(marginPct, 0), 1000))
        let scaled = holdUpNs.multipliedReportingOverflow(by: 100)
        let allowed = (scaled.overflow ? Int64.max : scaled.partialValue) / (100 + margin)
        var fill = capacity
        var verdict = HoldUpPlan.Verdict.fits
        if window(fixedNs: fixedNs, perBytePs: perBytePs, fill: capacity) > allowed {
            let perCommit = allowed / 2 - fixedNs
            let bytes = perBytePs > 0 ? perCommit * 1000 / perBytePs - Int64(overhead) : -1
            if perCommit > 0 && bytes >= Int64(minimumFill) {
                fill = Int(min(bytes, Int64(capacity)))
                verdict = .shrunk
            } else {
                fill = minimumFill
                verdict = .cannotFit
            }
        }
        return HoldUpPlan(verdict: verdict, holdUpNs: holdUpNs, marginPct: marginPct, fixedNs: fixedNs, perBytePs: perBytePs,
                          fillLimit: fill, capacity: capacity, worstWindowNs: window(fixedNs: fixedNs, perBytePs: perBytePs, fill: fill),
                          reason: reason)
    }
}
