// GPIO lines for tests and simulated boards: an input whose edges a test injects (with the kernel
// timestamps it chooses), and an output that remembers every level it was set to.

import Synchronization

public final class SimulatedGPIOInput: GPIOInput, Sendable {
    public let name: String
    private let state: Mutex<(level: Bool, edges: [GPIOEdge], fault: HardwareError.Kind?)>
    private let sleep: @Sendable (Int) -> Void

    /// `sleep(ms)` stands for waiting (the runtime passes a real sleep; a test may pass none).
    public init(name: String, level: Bool = false, sleep: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.name = name
        self.state = Mutex((level, [], nil))
        self.sleep = sleep
    }

    /// The line changes: the next waitEdge returns this edge.
    public func inject(rising: Bool, timestampNs: UInt64) {
        state.withLock {
            $0.level = rising
            $0.edges.append(GPIOEdge(rising: rising, timestampNs: timestampNs))
        }
    }

    /// Every call fails with `kind` until cleared (nil): a chip that went away.
    public func fail(with kind: HardwareError.Kind?) { state.withLock { $0.fault = kind } }

    private func check() throws(HardwareError) {
        if let kind = state.withLock({ $0.fault }) { throw HardwareError(kind, device: "sim-gpio", address: "line \(name)", detail: "injected fault") }
    }

    public func value() throws(HardwareError) -> Bool {
        try check()
        return state.withLock { $0.level }
    }

    public func waitEdge(timeoutMs: Int) throws(HardwareError) -> GPIOEdge? {
        var waited = 0
        while true {
            try check()
            let edge: GPIOEdge? = state.withLock { $0.edges.isEmpty ? nil : $0.edges.removeFirst() }
            if let edge { return edge }
            if waited >= timeoutMs { return nil }
            let step = min(5, timeoutMs - waited)
            sleep(step)
            waited += max(step, 1)
        }
    }
}

public final class SimulatedGPIOOutput: GPIOOutput, Sendable {
    public let name: String
    private let levels = Mutex<[Bool]>([])
    public init(name: String) { self.name = name }
    public func set(_ value: Bool) throws(HardwareError) { levels.withLock { $0.append(value) } }
    /// Every level set so far, in order.
    public var history: [Bool] { levels.withLock { $0 } }
}
