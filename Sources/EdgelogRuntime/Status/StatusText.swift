// `edgelog status` in words a technician understands: the state first (each active condition with
// its NE 107 category, its LED code, what it means and what to do), then the power path, the store,
// the sources, the time and the LEDs. Everything that came from another process or from a card is
// passed through terminalSafe before it reaches the terminal.

import EdgelogCore

public enum StatusText {
    public static func render(_ s: StatusSnapshot, stateDir: String) -> String {
        var lines: [String] = []
        func line(_ label: String, _ text: String) {
            let padded = label.isEmpty ? String(repeating: " ", count: 12) : label + String(repeating: " ", count: max(1, 12 - label.count))
            lines.append(padded + text)
        }
        let dir = terminalSafe(stateDir)
        switch s.origin {
        case .process:
            var head = "edgelog is running on \(dir)"
            var facts: [String] = []
            if let pid = s.pid { facts.append("pid \(pid)") }
            if let up = s.uptimeMs { facts.append("up \(duration(ms: up))") }
            if let board = s.board { facts.append("board \(terminalSafe(board))") }
            if let phase = s.phase, phase != .running { facts.append(phase.rawValue) }
            if !facts.isEmpty { head += ": " + facts.joined(separator: ", ") }
            lines.append(head)
            conditionLines(s, into: &lines)
        case .store, .none:
            if s.state == .noAnswer {
                lines.append("edgelog DOES NOT ANSWER on \(dir): " + terminalSafe(s.note ?? ""))
            } else {
                lines.append("edgelog is NOT running on \(dir)")
                if s.origin == .none, let note = s.note { line("", terminalSafe(note)) }
            }
            if s.origin == .store {
                lines.append("From the store, read-only (the last job's account, not a running job's):")
            }
        }

        if let p = s.power {
            var parts: [String] = []
            var holdUp: String?
            if let state = p.state { parts.append(powerWords(state)) }
            if let bo = p.boEvent { parts.append("brownouts \(bo)") }
            if let rst = p.unexpRst { parts.append("unexpected resets \(rst)") }
            if let h = p.holdUp {
                var text = "hold-up budget: " + holdUpWords(h.verdict)
                var numbers: [String] = []
                if let v = h.holdUpMs { numbers.append("hold-up \(v) ms") }
                if let v = h.worstWindowUs { numbers.append("worst window \(micro(v))") }
                if let v = h.marginPct { numbers.append("margin \(v) %") }
                if let v = h.fillLimitBytes { numbers.append("buffer limit \(v) bytes") }
                if !numbers.isEmpty { text += " (" + numbers.joined(separator: ", ") + ")" }
                holdUp = text
            }
            if !parts.isEmpty || holdUp != nil { line("power", parts.isEmpty ? holdUp ?? "" : parts.joined(separator: "; ")) }
            if !parts.isEmpty, let holdUp { line("", holdUp) }
            if let w = p.lastSafeCommit {
                var text = "last safe commit" + (w.agoMs.map { " \(duration(ms: $0)) ago" } ?? "")
                if let t = w.trigger { text += " (" + terminalSafe(t) + (w.input.map { " " + terminalSafe($0) } ?? "") + ")" }
                var steps: [String] = []
                if let v = w.edgeToFreezeUs { steps.append("frozen after \(micro(v))") }
                if let v = w.edgeToCleanUs { steps.append("clean after \(micro(v))") }
                if let v = w.committedRecords { steps.append("\(v) records in \(w.commits ?? 0) commit(s)") }
                if !steps.isEmpty { text += ": " + steps.joined(separator: ", ") }
                if let within = w.withinBudget { text += within ? "; within the hold-up time" : "; OVER the hold-up time" }
                line("", text)
            }
        }

        if let st = s.store {
            var parts: [String] = []
            if let path = st.path { parts.append(terminalSafe(path)) }
            if let head = st.headSegmentID { parts.append(head == 0 ? "nothing committed yet" : "head segment \(head)") }
            if let total = st.recordsTotal { parts.append("\(total) records committed") }
            if let id = st.lastCommitID {
                parts.append("last commit #\(id)" + (st.lastCommitAgeMs.map { " \(duration(ms: $0)) ago" } ?? ""))
            }
            line("store", parts.joined(separator: "; "))
            if let clean = st.clean {
                if s.origin == .process {
                    line("", clean ? "closed cleanly" : "open for writing (clean_flag 0 while the job runs)")
                } else {
                    line("shutdown", clean ? "clean: the last job closed the store"
                        : "NOT clean: the last job did not close the store (power cut, crash or kill; recovery runs at the next start)")
                }
            }
            if let check = st.metadataCheck { line("checked", "metadata " + terminalSafe(check)) }
            if let unverified = st.unverified, !unverified.isEmpty {
                line("not sealed", unverified.map(terminalSafe).joined(separator: ", ") + " (shown as the metadata says; no seal vouches for them)")
            }
        }

        if let sources = s.sources {
            let failing = sources.filter { $0.failing > 0 }
            if failing.isEmpty {
                line("sources", "all \(sources.count) ok")
            } else {
                line("sources", "\(sources.count - failing.count) of \(sources.count) ok; failing:")
                for f in failing {
                    line("", "\(terminalSafe(f.name)): \(f.failing) failure(s) in a row, \(f.failures) in all" + (f.lastError.map { "; last: " + terminalSafe($0) } ?? ""))
                }
            }
        }
        if let synced = s.timeSynced { line("time", synced ? "synchronized" : "NOT synchronized") }
        if let backlog = s.uplinkBacklogSegments { line("uplink", "\(backlog) segment(s) waiting") }
        if let leds = s.leds, !leds.isEmpty {
            let texts = leds.map { led -> String in
                var t = led.role.rawValue + (led.colour.map { " (\($0.rawValue))" } ?? "") + " " + terminalSafe(led.name) + ": " + terminalSafe(led.shows)
                if led.writeErrors > 0 { t += " [\(led.writeErrors) write error(s)]" }
                return t
            }
            line("LEDs", texts.joined(separator: "; "))
        }
        if s.origin == .store, let note = s.note { line("note", terminalSafe(note)) }
        return lines.joined(separator: "\n")
    }

    static func conditionLines(_ s: StatusSnapshot, into lines: inout [String]) {
        guard let top = s.topCategory else {
            lines.append("STATE       OK: no condition active (status LED: heartbeat)")
            return
        }
        lines.append("STATE       \(top.letter) \(top.name.uppercased()): \(s.conditions.count) condition(s) active, most urgent first")
        for c in s.conditions {
            let code = c.condition.blinkCode
            lines.append("  \(c.condition.rawValue): NE 107 \(c.condition.category.letter) (\(c.condition.category.name)), LED code \(code) = \(code.words); active for \(duration(ms: c.activeForMs))")
            lines.append("      what: \(c.condition.meaning)")
            if !c.detail.isEmpty { lines.append("      detail: \(terminalSafe(c.detail))") }
            lines.append("      do: \(c.condition.action)")
        }
    }

    static func holdUpWords(_ verdict: String) -> String {
        switch verdict {
        case "fits": "fits (whole buffers commit within the hold-up time with the margin)"
        case "shrunk": "fits only with smaller buffers (capped; more commits)"
        case "cannot_fit": "DOES NOT FIT: a power cut may lose the buffered records; fit a larger hold-up or a faster card"
        default: terminalSafe(verdict)
        }
    }

    static func powerWords(_ state: StatusFacts.PowerState) -> String {
        switch state {
        case .running: "supply good"
        case .frozen: "SUPPLY FAILED: acquisition frozen, committing"
        case .holding: "SUPPLY FAILED: committed and marked clean, holding"
        }
    }

    /// "340 ms", "4.2 s", "2 min 3 s", "2 h 13 min", "3 d 4 h".
    public static func duration(ms: Int64) -> String {
        let ms = max(0, ms)
        if ms < 1000 { return "\(ms) ms" }
        if ms < 10_000 { return "\(ms / 1000).\(ms % 1000 / 100) s" }
        let s = ms / 1000
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        if s < 86_400 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        return "\(s / 86_400) d \(s % 86_400 / 3600) h"
    }

    /// µs as "850 us", "34.2 ms", "1.20 s".
    static func micro(_ us: Int64) -> String {
        let us = max(0, us)
        if us < 1000 { return "\(us) us" }
        if us < 1_000_000 { return "\(us / 1000).\(us % 1000 / 100) ms" }
        let cs = us / 10_000
        return "\(cs / 100).\(cs % 100 < 10 ? "0" : "")\(cs % 100) s"
    }
}
