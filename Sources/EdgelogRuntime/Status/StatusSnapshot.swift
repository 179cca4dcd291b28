// One answer of the status socket, and what `edgelog status --json` prints (docs/CLI.md): a
// Codable struct written by FoundationEssentials' JSON encoder (keys sorted, non-ASCII escaped) and
// read back by its decoder. What the reader gets from a socket is another process's bytes: it is
// decoded into checked types and then checked for sense before anything of it is shown.

import EdgelogCore
import FoundationEssentials

public struct StatusSnapshot: Codable, Sendable, Equatable {
    /// The wire format's version (`status_version`).
    public static let currentVersion = 1

    /// Where the snapshot comes from.
    public enum Origin: String, Codable, Sendable {
        /// The running job answered on its socket.
        case process
        /// No job answered: read from the store's metadata (numbers labelled by what checks them).
        case store
        /// No job answered and no store was read.
        case none
    }

    public enum State: String, Codable, Sendable {
        /// Running, no condition active.
        case ok
        /// Running with at least one condition active.
        case condition
        /// No job runs on this state directory.
        case notRunning = "not_running"
        /// A job holds the socket but gave no usable answer.
        case noAnswer = "no_answer"
    }

    public var statusVersion: Int
    public var origin: Origin
    public var state: State
    /// NE 107 letter of the most urgent active condition (absent when none).
    public var category: String?
    /// Active conditions, most urgent first.
    public var conditions: [ConditionReport]
    public var pid: Int32?
    public var startedWallNs: Int64?
    public var uptimeMs: Int64?
    public var board: String?
    public var phase: StatusFacts.Phase?
    public var power: PowerReport?
    public var store: StoreReport?
    public var sources: [SourceFacts]?
    public var timeSynced: Bool?
    public var uplinkBacklogSegments: UInt64?
    public var leds: [LEDReport]?
    /// A sentence about where the numbers come from (store reads) or why there are none.
    public var note: String?

    public init(origin: Origin, state: State, conditions: [ConditionReport] = []) {
        statusVersion = Self.currentVersion
        self.origin = origin
        self.state = state
        self.conditions = conditions
        category = conditions.first.map { $0.condition.category.letter }
    }

    enum CodingKeys: String, CodingKey {
        case statusVersion = "status_version"
        case origin, state, category, conditions, pid
        case startedWallNs = "started_wall_ns"
        case uptimeMs = "uptime_ms"
        case board, phase, power, store, sources
        case timeSynced = "time_synced"
        case uplinkBacklogSegments = "uplink_backlog_segments"
        case leds, note
    }

    /// The most urgent active condition's category.
    public var topCategory: NE107Category? { conditions.map(\.condition.category).min() }
}

public struct ConditionReport: Codable, Sendable, Equatable {
    public var condition: StatusCondition
    /// NE 107 letter, for readers without the table.
    public var category: String
    /// The blink code, "3-2".
    public var ledCode: String
    public var detail: String
    public var activeForMs: Int64

    public init(condition: StatusCondition, detail: String, activeForMs: Int64) {
        self.condition = condition
        category = condition.category.letter
        ledCode = condition.blinkCode.description
        self.detail = detail
        self.activeForMs = activeForMs
    }

    enum CodingKeys: String, CodingKey {
        case condition, category
        case ledCode = "led_code"
        case detail
        case activeForMs = "active_for_ms"
    }
}

public struct PowerReport: Codable, Sendable, Equatable {
    public var state: StatusFacts.PowerState?
    public var boEvent: UInt32?
    public var unexpRst: UInt32?
    public var holdUp: HoldUpStatus?
    public var lastSafeCommit: SafeCommitWindow?

    public init(state: StatusFacts.PowerState? = nil, boEvent: UInt32? = nil, unexpRst: UInt32? = nil,
                holdUp: HoldUpStatus? = nil, lastSafeCommit: SafeCommitWindow? = nil) {
        self.state = state
        self.boEvent = boEvent
        self.unexpRst = unexpRst
        self.holdUp = holdUp
        self.lastSafeCommit = lastSafeCommit
    }

    enum CodingKeys: String, CodingKey {
        case state
        case boEvent = "bo_event"
        case unexpRst = "unexp_rst"
        case holdUp = "hold_up"
        case lastSafeCommit = "last_safe_commit"
    }

    var isEmpty: Bool { self == PowerReport() }
}

public struct StoreReport: Codable, Sendable, Equatable {
    public var path: String?
    public var headSegmentID: UInt64?
    public var recordsTotal: UInt64?
    /// clean_flag (never sealed).
    public var clean: Bool?
    public var lastCommitID: UInt64?
    public var lastCommitAgeMs: Int64?
    /// Store reads: how the metadata compares with the head segment's seal.
    public var metadataCheck: String?
    /// Store reads: fields shown that no seal vouches for.
    public var unverified: [String]?

    public init(path: String? = nil) { self.path = path }

    enum CodingKeys: String, CodingKey {
        case path
        case headSegmentID = "head_segment_id"
        case recordsTotal = "records_total"
        case clean
        case lastCommitID = "last_commit_id"
        case lastCommitAgeMs = "last_commit_age_ms"
        case metadataCheck = "metadata_check"
        case unverified
    }
}

public struct LEDReport: Codable, Sendable, Equatable {
    public var role: LEDRole
    public var colour: LEDColour?
    public var name: String
    /// What it shows now, in words ("heartbeat", "code 3-2 (3 long, 2 short)", "steady on").
    public var shows: String
    /// The blink code shown, if any.
    public var code: String?
    /// "software" (the LED thread) or "kernel" (the pattern trigger).
    public var mode: String
    public var writeErrors: UInt64

    public init(role: LEDRole, colour: LEDColour?, name: String, shows: String, code: String?, mode: String, writeErrors: UInt64) {
        self.role = role
        self.colour = colour
        self.name = name
        self.shows = shows
        self.code = code
        self.mode = mode
        self.writeErrors = writeErrors
    }

    enum CodingKeys: String, CodingKey {
        case role, colour, name, shows, code, mode
        case writeErrors = "write_errors"
    }
}

/// Why bytes from a status socket are not a snapshot this edgelog can show.
public struct StatusAnswerError: Error, Equatable, Sendable, CustomStringConvertible {
    public var why: String
    public var description: String { "the answer on the status socket is not a status snapshot: \(why)" }
}

public enum StatusJSON {
    /// One line of JSON, keys sorted, every character outside ASCII escaped.
    public static func encode(_ snapshot: StatusSnapshot) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(snapshot) else { return "{}" }
        var out = ""
        for scalar in String(decoding: data, as: UTF8.self).unicodeScalars {
            if scalar.value < 0x80 { out.unicodeScalars.append(scalar) } else { appendJSONEscape(scalar, to: &out) }
        }
        return out
    }

    /// Decodes and checks an answer read from a socket.
    public static func decode(_ bytes: [UInt8]) throws(StatusAnswerError) -> StatusSnapshot {
        guard !bytes.isEmpty else { throw StatusAnswerError(why: "it is empty") }
        let snapshot: StatusSnapshot
        do { snapshot = try JSONDecoder().decode(StatusSnapshot.self, from: Data(bytes)) } catch {
            throw StatusAnswerError(why: "not the JSON of a snapshot (\(Self.summary(error)))")
        }
        try check(snapshot)
        return snapshot
    }

    static func summary(_ error: Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)".prefix(200).description }
        switch e {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : path + ": ") + c.debugDescription.prefix(160)
        @unknown default:
            return "undecodable"
        }
    }

    /// The numbers and names of a snapshot make sense together.
    public static func check(_ s: StatusSnapshot) throws(StatusAnswerError) {
        func fail(_ why: String) -> StatusAnswerError { StatusAnswerError(why: why) }
        guard s.statusVersion == StatusSnapshot.currentVersion else {
            throw fail("status_version \(s.statusVersion); this edgelog reads version \(StatusSnapshot.currentVersion)")
        }
        guard s.conditions.count <= StatusCondition.allCases.count,
              Set(s.conditions.map(\.condition)).count == s.conditions.count else { throw fail("a condition is listed twice") }
        for c in s.conditions {
            guard c.category == c.condition.category.letter, c.ledCode == c.condition.blinkCode.description else {
                throw fail("\(c.condition.rawValue) has category \(c.category) and code \(c.ledCode)")
            }
            guard c.activeForMs >= 0 else { throw fail("\(c.condition.rawValue) is active for a negative time") }
        }
        guard s.conditions.map(\.condition) == s.conditions.map(\.condition).sorted() else { throw fail("conditions out of priority order") }
        if s.origin == .process {
            guard (s.state == .ok) == s.conditions.isEmpty, s.state == .ok || s.state == .condition else {
                throw fail("state \(s.state.rawValue) with \(s.conditions.count) condition(s)")
            }
        }
        guard s.category == s.topCategory?.letter else { throw fail("category \(s.category ?? "none") is not that of the first condition") }
        if let pid = s.pid, pid <= 0 || pid > 4_194_304 { throw fail("pid \(pid)") }
        if let up = s.uptimeMs, up < 0 { throw fail("negative uptime") }
        if let sources = s.sources {
            guard sources.count <= 256, sources.allSatisfy({ $0.failing >= 0 }) else { throw fail("implausible sources") }
        }
        if let leds = s.leds { guard leds.count <= LEDRole.allCases.count else { throw fail("\(leds.count) LEDs") } }
        if let age = s.store?.lastCommitAgeMs, age < 0 { throw fail("negative commit age") }
        let w = s.power?.lastSafeCommit
        for v in [w?.edgeToFreezeUs, w?.edgeToCleanUs, w?.agoMs, s.power?.holdUp?.holdUpMs, s.power?.holdUp?.worstWindowUs] {
            if let v, v < 0 { throw fail("a negative duration in power") }
        }
        for v in [w?.committedRecords, w?.commits, s.power?.holdUp?.marginPct, s.power?.holdUp?.fillLimitBytes] {
            if let v, v < 0 { throw fail("a negative count in power") }
        }
    }
}
