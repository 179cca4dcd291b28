// What a source does when the writer cannot keep up (seed H2-3: backpressure, declared decimation,
// or drops with drop_cnt and reason_code). Each is declared per source in the board file and each
// leaves a record when it starts and when it ends, so no degradation is silent.

public enum OverloadPolicy: Equatable, Sendable {
    /// Stop polling (or stop reading an event source) while the queue is above its high-water mark;
    /// `backpressure` records carry bp_state "on" and "off". The kernel or the peer holds the rest.
    case backpressure
    /// Above the high-water mark keep one reading in `factor`; `decimation` records declare the
    /// factor and the window. If the queue fills anyway, readings are dropped and counted.
    case decimate(factor: Int)
    /// Keep polling; readings that find the queue full are dropped and counted (`ingress_drop`).
    case drop

    public var name: String {
        switch self {
        case .backpressure: "backpressure"
        case .decimate: "decimate"
        case .drop: "drop"
        }
    }
}

/// The queue settings of one source.
public struct QueueLimits: Equatable, Sendable {
    /// Readings of this source waiting for the writer, at most.
    public var capacity: Int
    public init(capacity: Int = 64) { self.capacity = min(max(capacity, 4), 1 << 20) }
    /// Degradation starts at three quarters full and ends at one quarter.
    public var highWater: Int { capacity * 3 / 4 }
    public var lowWater: Int { capacity / 4 }
}
