// The time path's view of a Linux system: CLOCK_REALTIME and CLOCK_BOOTTIME (vDSO, no syscall),
// adjtimex for the sync status, the RTC through sysfs, the kernel's boot id.

import EdgelogCore
import EdgelogTimebase
import Glibc

public final class LinuxTimeSource: TimeSource, @unchecked Sendable {
    /// The RTC as the kernel exposes it (seconds since 1970); absent on boards and VMs without one.
    public let rtcPath: String

    public init(rtcPath: String = "/sys/class/rtc/rtc0/since_epoch") {
        self.rtcPath = rtcPath
    }

    public func now() -> (wallNs: Int64, bootNs: Int64) {
        (Sys.clock(CLOCK_REALTIME), Sys.clock(CLOCK_BOOTTIME))
    }

    public func sync() -> SyncState {
        switch Sys.clockSync() {
        case .success(let s): SyncState(synchronized: s.synchronized, maxErrorUs: s.maxErrorUs, estErrorUs: s.estErrorUs)
        case .failure: .unknown
        }
    }

    public func rtcWallNs() -> Int64? {
        guard let text = try? LocalFile.read(rtcPath, limit: 64).bytes else { return nil }
        guard let seconds = Int64(String(decoding: text.filter { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self)) else { return nil }
        return seconds * 1_000_000_000
    }

    /// The kernel's boot id (16 bytes), or nil where /proc does not give it.
    public static func bootID() -> [UInt8]? {
        guard let text = try? LocalFile.read("/proc/sys/kernel/random/boot_id", limit: 64).bytes else { return nil }
        // A UUID with dashes and a newline: the 32 hex digits are the id.
        guard let id = Hex.decode(String(decoding: text.filter { $0 != UInt8(ascii: "-") && $0 != 0x0A }, as: UTF8.self)),
              id.count == 16 else { return nil }
        return id
    }

    /// The modification time of the running executable, as the earliest believable wall time.
    public static func executableTimeNs() -> Int64 {
        Sys.modificationTimeNs("/proc/self/exe") ?? 0
    }
}
