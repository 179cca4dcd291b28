// Standard input as a byte stream for the ingress engine (the `stdin` source of a board): reads
// bounded by poll like a serial line's, no terminal settings touched, end of input remembered.

import EdgelogHAL
import Glibc

public final class StandardInputPort: SerialPort, @unchecked Sendable {
    public let path = "stdin"
    public let config = SerialConfig()
    private let fd: Int32
    /// The writer at the other end closed it: no more bytes will come.
    public private(set) var ended = false

    public init(fd: Int32 = 0) { self.fd = fd }

    public func write(_ bytes: [UInt8]) throws(HardwareError) {
        throw HardwareError(.unsupported, device: path, detail: "standard input is read only")
    }

    public func read(max: Int, timeoutMs: Int) throws(HardwareError) -> [UInt8] {
        guard !ended else { return [] }
        switch Sys.pollReadable(fd, timeoutMs: Int32(clamping: timeoutMs)) {
        case .success(false): return []
        case .success(true): break
        case .failure(let e): throw .errno(e, device: path, doing: "poll")
        }
        var buffer = [UInt8](repeating: 0, count: Swift.max(1, Swift.min(max, 65536)))
        switch buffer.withUnsafeMutableBytes({ Sys.read(fd, $0) }) {
        case .success(0):
            ended = true
            return []
        case .success(let n): return Array(buffer.prefix(n))
        case .failure(let e) where e.code == EAGAIN: return []
        case .failure(let e): throw .errno(e, device: path, doing: "read")
        }
    }

    public func discardInput() throws(HardwareError) {}
}
