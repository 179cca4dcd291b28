// What `board check`, `board list` and `run --board --json` print, and where the shipped boards are.
// JSON is written by FoundationEssentials' encoder from Codable reports, then every non-ASCII
// character is escaped so no reader splits a line or reorders text on a board file's strings.

import EdgelogCore
import EdgelogIngress
import EdgelogLinux
import EdgelogRuntime
import FoundationEssentials
import Logging

enum BoardSummaryJSON {
    struct SensorReport: Codable {
        var name: String
        var driver: String
        var bus: String
        var address: String?
        var period_ms: Int?
        var overload: String
        var queue: Int
    }

    struct CheckReport: Codable {
        var file: String
        var board: String
        var valid: Bool
        var buses: Int
        var sensors: [SensorReport]
    }

    struct ErrorReport: Codable {
        var valid: Bool
        var error: String
        var file: String?
        var line: Int?
        var key: String?
    }

    struct SourceReport: Codable {
        var name: String
        var location: String
        var reads: UInt64
        var failures: UInt64
        var failing: Int
        var rejected: UInt64
        var last_error: String?
    }

    /// One safe-commit window (CLOCK_MONOTONIC ns, as the brownout record's).
    struct WindowReport: Codable {
        var trigger: String
        var input: String
        var detected_mono_ns: Int64
        var detected_by: String
        var frozen_mono_ns: Int64
        var in_flight_committed_mono_ns: Int64?
        var clean_mono_ns: Int64
        var edge_to_freeze_us: Int64
        var edge_to_clean_us: Int64
        var committed_records: Int
        var commits: Int
    }

    struct RunReport: Codable {
        /// Every record committed: readings, ingress evidence, time records.
        var records: UInt64
        /// Good reads of the sources (data records).
        var readings: UInt64
        var commits: UInt64
        var dropped: UInt64
        var poll_late_p50_us: Int64
        var poll_late_p99_us: Int64
        var sources: [SourceReport]
        /// Readings refused while ingress was frozen or holding for a power failure.
        var refused: UInt64
        var power_windows: [WindowReport]
    }

    static func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "{}" }
        return asciiOnly(String(decoding: data, as: UTF8.self))
    }

    /// Non-ASCII can only stand inside JSON strings: as \uXXXX it reads the same and shows plainly.
    static func asciiOnly(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x80 { out.unicodeScalars.append(scalar) } else { appendJSONEscape(scalar, to: &out) }
        }
        return out
    }

    static func sensors(_ board: Board) -> [SensorReport] {
        board.sensors.map {
            SensorReport(name: $0.name, driver: $0.driver, bus: $0.bus, address: $0.settings.busAddress,
                         period_ms: $0.periodMs > 0 ? $0.periodMs : nil, overload: $0.policy.name, queue: $0.queue)
        }
    }

    static func check(_ board: Board) -> String {
        encode(CheckReport(file: board.file, board: board.name, valid: true, buses: board.buses.count, sensors: sensors(board)))
    }

    static func error(_ error: Error) -> String {
        if let e = error as? BoardError {
            return encode(ErrorReport(valid: false, error: e.why, file: e.file, line: e.line, key: e.key))
        }
        return encode(ErrorReport(valid: false, error: "\(error)"))
    }

    static func text(_ s: BoardRunSummary) -> String {
        encode(RunReport(records: s.records, readings: s.sources.reduce(0) { $0 + $1.reads }, commits: s.commits, dropped: s.dropped, poll_late_p50_us: s.latenessP50Ns / 1000,
                         poll_late_p99_us: s.latenessP99Ns / 1000,
                         sources: s.sources.map { SourceReport(name: $0.name, location: $0.location, reads: $0.reads, failures: $0.failures,
                                                               failing: $0.failing, rejected: $0.rejected, last_error: $0.lastError) },
                         refused: s.refused,
                         power_windows: s.powerWindows.map {
                             WindowReport(trigger: $0.trigger.rawValue, input: $0.input, detected_mono_ns: $0.detectedNs, detected_by: $0.detectedBy,
                                          frozen_mono_ns: $0.window.frozenNs, in_flight_committed_mono_ns: $0.window.inFlightDoneNs,
                                          clean_mono_ns: $0.window.cleanNs, edge_to_freeze_us: $0.edgeToFreezeNs / 1000,
                                          edge_to_clean_us: $0.edgeToCleanNs / 1000, committed_records: $0.window.committedRecords,
                                          commits: $0.window.commits)
                         }))
    }
}

enum ShippedBoards {
    /// board/ of the source tree this executable was built in (.build/<config>/edgelog), else
    /// /usr/share/edgelog/board.
    static func directory() -> String {
        if let exe = LocalFile.resolvedPath("/proc/self/exe") {
            var dir = LocalFile.parent(of: exe)
            for _ in 0..<4 {
                if LocalFile.exists(dir + "/board/sim.yaml") { return dir + "/board" }
                dir = LocalFile.parent(of: dir)
            }
        }
        return "/usr/share/edgelog/board"
    }

    static func list(_ directory: String) -> [(String, Result<Board, BoardError>)] {
        LocalFile.list(directory).filter { $0.hasSuffix(".yaml") }.sorted().map { name in
            let path = directory + "/" + name
            do throws(BoardError) { return (path, .success(try Board.load(path))) } catch { return (path, .failure(error)) }
        }
    }
}

enum Logs {
    /// One line per event on stderr, with the event's metadata as key=value pairs; messages and
    /// metadata quote board files and devices, so they are made terminal-safe first.
    static func bootstrap() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return SafeLogHandler(inner: handler)
        }
    }

    static func logger() -> Logger { Logger(label: "edgelog") }
}

/// Escapes every byte outside printable ASCII in a log line's message and metadata values.
struct SafeLogHandler: LogHandler {
    var inner: StreamLogHandler

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var safe = event
        safe.message = "\(terminalSafe(event.message.description))"
        var metadata = event.metadata?.mapValues { Logger.Metadata.Value.string(terminalSafe("\($0)")) }
        // An error's text may quote a device or a file too: it goes out escaped, as metadata.
        if let error = event.error {
            let key = metadata?["error"] == nil ? "error" : "log_error"
            metadata = (metadata ?? [:]).merging([key: .string(terminalSafe("\(error)"))]) { old, _ in old }
            safe.error = nil
        }
        safe.metadata = metadata
        inner.log(event: safe)
    }
}

/// What `board check` says about the power-fail inputs and the LEDs.
enum BoardPowerText {
    static func lines(_ board: Board) -> [String] {
        var out: [String] = []
        if let p = board.powerFail {
            var inputs: [String] = []
            if let g = p.gpio { inputs.append("GPIO \(g.chip)/\(g.line) active \(g.activeHigh ? "high" : "low")\(g.debounceMs > 0 ? ", debounce \(g.debounceMs) ms" : "")") }
            if let k = p.inputKey { inputs.append("\(k.keyName) from \"\(k.device)\"") }
            if p.sigpwr { inputs.append("SIGPWR (\(p.powerStatusFile))") }
            out.append("power fail: hold-up \(p.holdUpMs) ms + \(p.marginPct)% margin, resume after \(p.resumeAfterMs) ms good; inputs: "
                + (inputs.isEmpty ? "none" : inputs.joined(separator: ", ")))
            out.append("brownout loop: \(p.loopResets) unexpected resets within \(p.loopWithinS) s")
        } else {
            out.append("power fail: no power_fail section: SIGPWR only, no hold-up budget")
        }
        var specs: [StatusLEDSpec] = []
        for led in board.leds {
            out.append("LED \(led.role): " + (led.kind == "gpio" ? "GPIO \(led.chip ?? "")/\(led.name)" : "/sys/class/leds/\(led.name)")
                + (led.colour.map { " (\($0))" } ?? ""))
            if let role = LEDRole(rawValue: led.role) { specs.append(StatusLEDSpec(role: role, colour: led.colour.flatMap(LEDColour.init(rawValue:)))) }
        }
        if board.leds.isEmpty { out.append("LEDs: none (edgelog status still tells the state)") }
        for warning in LEDPlan.warnings(specs) { out.append("warning: \(warning)") }
        return out
    }
}
