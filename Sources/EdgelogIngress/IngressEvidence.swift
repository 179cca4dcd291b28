// Payloads of the ingress evidence records (docs/FORMAT.md section 4, types 10-16). Each is written
// under the source it concerns, with that source's next seq, so a reader of one source's records
// sees its failures, recoveries and degradations in order among its readings.

import EdgelogCore
import EdgelogHAL

enum IngressEvidence {
    /// A failed read or start: what failed, where, how many times in a row, when the next try is.
    static func fault(_ error: HardwareError, failures: Int, retryInNs: Int64) -> [UInt8] {
        var out = EvidenceJSON()
        out.add("error", .word(error.kind.rawValue))
        out.add("errno", int: error.errno.map(Int64.init))
        out.add("device", text: error.device)
        out.add("address", text: error.address)
        out.add("register", text: error.register)
        out.add("detail", text: error.detail)
        out.add("failures", .int(Int64(failures)))
        out.add("retry_in_ms", .int(retryInNs / 1_000_000))
        return out.bytes
    }

    static func recovered(failures: Int, downNs: Int64) -> [UInt8] {
        var out = EvidenceJSON()
        out.add("failures", .int(Int64(failures)))
        out.add("down_ms", .int(downNs / 1_000_000))
        return out.bytes
    }

    static func backpressure(on: Bool, depth: Int, limit: Int, skippedPolls: UInt64, durationNs: Int64?) -> [UInt8] {
        var out = EvidenceJSON()
        out.add("bp_state", .word(on ? "on" : "off"))
        out.add("queue_depth", .int(Int64(depth)))
        out.add("queue_limit", .int(Int64(limit)))
        out.add("skipped_polls", .uint(skippedPolls))
        out.add("duration_ms", int: durationNs.map { $0 / 1_000_000 })
        return out.bytes
    }

    static func decimation(start: Bool, factor: Int, depth: Int, kept: UInt64, discarded: UInt64, windowNs: Int64?) -> [UInt8] {
        var out = EvidenceJSON()
        out.add("state", .word(start ? "start" : "end"))
        out.add("factor", .int(Int64(factor)))
        out.add("queue_depth", .int(Int64(depth)))
        out.add("kept", .uint(kept))
        out.add("discarded", .uint(discarded))
        out.add("window_ms", int: windowNs.map { $0 / 1_000_000 })
        return out.bytes
    }

    /// Readings that found the queue full: how many, why, and over how long a window, ending just
    /// before this record (they never got a seq: the count is the evidence).
    static func drop(count: UInt64, reasonCode: String, windowNs: Int64) -> [UInt8] {
        var out = EvidenceJSON()
        out.add("reason_code", .word(reasonCode))
        out.add("drop_cnt", .uint(count))
        out.add("window_ms", .int(windowNs / 1_000_000))
        return out.bytes
    }

    static func overrun(polls: UInt64, missed: UInt64, maxLateNs: Int64, boundNs: Int64, periodNs: Int64) -> [UInt8] {
        var out = EvidenceJSON()
        out.add("late_polls", .uint(polls))
        out.add("missed_polls", .uint(missed))
        out.add("max_late_us", .int(maxLateNs / 1000))
        out.add("bound_us", .int(boundNs / 1000))
        out.add("period_ms", .int(periodNs / 1_000_000))
        return out.bytes
    }

    /// Messages an event source received but could not accept (bad checksum, garbage, too long):
    /// the last one's error, how many since the previous record, how many this run.
    static func rejected(_ error: HardwareError, count: UInt64, total: UInt64) -> [UInt8] {
        var out = EvidenceJSON()
        out.add("error", .word(error.kind.rawValue))
        out.add("device", text: error.device)
        out.add("detail", text: error.detail)
        out.add("rejected", .uint(count))
        out.add("rejected_total", .uint(total))
        return out.bytes
    }
}
