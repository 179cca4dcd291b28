// From a board file to running sources: open each bus (the kernel's device, or a simulated bus with
// its device images), build each sensor's driver over it, and describe it to the scheduler. Opening
// a kernel device that is absent is not an error here: the source's first read fails, is recorded,
// and is retried with backoff, so a sensor plugged in later starts logging on its own.

import EdgelogHAL
import EdgelogIngress
import EdgelogLinux
import EdgelogSensors

public enum BoardSources {
    /// Builds every source of `board`. `check` builds over simulated buses only (no device is
    /// opened) to validate each driver's settings for `edgelog board check`.
    public static func build(_ board: Board, check: Bool = false, sleep: @escaping SleepMilliseconds = { Process.sleep(milliseconds: $0) })
        throws(BoardError) -> BuiltSources
    {
        var serialPorts: [LinuxSerialPort] = []
        // Buses other than SPI are shared by their sensors (one port, one owner thread); an SPI
        // node is one chip select, so one device.
        var handles: [String: BusHandle] = [:]
        var specs: [SourceSpec] = []
        for (index, sensor) in board.sensors.enumerated() {
            let key = "sensors[\(index)]"
            func fail(_ why: String) -> BoardError { BoardError(file: board.file, line: sensor.line, key: key, why: why) }
            guard let entry = DriverCatalog.driver(named: sensor.driver) else { throw fail("unknown driver \(sensor.driver)") }
            var handle = BusHandle(port: .none, sleep: sleep)
            if entry.needsBus {
                guard let bus = board.bus(named: sensor.bus) else { throw fail("no bus named \(sensor.bus)") }
                if let shared = handles[bus.name] {
                    handle = shared
                } else {
                    handle = try open(bus, for: sensor, board: board, check: check, sleep: sleep, serialPorts: &serialPorts)
                    if bus.kind != .spi && bus.kind != .simSPI { handles[bus.name] = handle }
                }
                // A device on a simulated I2C bus is its image, attached at its address.
                if bus.kind == .simI2C, case .i2c(let port) = handle.port, let simulated = port as? SimulatedI2CBus,
                   let image = sensor.image, let address = sensor.settings.busAddress.flatMap({ YAMLFields.parseInteger($0) }) {
                    simulated.attach(try DeviceImage.i2c(resolve(image, in: board.directory)), at: UInt8(clamping: address))
                }
            }
            let kind: SourceSpec.Kind
            do { kind = try entry.make(sensor.settings, handle, sensor.driver) } catch {
                throw fail(error.detail)
            }
            let built: SourceSpec.Kind
            switch kind {
            case .polled(let driver, _): built = .polled(driver, periodNs: Int64(sensor.periodMs) * 1_000_000)
            case .event(let driver): built = .event(driver)
            }
            specs.append(SourceSpec(name: sensor.name, kind: built, bus: sensor.bus, policy: sensor.policy,
                                    limits: QueueLimits(capacity: sensor.queue), jitterBoundNs: Int64(sensor.jitterBoundMs) * 1_000_000))
        }
        return BuiltSources(specs: specs, serialPorts: serialPorts)
    }

    /// Opens what `bus` stands for: the kernel's device (or, for `check`, a stand-in that opens
    /// nothing), or a simulated bus with its device image or peer file.
    static func open(_ bus: Board.Bus, for sensor: Board.Sensor, board: Board, check: Bool, sleep: @escaping SleepMilliseconds,
                     serialPorts: inout [LinuxSerialPort]) throws(BoardError) -> BusHandle {
        switch bus.kind {
        case .i2c:
            let port: I2CBus = check ? SimulatedI2CBus(path: bus.device ?? bus.adapterName ?? bus.name)
                : LinuxI2CBus(bus.adapterName.map { .name($0) } ?? .path(bus.device ?? ""))
            return BusHandle(port: .i2c(port), sleep: sleep)
        case .spi:
            let port: SPIDevice = check ? SimulatedSPIDevice(path: bus.device ?? bus.name) { _ in nil }
                : LinuxSPIDevice(path: bus.device ?? "", config: bus.spi)
            return BusHandle(port: .spi(port), sleep: sleep)
        case .serial:
            if check {
                return BusHandle(port: .serial(SimulatedSerialPort(path: bus.device ?? bus.name, config: bus.serial, peer: SilentPeer())),
                                 sleep: sleep, options: bus.options)
            }
            let linux = LinuxSerialPort(path: bus.device ?? "", config: bus.serial)
            serialPorts.append(linux)
            return BusHandle(port: .serial(linux), sleep: sleep, options: bus.options)
        case .simI2C:
            return BusHandle(port: .i2c(SimulatedI2CBus(path: "sim:" + bus.name)), sleep: { _ in })
        case .simSPI:
            let device = try DeviceImage.spi(resolve(sensor.image ?? "", in: board.directory), device: "sim:" + bus.name + "/" + sensor.name)
            return BusHandle(port: .spi(device), sleep: { _ in })
        case .simSerial:
            let peer = try SimulatedPeers.load(resolve(bus.peer ?? "", in: board.directory))
            let port = SimulatedSerialPort(path: "sim:" + bus.name, config: bus.serial, peer: peer,
                                           sleep: check ? { _ in } : { Process.sleep(milliseconds: $0) })
            return BusHandle(port: .serial(port), sleep: { _ in }, options: bus.options)
        }
    }

    static func resolve(_ path: String, in directory: String) -> String {
        path.hasPrefix("/") ? path : directory + "/" + path
    }
}

public struct BuiltSources {
    public var specs: [SourceSpec]
    public var serialPorts: [LinuxSerialPort]

    /// Opens the serial lines now: a line another program holds is a clear error at start (one
    /// owner per line), not a stream of faults. A line that is absent or failing now is left to its
    /// sources, which record it and retry.
    public func claimSerialPorts() throws(HardwareError) {
        for port in serialPorts {
            do { try port.open() } catch where error.kind == .busy || error.kind == .permission { throw error } catch {}
        }
    }
}

/// A far end that never answers (the stand-in serial line of `board check`).
final class SilentPeer: SerialPeer {
    func received(_ bytes: [UInt8]) -> [UInt8] { [] }
    func spontaneous(elapsedMs: Int) -> [UInt8] { [] }
}

