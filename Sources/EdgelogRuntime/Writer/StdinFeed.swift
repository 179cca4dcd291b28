// `ingest`: JSON lines from standard input, each a record of one source, committed through the
// pipeline with an acknowledgement per durable commit (printed by the caller's onCommit). Lines
// that are not JSON objects, or hold control characters, are reported with their line number and
// skipped; nothing else stops.

import EdgelogCore
import EdgelogLinux
import EdgelogStore
import EdgelogTimebase

public struct StdinSummary: Sendable {
    public var lines = 0
    public var accepted = 0
    public var rejected = 0
}

extension WriterJob {
    /// Commits lines from `fd` until end of input, a stop signal or a refusal of the store.
    public func feedLines(fd: Int32 = 0, source: String) -> (StdinSummary, InputError?) {
        var summary = StdinSummary()
        var before: [TimeRecord] = []
        let input = LineInput(fd: fd)
        var inputError: InputError?
        do {
            try input.forEach(shouldStop: { StopSignal.isRaised || self.stopError != nil }) { line in
                guard stopError == nil else { return }
                summary.lines += 1
                let lineNumber = summary.lines
                switch line {
                case .tooLong(let n):
                    summary.rejected += 1
                    say("line \(lineNumber): rejected: \(n) bytes is longer than any record can be")
                case .line(let bytes):
                    let object: Range<Int>
                    do { object = try JSONObjectValidator.validate(bytes) } catch {
                        summary.rejected += 1
                        say("line \(lineNumber): rejected: not a JSON object: \(error)")
                        return
                    }
                    if let at = JSONObjectValidator.controlCharacter(in: UnsafeRawBufferPointer(rebasing: bytes[object])) {
                        summary.rejected += 1
                        say("line \(lineNumber): rejected: control character (tab, carriage return or other) at byte \(object.lowerBound + at + 1): use spaces between JSON tokens and escapes inside strings")
                        return
                    }
                    let time = timebase.capture(before: &before)
                    if !before.isEmpty {
                        appendTime(before)
                        before.removeAll(keepingCapacity: true)
                    }
                    switch pipeline.append(source: source, payload: UnsafeRawBufferPointer(rebasing: bytes[object]), time: time) {
                    case .accepted, .dropped:
                        summary.accepted += 1
                        if summary.accepted & 255 == 0 { pipeline.noteTime(timebase.stats) }
                    case .refused(.recordTooLarge(let size, let capacity)):
                        summary.rejected += 1
                        say("line \(lineNumber): rejected: record of \(size) bytes exceeds the segment's \(capacity)")
                    case .frozen, .deferred:
                        // Ingress is frozen for a power failure: counted by the pipeline and in the
                        // window's records; the line is not taken.
                        summary.rejected += 1
                    case .refused(let error):
                        stopError = error
                    }
                }
            }
        } catch {
            inputError = error
        }
        pipeline.noteTime(timebase.stats)
        return (summary, inputError)
    }
}
