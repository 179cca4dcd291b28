// Simulated parts for the simulated I2C and SPI buses (board/sim.yaml and the tests): each builds
// the bytes the real part would answer, from physical values, so the real drivers run over them.

import EdgelogHAL

/// An SHT3x on the simulated I2C bus: answers single-shot measurement commands and the status
/// command with CRC-protected words. `corruptNext` flips the CRC of the next word read.
public final class SHT3xSimulator: @unchecked Sendable {
    public let device = RegisterDevice()
    /// Raw 16-bit outputs S_T and S_RH.
    public var rawTemperature: UInt16
    public var rawHumidity: UInt16
    public var status: UInt16 = 0x0000
    /// The next measurement's temperature (0) or humidity (1) word gets a wrong CRC.
    public var corruptWord: Int?
    private var pending: [UInt8]?

    public init(rawTemperature: UInt16 = 0x6666, rawHumidity: UInt16 = 0x8000) {
        self.rawTemperature = rawTemperature
        self.rawHumidity = rawHumidity
        device.onTransfer = { [unowned self] write, readCount in self.transfer(write, readCount) }
    }

    private func words(_ values: [UInt16]) -> [UInt8] {
        values.flatMap { v -> [UInt8] in
            let pair = [UInt8(v >> 8), UInt8(v & 0xFF)]
            return pair + [SHT3x.crc8(pair)]
        }
    }

    private func transfer(_ write: [UInt8], _ readCount: Int) -> [UInt8]? {
        if !write.isEmpty {
            guard write.count == 2, readCount == 0 else { return nil }
            switch UInt16(write[0]) << 8 | UInt16(write[1]) {
            case 0x2400, 0x240B, 0x2416:
                var bytes = words([rawTemperature, rawHumidity])
                if let word = corruptWord, (0...1).contains(word) {
                    bytes[word * 3 + 2] ^= 0x5A
                    corruptWord = nil
                }
                pending = bytes
            case 0xF32D:
                pending = words([status])
            default:
                return nil
            }
            return []
        }
        // No measurement under way: the part NACKs its read header.
        guard let bytes = pending, bytes.count == readCount else { return nil }
        pending = nil
        return bytes
    }
}

/// An ADS1115 on the simulated I2C bus: 16-bit registers behind the pointer, MSB first as SMBus
/// words carry them byte-swapped; a single-shot conversion stays busy (OS = 0) for `busyPolls`
/// config reads, then the conversion register holds the code of the input selected by MUX.
public final class ADS1115Simulator: @unchecked Sendable {
    public let device = RegisterDevice()
    /// Output codes by input (MUX); an input not listed converts to 0.
    public var codes: [ADS1115.Input: Int16]
    public var busyPolls = 0
    public private(set) var config: UInt16 = 0x8583
    public private(set) var conversion: UInt16 = 0
    public private(set) var conversions = 0
    private var pollsLeft = 0

    public init(codes: [ADS1115.Input: Int16] = [:]) {
        self.codes = codes
        device.onWrite = { [unowned self] register, low, device in
            // The bus stored the SMBus word's high byte at register + 1; the chip's word is the swap.
            let word = UInt16(low) << 8 | UInt16(device.registers[(Int(register) + 1) & 0xFF])
            self.written(register, word)
        }
        device.onRead = { [unowned self] register, count, _ in
            guard count == 2 else { return nil }
            let word: UInt16
            switch register {
            case 0x00: word = self.conversion
            case 0x01:
                if self.pollsLeft > 0 {
                    self.pollsLeft -= 1
                    word = self.config & 0x7FFF
                } else {
                    word = self.config | 0x8000
                }
            default: word = register == 0x02 ? 0x8000 : 0x7FFF
            }
            return [UInt8(word >> 8), UInt8(word & 0xFF)]
        }
    }

    private func written(_ register: UInt8, _ word: UInt16) {
        guard register == 0x01 else { return }
        config = word & 0x7FFF
        guard word & 0x8000 != 0 else { return }
        conversions += 1
        pollsLeft = busyPolls
        let input = ADS1115.Input.allCases.first { $0.mux == (word >> 12) & 7 }
        conversion = UInt16(bitPattern: input.flatMap { codes[$0] } ?? 0)
    }
}

public enum SimulatedFrames {
    /// The three bytes an MCP3008 returns for `code`: high bits undefined (0 here), null bit 0, B9...B0.
    public static func mcp3008(code: Int) -> [UInt8] {
        [0x00, UInt8((code >> 8) & 0x03), UInt8(code & 0xFF)]
    }

    /// A MAX31855 frame from the thermocouple temperature in quarter degrees, the internal one in
    /// sixteenths, and fault flags (bit 0 OC, 1 SCG, 2 SCV; the fault bit D16 follows them).
    public static func max31855(quarterDegrees: Int, sixteenths: Int, faults: UInt8 = 0) -> [UInt8] {
        var word = UInt32(UInt16(truncatingIfNeeded: quarterDegrees) & 0x3FFF) << 18
        word |= UInt32(UInt16(truncatingIfNeeded: sixteenths) & 0x0FFF) << 4
        word |= UInt32(faults & 7)
        if faults & 7 != 0 { word |= 0x0001_0000 }
        return [UInt8(word >> 24), UInt8((word >> 16) & 0xFF), UInt8((word >> 8) & 0xFF), UInt8(word & 0xFF)]
    }
}
