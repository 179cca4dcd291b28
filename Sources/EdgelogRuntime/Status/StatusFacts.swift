// The facts a running job keeps on its StatusBoard for `edgelog status` (docs/CLI.md): every field is
// optional, so a job fills what it knows and the snapshot leaves the rest out. The job writes them
// with `StatusBoard.update { facts in ... }`; conditions are set apart, with `StatusBoard.set`.

public struct StatusFacts: Sendable, Equatable {
    /// Where the job is in its life.
    public enum Phase: String, Codable, Sendable {
        /// Opening the store, recovering, building the sources.
        case starting
        case running
        /// Stopping the sources, committing what is buffered, closing the store.
        case stopping
    }

    /// The power path's state (GUIDE.md section 3, "Power").
    public enum PowerState: String, Codable, Sendable {
        /// Supply good, acquisition running.
        case running
        /// Brownout edge seen: ingress frozen, the safe-commit window not finished yet.
        case frozen
        /// Safe commit done and the clean mark written: waiting for the supply to die or return.
        case holding
    }

    public var board: String?
    public var phase: Phase?
    /// nil: the board watches no power-fail line.
    public var power: PowerState?
    /// bo_event and unexp_rst as the open store holds them (FORMAT.md section 2).
    public var boEvent: UInt32?
    public var unexpRst: UInt32?
    public var holdUp: HoldUpStatus?
    public var lastSafeCommit: SafeCommitWindow?
    /// Monotonic ns (Monitor.monotonicNs) when that window's failure was detected.
    public var lastSafeCommitMonoNs: Int64?
    public var store: StoreFacts?
    /// Per source; the job may set them with `StatusBoard.updateSources`.
    public var sources: [SourceFacts]?
    /// The kernel's clock discipline says synchronized.
    public var timeSynced: Bool?
    /// Committed segments not yet acknowledged upstream (no uplink yet: nil).
    public var uplinkBacklogSegments: UInt64?

    public init() {}
}

/// Whether the worst safe-commit window fits the supply's hold-up (the power path's HoldUpPlan).
public struct HoldUpStatus: Codable, Sendable, Equatable {
    /// The plan's verdict: "fits", "shrunk" (buffers capped so that it fits) or "cannot_fit".
    public var verdict: String
    /// The board's hold-up time after the brownout edge.
    public var holdUpMs: Int64?
    /// The worst window with the current buffer limit, before the margin, in µs.
    public var worstWindowUs: Int64?
    public var marginPct: Int?
    /// Data bytes a buffer may hold now (less than a segment when shrunk).
    public var fillLimitBytes: Int?

    public init(verdict: String, holdUpMs: Int64? = nil, worstWindowUs: Int64? = nil, marginPct: Int? = nil, fillLimitBytes: Int? = nil) {
        self.verdict = verdict
        self.holdUpMs = holdUpMs
        self.worstWindowUs = worstWindowUs
        self.marginPct = marginPct
        self.fillLimitBytes = fillLimitBytes
    }

    enum CodingKeys: String, CodingKey {
        case verdict
        case holdUpMs = "hold_up_ms"
        case worstWindowUs = "worst_window_us"
        case marginPct = "margin_pct"
        case fillLimitBytes = "fill_limit_bytes"
    }
}

/// The last safe-commit window (the power path's PowerWindowReport), in µs from the failure's detection.
public struct SafeCommitWindow: Codable, Sendable, Equatable {
    /// What saw the failure: "gpio", "input_key" or "sigpwr".
    public var trigger: String?
    /// Which input (a chip/line, an event device).
    public var input: String?
    /// Detection to ingress frozen.
    public var edgeToFreezeUs: Int64?
    /// Detection to the clean mark durable.
    public var edgeToCleanUs: Int64?
    public var committedRecords: Int?
    public var commits: Int?
    /// edge_to_clean within the hold-up time.
    public var withinBudget: Bool?
    /// How long ago the failure was detected (set by the snapshot from `StatusFacts.lastSafeCommitMonoNs`).
    public var agoMs: Int64?

    public init(trigger: String? = nil, input: String? = nil, edgeToFreezeUs: Int64? = nil, edgeToCleanUs: Int64? = nil,
                committedRecords: Int? = nil, commits: Int? = nil, withinBudget: Bool? = nil) {
        self.trigger = trigger
        self.input = input
        self.edgeToFreezeUs = edgeToFreezeUs
        self.edgeToCleanUs = edgeToCleanUs
        self.committedRecords = committedRecords
        self.commits = commits
        self.withinBudget = withinBudget
    }

    enum CodingKeys: String, CodingKey {
        case trigger, input
        case edgeToFreezeUs = "edge_to_freeze_us"
        case edgeToCleanUs = "edge_to_clean_us"
        case committedRecords = "committed_records"
        case commits
        case withinBudget = "within_budget"
        case agoMs = "ago_ms"
    }
}

/// The open store as the job sees it.
public struct StoreFacts: Sendable, Equatable {
    public var path: String
    public var headSegmentID: UInt64?
    public var recordsTotal: UInt64?
    /// clean_flag: false while a writer has the store open.
    public var clean: Bool?
    /// Monotonic time (Monitor.monotonicNs) of the last durable commit; the snapshot gives its age.
    public var lastCommitMonoNs: Int64?
    public var lastCommitID: UInt64?

    public init(path: String, headSegmentID: UInt64? = nil, recordsTotal: UInt64? = nil, clean: Bool? = nil,
                lastCommitMonoNs: Int64? = nil, lastCommitID: UInt64? = nil) {
        self.path = path
        self.headSegmentID = headSegmentID
        self.recordsTotal = recordsTotal
        self.clean = clean
        self.lastCommitMonoNs = lastCommitMonoNs
        self.lastCommitID = lastCommitID
    }
}

/// One source's health.
public struct SourceFacts: Codable, Sendable, Equatable {
    public var name: String
    /// Failures in a row now (0: the last attempt succeeded).
    public var failing: Int
    /// Failures since the job started.
    public var failures: UInt64
    public var lastError: String?

    public init(name: String, failing: Int, failures: UInt64, lastError: String? = nil) {
        self.name = name
        self.failing = failing
        self.failures = failures
        self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey {
        case name, failing, failures
        case lastError = "last_error"
    }
}
