// Payloads of the ingress evidence records (docs/FORMAT.md section 4, types 10-16). Each is written
// under the source it concerns, with that source's next seq, so a reader of one source's records
// sees its failures, recoveries and degradations in order among its readings.

import EdgelogHAL

enum IngressEvidence {
    /// A failed read or start: what failed, where, how many times in a row, when the next try is.
    static func fault(_ error: HardwareError, failures: Int, retryInNs: Int64) -> [UInt8] {
        var out = Object()
        out.text("error", error.kind.rawValue)
        out.number("errno", error.errno.map(Int64.init))
        out.text("device", error.device)
        out.text("address", error.address)
        out.text("register", error.register)
        out.text("detail", error.detail)
        out.number("failures", Int64(failures))
        out.number("retry_in_ms", retryInNs / 1_000_000)
        return out.bytes
    }

    static func recovered(failures: Int, downNs: Int64) -> [UInt8] {
        var out = Object()
        out.number("failures", Int64(failures))
        out.number("down_ms", downNs / 1_000_000)
        return out.bytes
    }

    static func backpressure(on: Bool, depth: Int, limit: Int, skippedPolls: UInt64, durationNs: Int64?) -> [UInt8] {
        var out = Object()
        out.text("bp_state", on ? "on" : "off")
        out.number("queue_depth", Int64(depth))
        out.number("queue_limit", Int64(limit))
        out.number("skipped_polls", Int64(clamping: skippedPolls))
        out.number("duration_ms", durationNs.map { $0 / 1_000_000 })
        return out.bytes
    }

    static func decimation(start: Bool, factor: Int, depth: Int, kept: UInt64, discarded: UInt64, windowNs: Int64?) -> [UInt8] {
        var out = Object()
        out.text("state", start ? "start" : "end")
        out.number("factor", Int64(factor))
        out.number("queue_depth", Int64(depth))
        out.number("kept", Int64(clamping: kept))
        out.number("discarded", Int64(clamping: discarded))
        out.number("window_ms", windowNs.map { $0 / 1_000_000 })
        return out.bytes
    }

    /// Readings that found the queue full: how many, why, and over how long a window, ending just
    /// before this record (they never got a seq: the count is the evidence).
    static func drop(count: UInt64, reasonCode: String, windowNs: Int64) -> [UInt8] {
        var out = Object()
        out.text("reason_code", reasonCode)
        out.number("drop_cnt", Int64(clamping: count))
        out.number("window_ms", windowNs / 1_000_000)
        return out.bytes
    }

    static func overrun(polls: UInt64, missed: UInt64, maxLateNs: Int64, boundNs: Int64, periodNs: Int64) -> [UInt8] {
        var out = Object()
        out.number("late_polls", Int64(clamping: polls))
        out.number("missed_polls", Int64(clamping: missed))
        out.number("max_late_us", maxLateNs / 1000)
        out.number("bound_us", boundNs / 1000)
        out.number("period_ms", periodNs / 1_000_000)
        return out.bytes
    }

    /// Messages an event source received but could not accept (bad checksum, garbage, too long):
    /// the last one's error, how many since the previous record, how many this run.
    static func rejected(_ error: HardwareError, count: UInt64, total: UInt64) -> [UInt8] {
        var out = Object()
        out.text("error", error.kind.rawValue)
        out.text("device", error.device)
        out.text("detail", error.detail)
        out.number("rejected", Int64(clamping: count))
        out.number("rejected_total", Int64(clamping: total))
        return out.bytes
    }

    /// A flat JSON object of numbers and printable strings (JSONWriter escapes everything else).
    struct Object {
        private var buffer: [UInt8] = [UInt8(ascii: "{")]
        private var empty = true

        mutating func key(_ name: String) {
            if !empty { buffer.append(UInt8(ascii: ",")) }
            empty = false
            JSONWriter.string(name, into: &buffer)
            buffer.append(UInt8(ascii: ":"))
        }

        mutating func text(_ name: String, _ value: String?) {
            key(name)
            if let value { JSONWriter.string(value, into: &buffer) } else { buffer.append(contentsOf: "null".utf8) }
        }

        mutating func number(_ name: String, _ value: Int64?) {
            key(name)
            buffer.append(contentsOf: (value.map { String($0) } ?? "null").utf8)
        }

        var bytes: [UInt8] { buffer + [UInt8(ascii: "}")] }
    }
}
