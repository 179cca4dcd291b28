// Modbus RTU framing. Sources: MODBUS over Serial Line Specification and Implementation Guide
// V1.02 (2.5.1 RTU transmission mode: 11-bit characters, 2.5.1.1 frame description and t3.5/t1.5
// silences, fixed at 1.750 ms / 0.750 ms above 19200 baud; 2.5.1.2 and 6.2.2 the CRC-16: preset
// 0xFFFF, polynomial 0xA001 reflected, low-order byte sent first, with the example CRC of 02 07 =
// 0x1241 sent as 41 12); MODBUS Application Protocol Specification V1.1b3 (6.3 Read Holding
// Registers 0x03, 6.4 Read Input Registers 0x04: quantity 1...125, response byte count 2·N; 7
// exception responses: function code + 0x80 and an exception code, table of codes).

import EdgelogHAL

public enum ModbusFunction: UInt8, Sendable, CaseIterable {
    case readHoldingRegisters = 0x03
    case readInputRegisters = 0x04

    /// How errors and docs name the table: "holding" or "input".
    public var table: String { self == .readHoldingRegisters ? "holding" : "input" }
}

public enum ModbusRTU {
    /// CRC-16/MODBUS of `bytes`: preset 0xFFFF, reflected polynomial 0xA001. Sent low byte first.
    public static func crc16<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
        var crc: UInt16 = 0xFFFF
        for byte in bytes {
            crc ^= UInt16(byte)
            for _ in 0..<8 {
                crc = crc & 1 != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1
            }
        }
        return crc
    }

    /// `pdu` after the slave address, with the CRC appended low byte first.
    public static func frame(slave: UInt8, pdu: [UInt8]) -> [UInt8] {
        var out = [slave] + pdu
        let crc = crc16(out)
        out.append(UInt8(crc & 0xFF))
        out.append(UInt8(crc >> 8))
        return out
    }

    /// True if the last two bytes are the CRC of the others.
    public static func crcMatches(_ frame: [UInt8]) -> Bool {
        guard frame.count >= 4 else { return false }
        let crc = crc16(frame[..<(frame.count - 2)])
        return frame[frame.count - 2] == UInt8(crc & 0xFF) && frame[frame.count - 1] == UInt8(crc >> 8)
    }

    /// A read request: slave, function, starting address (big-endian), quantity (big-endian), CRC.
    public static func readRequest(slave: UInt8, function: ModbusFunction, start: UInt16, count: UInt16) -> [UInt8] {
        frame(slave: slave, pdu: [function.rawValue, UInt8(start >> 8), UInt8(start & 0xFF), UInt8(count >> 8), UInt8(count & 0xFF)])
    }

    /// The exception codes of the application protocol (section 7), as errors and records name them.
    public static func exceptionName(_ code: UInt8) -> String {
        switch code {
        case 0x01: "illegal function"
        case 0x02: "illegal data address"
        case 0x03: "illegal data value"
        case 0x04: "server device failure"
        case 0x05: "acknowledge"
        case 0x06: "server device busy"
        case 0x08: "memory parity error"
        case 0x0A: "gateway path unavailable"
        case 0x0B: "gateway target device failed to respond"
        default: "unknown exception"
        }
    }

    /// t3.5, the silence that separates frames, in microseconds: 3.5 character times (11 bits per
    /// RTU character whatever the parity setting, since no parity takes two stop bits), fixed at
    /// 1750 µs above 19200 baud.
    public static func interFrameMicroseconds(baud: Int) -> Int {
        guard baud > 0 else { return 1750 }
        if baud > 19200 { return 1750 }
        return (35 * 11 * 1_000_000 + 10 * baud - 1) / (10 * baud)
    }
}
