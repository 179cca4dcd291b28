// An instrument that prints lines on its own (a GNSS receiver, a balance) at the far end of a
// SimulatedSerialPort. Lines are replayed from a list, one every `intervalMs` of waiting, the first
// at once; the list repeats if `repeats`. Every `corruptEvery`-th line sent gets a wrong checksum
// (its "*hh" changed, or its last character's low bit flipped when it has none).

import EdgelogHAL

public final class LineTalkerSimulator: SerialPeer, @unchecked Sendable {
    public let lines: [String]
    public let intervalMs: Int
    public let repeats: Bool
    public let lineEnding: String
    /// Corrupt every n-th line sent (nil: none).
    public var corruptEvery: Int?
    public private(set) var sent = 0
    private var clockMs = 0
    private var nextDueMs = 0
    private var index = 0
    private let lock = Lock()

    public init(lines: [String], intervalMs: Int = 1000, repeats: Bool = true, lineEnding: String = "\r\n", corruptEvery: Int? = nil) {
        self.lines = lines
        self.intervalMs = Swift.max(1, intervalMs)
        self.repeats = repeats
        self.lineEnding = lineEnding
        self.corruptEvery = corruptEvery
    }

    public func received(_ bytes: [UInt8]) -> [UInt8] { [] }

    public func spontaneous(elapsedMs: Int) -> [UInt8] {
        lock.locked {
            clockMs += Swift.max(0, elapsedMs)
            var out: [UInt8] = []
            while clockMs >= nextDueMs, !lines.isEmpty {
                if index >= lines.count {
                    guard repeats else { break }
                    index = 0
                }
                var line = Array(lines[index].utf8)
                index += 1
                sent += 1
                if let every = corruptEvery, every > 0, sent % every == 0 { line = Self.corrupt(line) }
                out += line + Array(lineEnding.utf8)
                nextDueMs += intervalMs
            }
            return out
        }
    }

    /// The same line with a checksum that does not match.
    public static func corrupt(_ line: [UInt8]) -> [UInt8] {
        var line = line
        if line.count >= 3, line[line.count - 3] == UInt8(ascii: "*") {
            // Replace the two hex digits by those of the sum XOR 0x5A.
            let digits = String(decoding: line.suffix(2), as: UTF8.self)
            let wrong = (UInt8(digits, radix: 16) ?? 0) ^ 0x5A
            let hex = Array("0123456789ABCDEF".utf8)
            line[line.count - 2] = hex[Int(wrong >> 4)]
            line[line.count - 1] = hex[Int(wrong & 15)]
        } else if let last = line.last {
            line[line.count - 1] = last ^ 0x01
        }
        return line
    }
}
