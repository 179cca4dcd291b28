// Edges on a GPIO input as an event source (a pulse output of a flow meter or a rain gauge, a door
// contact): each edge becomes a reading with the kernel's timestamp of the edge and a running count
// of the edges read. The kernel keeps 16 events per line: edges that overflow it are lost there, and
// libgpiod 1.6 does not say so (the count cannot show it); its timestamps are CLOCK_MONOTONIC on
// kernels from 5.7, CLOCK_REALTIME before. The line is requested at start (not when the board is
// checked), and again after a failure.

import EdgelogHAL

public final class GPIOEdgeSource: EventSensor {
    public enum Edges: String, Sendable, CaseIterable {
        case rising, falling, both
    }

    public let location: String
    private let open: () throws(HardwareError) -> GPIOInput
    private let edges: Edges
    private var line: GPIOInput?
    private var count: Int64 = 0

    /// `open` requests the line (LinuxGPIOInput over libgpiod, or a simulated line).
    public init(location: String, edges: Edges = .rising, open: @escaping () throws(HardwareError) -> GPIOInput) {
        self.location = location
        self.edges = edges
        self.open = open
    }

    public func start() throws(HardwareError) {
        line = nil
        line = try open()
    }

    public func next(timeoutMs: Int) throws(HardwareError) -> EventOutcome? {
        guard let line else { throw HardwareError(.vanished, device: location, detail: "the line is not requested") }
        do {
            guard let edge = try line.waitEdge(timeoutMs: timeoutMs) else { return nil }
            switch edges {
            case .rising where !edge.rising, .falling where edge.rising: return nil
            default: break
            }
            count += 1
            return .reading(Reading([("edge", .text(edge.rising ? "rising" : "falling")),
                                     ("kernel_ns", .int(Int64(clamping: edge.timestampNs))), ("count", .int(count))]))
        } catch {
            // Requested again before the next wait.
            self.line = nil
            throw error
        }
    }
}
