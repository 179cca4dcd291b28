// Environment variables for test switches (replay seeds, soak counts), without Foundation.

#if canImport(Glibc)
import Glibc
#endif

public enum Environment {
    public static func get(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}
