// Splits a serial byte stream into lines for the line readers (NMEA, delimited instruments).
// A line ends at CR or LF (CRLF, LF and CR-only instruments alike); empty lines are skipped. A line
// longer than the limit is reported once and its bytes dropped up to the next line end, so one
// runaway talker cannot grow the buffer.

import EdgelogHAL

public struct LineFramer: Sendable {
    public enum Event: Equatable, Sendable {
        case line([UInt8])
        case overlong(Int)
    }

    public let maxLength: Int
    private var buffer: [UInt8] = []
    private var dropping = 0

    public init(maxLength: Int) {
        self.maxLength = maxLength
    }

    public mutating func reset() {
        buffer.removeAll()
        dropping = 0
    }

    public mutating func push(_ bytes: [UInt8]) -> [Event] {
        var events: [Event] = []
        for byte in bytes {
            if byte == 0x0D || byte == 0x0A {
                if dropping > 0 {
                    events.append(.overlong(dropping))
                    dropping = 0
                } else if !buffer.isEmpty {
                    events.append(.line(buffer))
                }
                buffer.removeAll(keepingCapacity: true)
                continue
            }
            if dropping > 0 {
                dropping += 1
            } else if buffer.count < maxLength {
                buffer.append(byte)
            } else {
                dropping = buffer.count + 1
                buffer.removeAll(keepingCapacity: true)
            }
        }
        return events
    }
}

/// What both line readers share: the port, the framer, the queue of outcomes not yet delivered.
struct LineSource {
    let port: SerialPort
    var framer: LineFramer
    var queue: [EventOutcome] = []

    init(port: SerialPort, maxLength: Int) {
        self.port = port
        self.framer = LineFramer(maxLength: maxLength)
    }

    /// Drops what arrived before start: a partial line must not be taken for a whole one.
    mutating func start() throws(HardwareError) {
        framer.reset()
        queue.removeAll()
        try port.discardInput()
    }

    /// One outcome if one is ready or arrives within `timeoutMs` (one read of the port).
    mutating func next(timeoutMs: Int, handle: ([UInt8]) -> [EventOutcome]) throws(HardwareError) -> EventOutcome? {
        if queue.isEmpty {
            let bytes = try port.read(max: 512, timeoutMs: timeoutMs)
            for event in framer.push(bytes) {
                switch event {
                case .line(let line): queue.append(contentsOf: handle(line))
                case .overlong(let count):
                    queue.append(.rejected(HardwareError(.badFrame, device: port.path,
                                                         detail: "line of \(count) bytes, longer than \(framer.maxLength): dropped")))
                }
            }
        }
        return queue.isEmpty ? nil : queue.removeFirst()
    }
}

/// Printable ASCII only: a device's text goes into records, and control bytes in a line are noise.
func printableText(_ line: [UInt8]) -> String? {
    guard line.allSatisfy({ (0x20...0x7E).contains($0) }) else { return nil }
    return String(decoding: line, as: UTF8.self)
}
