// Images of simulated devices (docs/BOARDS.md, "Simulated buses"): what a device on a sim-i2c or
// sim-spi bus answers, as a YAML file the board names. The real driver reads it through the bus
// protocol, so replacing an image with the registers read off a field unit reproduces that case.

import EdgelogHAL
import EdgelogLinux
import Synchronization
import Yams

enum DeviceImage {
    /// An I2C device: `registers` (byte registers; a list fills consecutive ones), `words` (16-bit
    /// registers as an SMBus word read returns them, the way i2c-stub keeps them), `transfer_reply`
    /// (the bytes a raw read returns, for command-based parts).
    static func i2c(_ path: String) throws(BoardError) -> RegisterDevice {
        var fields = try YAMLFields.load(path, what: "device image")
        let device = RegisterDevice()
        if var registers = try fields.mapping("registers") {
            for (register, value) in try registers.numberedEntries() {
                let bytes = try registers.bytes(value, key: hexKey(register))
                device.load(UInt8(register), bytes)
            }
        }
        if var words = try fields.mapping("words") {
            var table: [UInt8: UInt16] = [:]
            for (register, value) in try words.numberedEntries() {
                guard let text = value.scalar?.string, let word = YAMLFields.parseInteger(text), (0...0xFFFF).contains(word) else {
                    throw words.fail(hexKey(register), "expected a 16-bit value (0x0000 ... 0xFFFF)")
                }
                table[UInt8(register)] = UInt16(word)
            }
            // i2c-stub's model: each register is a word; byte reads see its low byte.
            let words = WordRegisters(table)
            device.onRead = { register, count, _ in words.read(register, count) }
            device.onWrite = { register, value, _ in words.writeByte(register, value) }
            device.onWordWrite = { register, value, _ in words.write(register, value) }
        }
        if let reply = fields.has("transfer_reply") ? try fields.byteList("transfer_reply") : nil {
            device.onTransfer = { _, count in count == 0 ? [] : Array((reply + [UInt8](repeating: 0, count: max(0, count - reply.count))).prefix(count)) }
        }
        try fields.rejectUnknown(known: ["registers", "words", "transfer_reply"])
        return device
    }

    /// An SPI device: `frames` (successive transfers answered in turn, the last repeated), or
    /// `adc_channels` (an MCP3008-style converter: the 10-bit code of each of up to 8 channels).
    static func spi(_ path: String, device: String) throws(BoardError) -> SimulatedSPIDevice {
        var fields = try YAMLFields.load(path, what: "device image")
        var result: SimulatedSPIDevice?
        if let frames = try fields.sequence("frames") {
            var list: [[UInt8]] = []
            for frame in frames { list.append(try fields.bytes(frame, key: "frames")) }
            result = SimulatedSPIDevice(path: device, frames: list)
        } else if let channels = try fields.sequence("adc_channels") {
            var codes: [Int] = []
            for item in channels {
                guard let text = item.scalar?.string, let code = YAMLFields.parseInteger(text), (0...1023).contains(code) else {
                    throw fields.fail("adc_channels", "expected codes 0 ... 1023")
                }
                codes.append(Int(code))
            }
            result = SimulatedSPIDevice(path: device) { tx in
                // Start bit in byte 0, SGL/DIFF and channel in the top nibble of byte 1.
                guard tx.count == 3, tx[0] & 0x01 == 1 else { return nil }
                let channel = Int((tx[1] >> 4) & 0x07)
                let code = channel < codes.count ? codes[channel] : 0
                return [0, UInt8((code >> 8) & 0x03), UInt8(code & 0xFF)]
            }
        }
        try fields.rejectUnknown(known: ["frames", "adc_channels"])
        guard let result else { throw BoardError(file: path, line: 0, key: nil, why: "an SPI image needs frames or adc_channels") }
        return result
    }

    static func hexKey(_ register: Int) -> String { UInt8(clamping: register).hex }
}

/// i2c-stub's register model: 256 words; byte access uses the low byte.
final class WordRegisters: Sendable {
    private let state: Mutex<[UInt16]>

    init(_ table: [UInt8: UInt16]) {
        var words = [UInt16](repeating: 0, count: 256)
        for (register, word) in table { words[Int(register)] = word }
        state = Mutex(words)
    }

    func read(_ register: UInt8, _ count: Int) -> [UInt8]? {
        state.withLock { words in
            switch count {
            case 1: return [UInt8(words[Int(register)] & 0xFF)]
            case 2: return [UInt8(words[Int(register)] & 0xFF), UInt8(words[Int(register)] >> 8)]
            default: return (0..<count).map { UInt8(words[(Int(register) + $0) & 0xFF] & 0xFF) }
            }
        }
    }

    func writeByte(_ register: UInt8, _ value: UInt8) {
        state.withLock { words in words[Int(register)] = (words[Int(register)] & 0xFF00) | UInt16(value) }
    }

    func write(_ register: UInt8, _ value: UInt16) {
        state.withLock { words in words[Int(register)] = value }
    }
}

extension YAMLFields {
    /// The entries of a mapping whose keys are register numbers (0x.. or decimal, 0 ... 255).
    mutating func numberedEntries() throws(BoardError) -> [(Int, Node)] {
        var out: [(Int, Node)] = []
        for key in allKeys {
            guard let n = YAMLFields.parseInteger(key), (0...255).contains(n) else { throw fail(key, "a register is 0x00 ... 0xFF") }
            guard let value = node(key) else { continue }
            out.append((Int(n), value))
        }
        return out
    }

    /// A byte, or a list of bytes.
    func bytes(_ node: Node, key: String) throws(BoardError) -> [UInt8] {
        if let text = node.scalar?.string {
            guard let n = YAMLFields.parseInteger(text), (0...255).contains(n) else { throw fail(key, "expected a byte (0x00 ... 0xFF)") }
            return [UInt8(n)]
        }
        guard let items = node.sequence else { throw fail(key, "expected a byte or a list of bytes") }
        var out: [UInt8] = []
        for item in items {
            guard let text = item.scalar?.string, let n = YAMLFields.parseInteger(text), (0...255).contains(n) else {
                throw fail(key, "expected a list of bytes (0x00 ... 0xFF)")
            }
            out.append(UInt8(n))
        }
        return out
    }

    mutating func byteList(_ key: String) throws(BoardError) -> [UInt8] {
        guard let value = node(key) else { return [] }
        return try bytes(value, key: key)
    }
}
