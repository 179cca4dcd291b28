// One protocol per bus (docs/SENSORS.md): drivers see these only, so the same driver code runs over
// the kernel's devices (EdgelogLinux), the simulated buses of board/sim.yaml, and the test doubles.
// Every method throws HardwareError naming the device; none blocks longer than its bus's timeout.

/// An I2C adapter (/dev/i2c-N). Addresses are 7-bit. SMBus calls are what most sensors need and what
/// every adapter (and i2c-stub) implements; `transfer` is a raw combined message for devices whose
/// commands are not register reads (SHT3x).
public protocol I2CBus: AnyObject {
    var path: String { get }
    func readByte(address: UInt8, register: UInt8) throws(HardwareError) -> UInt8
    func writeByte(address: UInt8, register: UInt8, value: UInt8) throws(HardwareError)
    /// SMBus word: the low byte is the register's, the high byte the next one's (little-endian).
    func readWord(address: UInt8, register: UInt8) throws(HardwareError) -> UInt16
    func writeWord(address: UInt8, register: UInt8, value: UInt16) throws(HardwareError)
    /// SMBus "I2C block" read of `count` (1...32) consecutive registers.
    func readBlock(address: UInt8, register: UInt8, count: Int) throws(HardwareError) -> [UInt8]
    /// Raw I2C: write `write` (if any), then read `readCount` bytes (if any) after a repeated start.
    func transfer(address: UInt8, write: [UInt8], readCount: Int) throws(HardwareError) -> [UInt8]
}

/// SPI settings a device needs; the Linux device applies them at open.
public struct SPIConfig: Equatable, Sendable {
    /// SPI mode 0...3 (CPOL << 1 | CPHA).
    public var mode: UInt8
    public var speedHz: UInt32
    public var bitsPerWord: UInt8
    public init(mode: UInt8 = 0, speedHz: UInt32 = 1_000_000, bitsPerWord: UInt8 = 8) {
        self.mode = mode
        self.speedHz = speedHz
        self.bitsPerWord = bitsPerWord
    }
}

/// One chip select of an SPI controller (/dev/spidevB.C). A transfer is full duplex: as many bytes
/// come back as go out, with chip select held for the whole transfer.
public protocol SPIDevice: AnyObject {
    var path: String { get }
    func transfer(_ tx: [UInt8]) throws(HardwareError) -> [UInt8]
}

public enum Parity: String, Sendable, CaseIterable {
    case none, even, odd
}

public struct SerialConfig: Equatable, Sendable {
    public var baud: Int
    public var dataBits: Int
    public var parity: Parity
    public var stopBits: Int
    public init(baud: Int = 9600, dataBits: Int = 8, parity: Parity = .none, stopBits: Int = 1) {
        self.baud = baud
        self.dataBits = dataBits
        self.parity = parity
        self.stopBits = stopBits
    }

    /// Bits on the wire per character: start, data, parity, stop.
    public var bitsPerCharacter: Int { 1 + dataBits + (parity == .none ? 0 : 1) + stopBits }

    /// Time of `characters` on the wire, in microseconds.
    public func microseconds(characters: Int) -> Int {
        guard baud > 0 else { return 0 }
        return characters * bitsPerCharacter * 1_000_000 / baud
    }
}

/// A serial line (/dev/ttyS1, /dev/ttyUSB0), opened exclusively by its one owner.
public protocol SerialPort: AnyObject {
    var path: String { get }
    var config: SerialConfig { get }
    func write(_ bytes: [UInt8]) throws(HardwareError)
    /// Up to `max` bytes: waits at most `timeoutMs` for the first byte, returns [] on timeout.
    func read(max: Int, timeoutMs: Int) throws(HardwareError) -> [UInt8]
    /// Discards whatever was received and not read (a late reply must not answer the next request).
    func discardInput() throws(HardwareError)
}

public struct GPIOEdge: Equatable, Sendable {
    public var rising: Bool
    /// The kernel's timestamp of the edge (CLOCK_MONOTONIC for libgpiod 1.6), in nanoseconds.
    public var timestampNs: UInt64
    public init(rising: Bool, timestampNs: UInt64) {
        self.rising = rising
        self.timestampNs = timestampNs
    }
}

/// A GPIO line requested as an input with edge events (a brownout comparator, a pulse counter).
public protocol GPIOInput: AnyObject {
    var name: String { get }
    func value() throws(HardwareError) -> Bool
    /// The next edge, waiting at most `timeoutMs`; nil on timeout.
    func waitEdge(timeoutMs: Int) throws(HardwareError) -> GPIOEdge?
}

/// A GPIO line requested as an output.
public protocol GPIOOutput: AnyObject {
    var name: String { get }
    func set(_ value: Bool) throws(HardwareError)
}

/// A status LED: a Linux LED class device or a GPIO output line.
public protocol LED: AnyObject {
    var name: String { get }
    var maxBrightness: Int { get }
    func set(brightness: Int) throws(HardwareError)
}

/// One step of a repeating LED pattern: a brightness held for `ms` milliseconds.
public struct LEDStep: Equatable, Sendable {
    public var brightness: Int
    public var ms: Int
    public init(brightness: Int, ms: Int) {
        self.brightness = brightness
        self.ms = ms
    }
}

/// An LED whose kernel can run a repeating pattern by itself: the LED class's `pattern` trigger
/// (ledtrig-pattern). The pattern repeats `repeat` times and then stops at its last step's
/// brightness, so a pattern the process no longer renews ends on its own (docs/LEDS.md).
public protocol PatternTriggerLED: LED {
    /// Whether the kernel offers the pattern trigger for this LED (its `trigger` file lists it).
    func patternTriggerAvailable() -> Bool
    /// Hands `steps` to the kernel, to be run `repeat` times (at least 1).
    func startPattern(_ steps: [LEDStep], repeat count: Int) throws(HardwareError)
    /// Starts the pattern again from its first step, for `repeat` more cycles.
    func renewPattern(repeat count: Int) throws(HardwareError)
    /// Ends the kernel's pattern (trigger `none`): the LED is then off and set by brightness again.
    func stopPattern() throws(HardwareError)
}

/// A key press or release from an input device (a power button, gpio-keys).
public struct KeyEvent: Equatable, Sendable {
    public var code: UInt16
    /// 1 press, 0 release, 2 auto-repeat (the kernel's EV_KEY values).
    public var value: Int32
    /// The kernel's timestamp of the event (CLOCK_MONOTONIC), in nanoseconds.
    public var timestampNs: Int64
    public init(code: UInt16, value: Int32, timestampNs: Int64) {
        self.code = code
        self.value = value
        self.timestampNs = timestampNs
    }
}

/// An input device's key events (EV_KEY only; other event types are skipped).
public protocol KeyInput: AnyObject {
    var name: String { get }
    /// The next key event, waiting at most `timeoutMs`; nil on timeout.
    func waitKey(timeoutMs: Int) throws(HardwareError) -> KeyEvent?
}
