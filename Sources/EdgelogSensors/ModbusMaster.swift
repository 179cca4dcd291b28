// A Modbus RTU master owning one serial line, shared by the ModbusSensors of the slaves on it.
// One request at a time: each transaction discards stale input, keeps the t3.5 silence, sends the
// request, and reads exactly the response frame the request calls for, then validates it (CRC
// first, then slave echo, function echo, byte count). Timeouts, bad frames and CRC errors are
// retried; an exception response is an answer and is not.

import EdgelogHAL
import Synchronization

public final class ModbusMaster: @unchecked Sendable {
    public let port: SerialPort
    public let responseTimeoutMs: Int
    public let interCharacterTimeoutMs: Int
    public let retries: Int
    private let sleep: SleepMilliseconds
    private let mutex = Mutex<Void>(())

    /// Settings (per line): `response_timeout_ms` 10...60000, the wait for a response's first byte;
    /// `inter_character_timeout_ms` 1...1000, the longest gap inside a response before it counts as
    /// truncated (default: t3.5 rounded up to whole ms, at least 20 ms, because USB serial adapters
    /// deliver bytes in bursts up to 16 ms apart); `retries` 0...5 after a timeout, bad frame or CRC
    /// error. The line's baud, parity and stop bits are the port's (`SerialConfig`).
    public init(port: SerialPort, responseTimeoutMs: Int = 1000, interCharacterTimeoutMs: Int? = nil, retries: Int = 1,
                sleep: @escaping SleepMilliseconds = { _ in }) throws(HardwareError) {
        guard (10...60000).contains(responseTimeoutMs) else {
            throw invalidSetting(port.path, nil, "response_timeout_ms \(responseTimeoutMs): must be 10...60000")
        }
        let silenceMs = (ModbusRTU.interFrameMicroseconds(baud: port.config.baud) + 999) / 1000
        let gap = interCharacterTimeoutMs ?? Swift.max(silenceMs, 20)
        guard (1...1000).contains(gap) else {
            throw invalidSetting(port.path, nil, "inter_character_timeout_ms \(gap): must be 1...1000")
        }
        guard (0...5).contains(retries) else {
            throw invalidSetting(port.path, nil, "retries \(retries): must be 0...5")
        }
        guard port.config.baud > 0, port.config.dataBits == 8 else {
            throw invalidSetting(port.path, nil, "Modbus RTU needs 8 data bits and a baud rate (have \(port.config.dataBits) bits at \(port.config.baud))")
        }
        self.port = port
        self.responseTimeoutMs = responseTimeoutMs
        self.interCharacterTimeoutMs = gap
        self.retries = retries
        self.sleep = sleep
    }

    /// t3.5 in whole milliseconds, rounded up: slept before every request.
    public var silenceMs: Int { (ModbusRTU.interFrameMicroseconds(baud: port.config.baud) + 999) / 1000 }

    /// Reads `count` (1...125) registers from `start` with function 03 or 04 of `slave` (1...247).
    public func readRegisters(slave: UInt8, function: ModbusFunction, start: UInt16, count: Int) throws(HardwareError) -> [UInt16] {
        let place = "slave \(slave)"
        let what = Self.registerName(function: function, start: start, count: count)
        guard (1...247).contains(slave) else {
            throw HardwareError(.invalidArgument, device: port.path, address: place, register: what, detail: "slave id must be 1...247")
        }
        guard (1...125).contains(count), Int(start) + count <= 0x10000 else {
            throw HardwareError(.invalidArgument, device: port.path, address: place, register: what, detail: "count must be 1...125 and stay within 0x0000...0xFFFF")
        }
        let request = ModbusRTU.readRequest(slave: slave, function: function, start: start, count: UInt16(count))
        return try mutex.withLock { _ throws(HardwareError) -> [UInt16] in
            try exchange(request, slave: slave, function: function, count: count, place: place, what: what)
        }
    }

    private func exchange(_ request: [UInt8], slave: UInt8, function: ModbusFunction, count: Int, place: String, what: String) throws(HardwareError) -> [UInt16] {
        var attempt = 0
        while true {
            do {
                return try transaction(request, slave: slave, function: function, count: count)
            } catch {
                var named = error.at(address: place, register: what)
                let retryable = [.timeout, .badFrame, .checksum].contains(error.kind)
                guard retryable, attempt < retries else {
                    if retryable, retries > 0 { named.detail += " (after \(retries + 1) attempts)" }
                    throw named
                }
                attempt += 1
            }
        }
    }

    /// "holding register 0x006B" or "input registers 0x0000...0x0009".
    static func registerName(function: ModbusFunction, start: UInt16, count: Int) -> String {
        guard count > 1 else { return "\(function.table) register \(start.hex)" }
        let last = UInt16(truncatingIfNeeded: Int(start) + count - 1)
        return "\(function.table) registers \(start.hex)...\(last.hex)"
    }

    private func transaction(_ request: [UInt8], slave: UInt8, function: ModbusFunction, count: Int) throws(HardwareError) -> [UInt16] {
        try port.discardInput()
        sleep(silenceMs)
        try port.write(request)
        let normalLength = 5 + 2 * count
        var frame = try port.read(max: normalLength, timeoutMs: responseTimeoutMs)
        guard !frame.isEmpty else {
            throw HardwareError(.timeout, device: port.path, detail: "no response in \(responseTimeoutMs) ms")
        }
        // The header says how long the frame is: an exception response is 5 bytes, a normal one
        // 3 + byte count + 2. Anything else is read as far as the normal length.
        func expectedLength() -> Int {
            guard frame.count >= 2 else { return normalLength }
            if frame[1] == function.rawValue | 0x80 { return 5 }
            // A byte count other than the one asked for is not waited for: the frame is read as
            // far as the normal length and then refused by the checks below.
            if frame[1] == function.rawValue, frame.count >= 3, 5 + Int(frame[2]) == normalLength { return normalLength }
            return normalLength
        }
        while frame.count < expectedLength() {
            let more = try port.read(max: expectedLength() - frame.count, timeoutMs: interCharacterTimeoutMs)
            guard !more.isEmpty else {
                throw HardwareError(.badFrame, device: port.path,
                                    detail: "truncated response: \(frame.count) of \(expectedLength()) bytes, then \(interCharacterTimeoutMs) ms of silence")
            }
            frame += more
        }
        return try Self.parseResponse(frame, slave: slave, function: function, count: count, device: port.path)
    }

    /// Validates a complete response frame and returns its registers.
    public static func parseResponse(_ frame: [UInt8], slave: UInt8, function: ModbusFunction, count: Int, device: String) throws(HardwareError) -> [UInt16] {
        guard frame.count >= 5 else {
            throw HardwareError(.badFrame, device: device, detail: "response of \(frame.count) bytes is shorter than any frame")
        }
        guard ModbusRTU.crcMatches(frame) else {
            let crc = ModbusRTU.crc16(frame[..<(frame.count - 2)])
            throw HardwareError(.checksum, device: device,
                                detail: "CRC \(hex(frame[frame.count - 2]))\(hex(frame[frame.count - 1])) received, \(hex(UInt8(crc & 0xFF)))\(hex(UInt8(crc >> 8))) computed over \(frame.count - 2) bytes")
        }
        guard frame[0] == slave else {
            throw HardwareError(.badFrame, device: device, detail: "response from slave \(frame[0]) to a request for slave \(slave)")
        }
        if frame[1] == function.rawValue | 0x80 {
            let code = frame[2]
            throw HardwareError(.exception, device: device,
                                detail: "exception \(hex(code)): \(ModbusRTU.exceptionName(code))")
        }
        guard frame[1] == function.rawValue else {
            throw HardwareError(.badFrame, device: device, detail: "function \(hex(frame[1])) in the response to function \(hex(function.rawValue))")
        }
        guard Int(frame[2]) == 2 * count, frame.count == 5 + 2 * count else {
            throw HardwareError(.badFrame, device: device, detail: "byte count \(frame[2]) for \(count) registers (expected \(2 * count))")
        }
        return (0..<count).map { i in UInt16(frame[3 + 2 * i]) << 8 | UInt16(frame[4 + 2 * i]) }
    }

    private static func hex(_ b: UInt8) -> String { String(b.hex.dropFirst(2)) }
}
