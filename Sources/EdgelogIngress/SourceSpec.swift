// A source as the ingress engine runs it: its record name, the driver behind it, which bus owner
// polls it, and its overload policy. Built by the runtime from a board file (or by a test).

import EdgelogHAL

public struct SourceSpec {
    public enum Kind {
        /// Sampled every `periodNs` by the owner of its bus.
        case polled(PolledSensor, periodNs: Int64)
        /// Delivers readings as they arrive, on a thread of its own.
        case event(EventSensor)
    }

    public var name: String
    public var kind: Kind
    /// Sources with the same bus key are polled in turn by one thread (one owner per bus: a
    /// Modbus line's slaves, an I2C adapter's devices).
    public var bus: String
    public var policy: OverloadPolicy
    public var limits: QueueLimits
    /// A poll that starts later than this after its due time is counted in a poll_overrun record.
    public var jitterBoundNs: Int64
    public var backoff: Backoff

    public init(name: String, kind: Kind, bus: String, policy: OverloadPolicy = .drop, limits: QueueLimits = QueueLimits(),
                jitterBoundNs: Int64 = 5_000_000, backoff: Backoff = Backoff()) {
        self.name = name
        self.kind = kind
        self.bus = bus
        self.policy = policy
        self.limits = limits
        self.jitterBoundNs = jitterBoundNs
        self.backoff = backoff
    }

    public var location: String {
        switch kind {
        case .polled(let sensor, _): sensor.location
        case .event(let sensor): sensor.location
        }
    }
}
