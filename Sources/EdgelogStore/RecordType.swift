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
        }
    }

    /// The name export prints: the type's name, or its number when this version does not know it.
    public static func exportName(_ raw: UInt16) -> String {
        RecordType(rawValue: raw)?.name ?? String(raw)
    }
}

/// The time fields every record carries, taken at capture.
public struct CaptureTime: Sendable, Equatable {
    public var wallNs: Int64
    public var bootNs: Int64
    /// Time quality at capture (FORMAT.md 3.2, time_flags).
    public var flags: TimeFlags
    public init(wallNs: Int64, bootNs: Int64, flags: TimeFlags = []) {
        self.wallNs = wallNs
        self.bootNs = bootNs
        self.flags = flags
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
