// An SPI chip select whose device answers each transfer from a script or a function of what was
// sent: MCP3008 channel images, MAX31855 frames (board/sim/*.yaml), or fault frames in tests.

public final class SimulatedSPIDevice: SPIDevice, @unchecked Sendable {
    public let path: String
    private var responder: ([UInt8]) -> [UInt8]?
    private var faults: [HardwareError.Kind] = []
    private var sticky: HardwareError.Kind?
    private let lock = SimLock()
    public private(set) var sent: [[UInt8]] = []

    /// `responder` gets the bytes sent and returns as many bytes back (nil: the device is absent).
    public init(path: String = "sim-spi", responder: @escaping ([UInt8]) -> [UInt8]?) {
        self.path = path
        self.responder = responder
    }

    /// Answers successive transfers with `frames` in turn, the last one repeated.
    public convenience init(path: String = "sim-spi", frames: [[UInt8]]) {
        let script = Script(frames)
        self.init(path: path) { tx in script.next(count: tx.count) }
    }

    public func respond(with responder: @escaping ([UInt8]) -> [UInt8]?) { lock.locked { self.responder = responder } }
    public func inject(_ kind: HardwareError.Kind, count: Int = 1) { lock.locked { faults.append(contentsOf: repeatElement(kind, count: count)) } }
    public func fail(with kind: HardwareError.Kind?) { lock.locked { sticky = kind } }

    public func transfer(_ tx: [UInt8]) throws(HardwareError) -> [UInt8] {
        let (fault, responder): (HardwareError.Kind?, ([UInt8]) -> [UInt8]?) = lock.locked {
            sent.append(tx)
            if let sticky { return (sticky, self.responder) }
            if !faults.isEmpty { return (faults.removeFirst(), self.responder) }
            return (nil, self.responder)
        }
        if let fault { throw HardwareError(fault, device: path, detail: "injected fault") }
        // A chip select with nothing behind it reads all ones (MISO pulled up) on most boards.
        guard let rx = responder(tx) else { return [UInt8](repeating: 0xFF, count: tx.count) }
        guard rx.count == tx.count else {
            throw HardwareError(.io, device: path, detail: "full-duplex transfer returned \(rx.count) bytes for \(tx.count) sent")
        }
        return rx
    }

    final class Script: @unchecked Sendable {
        private var frames: [[UInt8]]
        private let lock = SimLock()
        init(_ frames: [[UInt8]]) { self.frames = frames }
        func next(count: Int) -> [UInt8]? {
            lock.locked {
                guard let frame = frames.first else { return nil }
                if frames.count > 1 { frames.removeFirst() }
                return Array((frame + [UInt8](repeating: 0, count: max(0, count - frame.count))).prefix(count))
            }
        }
    }
}
