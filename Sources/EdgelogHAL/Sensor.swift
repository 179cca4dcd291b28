// A driver is one small type over a bus protocol (Sources/EdgelogSensors). The scheduler knows only
// these two shapes: a polled sensor it samples at a period, and an event source that delivers
// readings as they arrive (a serial instrument that prints lines, GPIO edges).

/// A sensor sampled at a period.
public protocol PolledSensor: AnyObject {
    /// What a record calls this device: "/dev/i2c-1 0x76", "/dev/ttyS1 slave 3".
    var location: String { get }
    /// Checks the part (chip id) and configures it. Called before the first read and again
    /// before the first read after a failure, so a replaced or power-cycled device is set up anew.
    func start() throws(HardwareError)
    /// One sample. Blocks at most for the conversion time the datasheet gives plus the bus timeout.
    func read() throws(HardwareError) -> Reading
}

/// A source that delivers readings when they arrive. `next` waits at most `timeoutMs`; nil: none yet.
/// Problems with one message (a bad checksum) are returned as `.rejected`, so the source goes on.
public protocol EventSensor: AnyObject {
    var location: String { get }
    func start() throws(HardwareError)
    func next(timeoutMs: Int) throws(HardwareError) -> EventOutcome?
}

public enum EventOutcome: Equatable, Sendable {
    case reading(Reading)
    /// A message that was received but not valid (bad checksum, garbage): recorded, not committed.
    case rejected(HardwareError)
}
