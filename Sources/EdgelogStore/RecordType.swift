// Record types (docs/FORMAT.md section 4). Data records carry a source's JSON object; the others are
// the engine's evidence that something happened (a loss, a tear, a recovery), so no loss is silent.

public enum RecordType: UInt16, Sendable, CaseIterable {
    case data = 1
    case gap = 2
    case incomplete = 3
    case drop = 4
    case recovery = 5
    case boot = 6
    case clockStep = 7
    case keyRotation = 8
    case timeState = 9
    // Ingress evidence (FORMAT.md section 4): written under the source they concern, with its seq.
    case sourceFault = 10
    case sourceRecovered = 11
    case backpressure = 12
    case decimation = 13
    case ingressDrop = 14
    case pollOverrun = 15
    case rejectedInput = 16
    // Power path (FORMAT.md section 4): engine evidence under the source `edgelog`.
    case brownout = 17
    case powerRestored = 18
    case powerBudget = 19
    case brownoutLoop = 20

    public var name: String {
        switch self {
        case .data: "data"
        case .gap: "gap"
        case .incomplete: "incomplete"
        case .drop: "drop"
        case .recovery: "recovery"
        case .boot: "boot"
        case .clockStep: "clock_step"
        case .keyRotation: "key_rotation"
        case .timeState: "time_state"
        case .sourceFault: "source_fault"
        case .sourceRecovered: "source_recovered"
        case .backpressure: "backpressure"
        case .decimation: "decimation"
        case .ingressDrop: "ingress_drop"
        case .pollOverrun: "poll_overrun"
        case .rejectedInput: "rejected_input"
        case .brownout: "brownout"
        case .powerRestored: "power_restored"
        case .powerBudget: "power_budget"
        case .brownoutLoop: "brownout_loop"
        }
    }

    /// The name export prints: the type's name, or its number when this version does not know it.
    public static func exportName(_ raw: UInt16) -> String {
        RecordType(rawValue: raw)?.name ?? String(raw)
    }
}

/// The time fields every record carries, taken at capture.
public struct CaptureTime: Sendable, Equatable {
    /// maxerror_us / esterror_us of a record for which no sync sample was taken.
    public static let notSampled = UInt32.max

    public var wallNs: Int64
    public var bootNs: Int64
    /// Time quality at capture (FORMAT.md 3.2, time_flags).
    public var flags: TimeFlags
    /// The kernel's maximum and estimated error (µs) at the sync sample in effect, or notSampled.
    public var maxErrorUs: UInt32
    public var estErrorUs: UInt32
    /// Wall time of the last sample at which the kernel said it was synchronized; 0: none known.
    public var lastSyncNs: Int64

    public init(wallNs: Int64, bootNs: Int64, flags: TimeFlags = [], maxErrorUs: UInt32 = CaptureTime.notSampled,
                estErrorUs: UInt32 = CaptureTime.notSampled, lastSyncNs: Int64 = 0) {
        self.wallNs = wallNs
        self.bootNs = bootNs
        self.flags = flags
        self.maxErrorUs = maxErrorUs
        self.estErrorUs = estErrorUs
        self.lastSyncNs = lastSyncNs
    }

    /// A kernel error in µs as a record stores it: negative as 0, saturated below notSampled.
    public static func storedError(_ us: Int64) -> UInt32 {
        UInt32(clamping: min(max(us, 0), Int64(notSampled) - 1))
    }
}

/// The record's time_flags.
public struct TimeFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// The kernel said its clock was synchronized.
    public static let synced = TimeFlags(rawValue: 1)
    /// wall_ns is not to be trusted (unsynchronized past the bound, or an obviously reset date).
    public static let wallUntrusted = TimeFlags(rawValue: 2)
    /// The first record captured after a detected wall-clock step.
    public static let afterStep = TimeFlags(rawValue: 4)
}
