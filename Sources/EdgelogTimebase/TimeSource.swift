// Where time comes from: the kernel's wall and boot clocks, its sync status, the RTC. Linux reads
// them in EdgelogLinux (LinuxTimeSource); tests use a controllable source (ManualTimeSource).

/// The kernel's view of its clock discipline (adjtimex).
public struct SyncState: Equatable, Sendable {
    public var synchronized: Bool
    /// The kernel's maximum and estimated error, in microseconds.
    public var maxErrorUs: Int64
    public var estErrorUs: Int64

    public init(synchronized: Bool, maxErrorUs: Int64, estErrorUs: Int64) {
        self.synchronized = synchronized
        self.maxErrorUs = maxErrorUs
        self.estErrorUs = estErrorUs
    }

    public static let unknown = SyncState(synchronized: false, maxErrorUs: 16_000_000, estErrorUs: 16_000_000)
}

public protocol TimeSource: AnyObject {
    /// CLOCK_REALTIME and CLOCK_BOOTTIME, in ns.
    func now() -> (wallNs: Int64, bootNs: Int64)
    /// The kernel's sync status now (a syscall: the timebase samples it, not every record).
    func sync() -> SyncState
    /// The RTC's time in ns since 1970, or nil when the system has no readable RTC.
    func rtcWallNs() -> Int64?
}

/// A clock a test moves by hand: steps, slews, resets, sync changes, an RTC or none.
public final class ManualTimeSource: TimeSource, @unchecked Sendable {
    public var wallNs: Int64
    public var bootNs: Int64
    public var state: SyncState
    public var rtcNs: Int64?
    public private(set) var syncCalls = 0

    public init(wallNs: Int64, bootNs: Int64 = 10_000_000_000, state: SyncState = .unknown, rtcNs: Int64? = nil) {
        self.wallNs = wallNs
        self.bootNs = bootNs
        self.state = state
        self.rtcNs = rtcNs
    }

    /// Both clocks run on by `ns` (no step).
    public func advance(_ ns: Int64) {
        wallNs += ns
        bootNs += ns
        if let rtc = rtcNs { rtcNs = rtc + ns }
    }

    /// The wall clock alone jumps by `ns` (negative: backward).
    public func step(_ ns: Int64) { wallNs += ns }

    public func now() -> (wallNs: Int64, bootNs: Int64) { (wallNs, bootNs) }
    public func sync() -> SyncState {
        syncCalls += 1
        return state
    }
    public func rtcWallNs() -> Int64? { rtcNs }
}
