// Named points where the process-kill tests end the writer with SIGKILL (docs/DESIGN.md section
// 12, proof): EDGELOG_KILL_AT=NAME makes the process kill itself the first time it reaches NAME.
// Unset (always, outside the tests), reaching a point costs one comparison with nil.

#if canImport(Glibc)
import Glibc
#endif

public enum KillPoint {
    private static let target: String? = getenv("EDGELOG_KILL_AT").map { String(cString: $0) }

    public static func reach(_ name: StaticString) {
        guard let target else { return }
        if target == name.description { kill(getpid(), SIGKILL) }
    }
}
