// Microchip MCP3008 8-channel 10-bit ADC over SPI.
// Source: MCP3004/3008 data sheet DS21295: SPI communication with 8-bit segments (section 6.1,
// figure 6-1): send 0x01 (start bit), then SGL/DIFF, D2, D1, D0 in the high nibble, then a don't-care
// byte; the reply's second byte ends with the null bit (bit 2, always 0) and B9, B8, the third byte is
// B7...B0. Configuration bits (table 5-2): single-ended CH0...CH7, or a pseudo-differential pair
// (CH0+/CH1-, CH0-/CH1+, ..., CH6-/CH7+) selected by D2...D0. Output code (equation 4-1):
// code = 1024 · V_IN / V_REF. SPI modes 0,0 and 1,1; clock up to 1.35 MHz at 2.7 V.

import EdgelogHAL

public final class MCP3008: PolledSensor {
    public static let spiConfig = SPIConfig(mode: 0, speedHz: 1_000_000)

    public let device: SPIDevice
    public let channel: Int
    public let differential: Bool
    public let vrefMicrovolts: Int64
    let step: (mantissa: Int64, scale: Int)

    public var location: String { "\(device.path) channel \(channel)" }

    /// Settings: `channel` 0...7; `input` single (channel against AGND) or differential (D2...D0 =
    /// channel: 0 is CH0+/CH1-, 1 is CH0-/CH1+, ..., 7 is CH6-/CH7+); `vref` the reference voltage in
    /// volts, 0.25...5.5 (the data sheet's V_REF range up to V_DD), resolved to 1 µV.
    public init(device: SPIDevice, channel: Int, differential: Bool = false, vref: Double) throws(HardwareError) {
        guard (0...7).contains(channel) else {
            throw invalidSetting(device.path, nil, "MCP3008 channel \(channel): must be 0...7")
        }
        guard vref.isFinite, vref >= 0.25, vref <= 5.5 else {
            throw invalidSetting(device.path, nil, "vref \(vref) V: must be 0.25...5.5 V")
        }
        let microvolts = Int64((vref * 1_000_000).rounded())
        guard let step = ExactDecimal.step(microvolts: microvolts, shift: 10) else {
            throw invalidSetting(device.path, nil, "vref \(vref) V has no exact step")
        }
        self.device = device
        self.channel = channel
        self.differential = differential
        self.vrefMicrovolts = microvolts
        self.step = step
    }

    /// The three bytes sent: start bit, then SGL/DIFF and D2...D0 in the high nibble, then filler.
    public static func request(channel: Int, differential: Bool) -> [UInt8] {
        [0x01, (differential ? 0x00 : 0x80) | UInt8(channel & 7) << 4, 0x00]
    }

    public func start() throws(HardwareError) {}

    public func read() throws(HardwareError) -> Reading {
        let rx: [UInt8]
        do {
            rx = try device.transfer(Self.request(channel: channel, differential: differential))
        } catch {
            throw error.at(register: "channel \(channel)")
        }
        let code = try Self.decode(rx, device: device.path, channel: channel)
        return reading(code: code)
    }

    /// The 10-bit code from a reply; the null bit must read 0 (a chip select with nothing behind it
    /// reads all ones).
    public static func decode(_ rx: [UInt8], device: String, channel: Int) throws(HardwareError) -> Int {
        guard rx.count == 3 else {
            throw HardwareError(.badFrame, device: device, register: "channel \(channel)", detail: "reply of \(rx.count) bytes, 3 expected")
        }
        guard rx[1] & 0x04 == 0 else {
            throw HardwareError(.badFrame, device: device, register: "channel \(channel)",
                                detail: "null bit is 1 (reply \(rx.map(\.hex).joined(separator: " "))): no MCP3008 answering")
        }
        return Int(rx[1] & 0x03) << 8 | Int(rx[2])
    }

    /// raw (0...1023) and volts (code × vref / 1024, exact).
    public func reading(code: Int) -> Reading {
        Reading([("raw", .int(Int64(code))), ("volts", .fixed(Int64(code) * step.mantissa, scale: step.scale))],
                quality: code == 1023 ? "saturated" : nil)
    }
}
