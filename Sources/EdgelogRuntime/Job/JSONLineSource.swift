// The `stdin` source of a board: JSON lines from standard input, as `edgelog ingest` takes them,
// through the same stamping queue as the sensors (one pipeline; stdin is one source kind). Each line
// must be one JSON object without control characters; it is committed byte for byte. Other lines
// become rejected_input records naming their line number. At end of input the source stays quiet.

import EdgelogCore
import EdgelogHAL
import EdgelogLinux
import EdgelogSensors

final class JSONLineSource: EventSensor {
    let location = "stdin"
    private let port: StandardInputPort
    private var framer: LineFramer
    private var pending: [EventOutcome] = []
    private var lineNumber = 0
    private var flushed = false
    private let sleep: SleepMilliseconds

    init(port: StandardInputPort, maxLine: Int = 1 << 20, sleep: @escaping SleepMilliseconds) {
        self.port = port
        self.framer = LineFramer(maxLength: maxLine)
        self.sleep = sleep
    }

    func start() throws(HardwareError) {}

    func next(timeoutMs: Int) throws(HardwareError) -> EventOutcome? {
        if pending.isEmpty {
            var bytes = try port.read(max: 65536, timeoutMs: timeoutMs)
            if port.ended {
                if flushed {
                    sleep(timeoutMs)
                    return nil
                }
                // A last line without its newline is still a line.
                flushed = true
                bytes.append(0x0A)
            }
            for event in framer.push(bytes) {
                lineNumber += 1
                switch event {
                case .overlong(let n):
                    pending.append(.rejected(HardwareError(.badFrame, device: location, detail: "line \(lineNumber): \(n) bytes, longer than any record can be")))
                case .line(let line):
                    pending.append(check(line))
                }
            }
        }
        return pending.isEmpty ? nil : pending.removeFirst()
    }

    private func check(_ line: [UInt8]) -> EventOutcome {
        line.withUnsafeBytes { raw -> EventOutcome in
            let object: Range<Int>
            do { object = try JSONObjectValidator.validate(raw) } catch {
                return .rejected(HardwareError(.badFrame, device: location, detail: "line \(lineNumber): not a JSON object: \(error)"))
            }
            if let at = JSONObjectValidator.controlCharacter(in: UnsafeRawBufferPointer(rebasing: raw[object])) {
                return .rejected(HardwareError(.badFrame, device: location, detail: "line \(lineNumber): control character at byte \(object.lowerBound + at + 1)"))
            }
            return .reading(Reading(rawJSONObject: Array(raw[object])))
        }
    }
}
