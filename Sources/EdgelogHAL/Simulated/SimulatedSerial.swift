// A serial line whose far end is simulated at the byte level: a Modbus slave answering requests from
// its register table, or an instrument printing lines. The driver code under test is the real one.

/// The far end of a simulated line.
public protocol SerialPeer: AnyObject {
    /// Bytes the master wrote; returns what the peer sends back (possibly nothing).
    func received(_ bytes: [UInt8]) -> [UInt8]
    /// Bytes the peer sends on its own when the master waits `elapsedMs` (a talker's next line).
    func spontaneous(elapsedMs: Int) -> [UInt8]
}

public final class SimulatedSerialPort: SerialPort, @unchecked Sendable {
    public let path: String
    public let config: SerialConfig
    private let peer: SerialPeer
    private let sleep: (Int) -> Void
    private var pending: [UInt8] = []
    private var faults: [HardwareError.Kind] = []
    private let lock = SimLock()

    /// `sleep(ms)` stands for time passing on the wire (the runtime passes a real sleep; tests none).
    public init(path: String = "sim-serial", config: SerialConfig = SerialConfig(), peer: SerialPeer, sleep: @escaping (Int) -> Void = { _ in }) {
        self.path = path
        self.config = config
        self.peer = peer
        self.sleep = sleep
    }

    public func inject(_ kind: HardwareError.Kind, count: Int = 1) { lock.locked { faults.append(contentsOf: repeatElement(kind, count: count)) } }

    private func fault() throws(HardwareError) {
        let kind: HardwareError.Kind? = lock.locked { faults.isEmpty ? nil : faults.removeFirst() }
        if let kind { throw HardwareError(kind, device: path, detail: "injected fault") }
    }

    public func write(_ bytes: [UInt8]) throws(HardwareError) {
        try fault()
        let reply = peer.received(bytes)
        lock.locked { pending.append(contentsOf: reply) }
    }

    public func read(max: Int, timeoutMs: Int) throws(HardwareError) -> [UInt8] {
        try fault()
        var chunk: [UInt8] = lock.locked {
            let n = Swift.min(max, pending.count)
            defer { pending.removeFirst(n) }
            return Array(pending.prefix(n))
        }
        if chunk.isEmpty {
            let extra = peer.spontaneous(elapsedMs: timeoutMs)
            if extra.isEmpty {
                sleep(timeoutMs)
                return []
            }
            lock.locked {
                pending.append(contentsOf: extra)
                let n = Swift.min(max, pending.count)
                chunk = Array(pending.prefix(n))
                pending.removeFirst(n)
            }
        }
        return chunk
    }

    public func discardInput() throws(HardwareError) {
        lock.locked { pending.removeAll() }
    }
}
