import EdgelogStore

// The scheduler's notion of time: the monotonic clock it polls by. The runtime passes the kernel's
// CLOCK_MONOTONIC; tests can pass their own.

public protocol IngressClock: Sendable {
    func nowNs() -> Int64
}

/// CLOCK_MONOTONIC, as the commit pipeline's waits use it.
public struct MonotonicClock: IngressClock {
    public init() {}
    public func nowNs() -> Int64 { Monitor.monotonicNs() }
}
