// The kernel's clocks as capture times, and random bytes for store identities.

import EdgelogStore
import Glibc

public enum SystemClock {
    /// CLOCK_REALTIME and CLOCK_BOOTTIME now.
    public static func now() -> CaptureTime {
        CaptureTime(wallNs: Sys.clock(CLOCK_REALTIME), bootNs: Sys.clock(CLOCK_BOOTTIME))
    }

    public static func randomBytes(_ count: Int) -> [UInt8] { Sys.urandom(count) }
}
