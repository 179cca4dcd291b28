// Simulated Modbus RTU slaves at the far end of a SimulatedSerialPort: the real master code runs
// over them. A slave answers function 03/04 requests addressed to it from its register tables and
// can be told to misbehave; a MultidropLine puts several slaves (or other peers) on one line.

import EdgelogHAL
import Synchronization

public final class ModbusSlaveSimulator: SerialPeer, @unchecked Sendable {
    public enum Behavior: Equatable, Sendable {
        /// Answers from the tables (exception 02 for a register it does not have).
        case normal
        /// Answers every request with this exception code.
        case exception(UInt8)
        /// Sends bytes that are no frame.
        case garbage
        /// Sends the first half of the correct response.
        case truncated
        /// Sends the correct response with its CRC inverted.
        case wrongCRC
        /// Answers as if it were another slave id.
        case wrongSlave(UInt8)
        /// Does not answer.
        case silent
    }

    public let slave: UInt8
    public var holding: [UInt16: UInt16]
    public var input: [UInt16: UInt16]
    /// The behavior after the scripted ones are used up.
    public var behavior: Behavior = .normal
    /// Behaviors for the next requests, in order, before `behavior` applies again.
    public var script: [Behavior] = []
    public private(set) var requests: [[UInt8]] = []
    private let lock = Lock()

    public init(slave: UInt8, holding: [UInt16: UInt16] = [:], input: [UInt16: UInt16] = [:]) {
        self.slave = slave
        self.holding = holding
        self.input = input
    }

    public func spontaneous(elapsedMs: Int) -> [UInt8] { [] }

    public func received(_ bytes: [UInt8]) -> [UInt8] {
        lock.locked {
            // Not a frame for this slave (or not a frame): a slave stays silent, as the spec says.
            guard bytes.count >= 4, ModbusRTU.crcMatches(bytes), bytes[0] == slave else { return [] }
            requests.append(bytes)
            let now = script.isEmpty ? behavior : script.removeFirst()
            let function = bytes[1]
            switch now {
            case .silent: return []
            case .garbage: return [0x00, 0xFF, 0x13, 0x37, 0x42]
            case .exception(let code): return ModbusRTU.frame(slave: slave, pdu: [function | 0x80, code])
            default: break
            }
            var response = answer(bytes)
            switch now {
            case .truncated: response = Array(response.prefix(response.count / 2))
            case .wrongCRC:
                response[response.count - 1] ^= 0xFF
                response[response.count - 2] ^= 0xFF
            case .wrongSlave(let other):
                response = ModbusRTU.frame(slave: other, pdu: Array(response.dropFirst().dropLast(2)))
            default: break
            }
            return response
        }
    }

    private func answer(_ request: [UInt8]) -> [UInt8] {
        let function = request[1]
        guard function == 0x03 || function == 0x04, request.count == 8 else {
            return ModbusRTU.frame(slave: slave, pdu: [function | 0x80, 0x01])
        }
        let start = Int(request[2]) << 8 | Int(request[3])
        let count = Int(request[4]) << 8 | Int(request[5])
        guard (1...125).contains(count) else {
            return ModbusRTU.frame(slave: slave, pdu: [function | 0x80, 0x03])
        }
        let table = function == 0x03 ? holding : input
        var data: [UInt8] = []
        for address in start..<(start + count) {
            guard address <= 0xFFFF, let value = table[UInt16(address)] else {
                return ModbusRTU.frame(slave: slave, pdu: [function | 0x80, 0x02])
            }
            data += [UInt8(value >> 8), UInt8(value & 0xFF)]
        }
        return ModbusRTU.frame(slave: slave, pdu: [function, UInt8(data.count)] + data)
    }
}

/// Several peers on one line (an RS-485 bus): every peer hears what the master sends; their
/// replies follow one another.
public final class MultidropLine: SerialPeer, @unchecked Sendable {
    public let peers: [SerialPeer]
    public init(_ peers: [SerialPeer]) { self.peers = peers }
    public func received(_ bytes: [UInt8]) -> [UInt8] { peers.flatMap { $0.received(bytes) } }
    public func spontaneous(elapsedMs: Int) -> [UInt8] { peers.flatMap { $0.spontaneous(elapsedMs: elapsedMs) } }
}

/// A mutex for the simulators (the runtime may drive them from another thread).
final class Lock: @unchecked Sendable {
    private let mutex = Mutex<Void>(())
    func locked<T>(_ body: () throws -> T) rethrows -> T { try mutex.withLock { _ in try body() } }
}
