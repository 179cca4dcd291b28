// A board file (docs/BOARDS.md): the buses of a gateway, its GPIO lines and LEDs, where the store
// and the keys live, and the sensors with their bus, address, period and overload policy. Read
// with Yams; every key is checked, every mistake named by file, line and key. Loading never touches
// hardware: `edgelog board check` and `run` read the file the same way.

import EdgelogCore
import EdgelogHAL
import EdgelogIngress
import EdgelogLinux
import EdgelogStore
import Yams

public struct Board: Sendable {
    public enum BusKind: String, CaseIterable, Sendable {
        case i2c, spi, serial
        case simI2C = "sim-i2c", simSPI = "sim-spi", simSerial = "sim-serial"
        public var isSimulated: Bool { self == .simI2C || self == .simSPI || self == .simSerial }
    }

    public struct Bus: Sendable {
        public var name: String
        public var kind: BusKind
        /// /dev path (i2c, spi, serial), or nil for a simulated bus.
        public var device: String?
        /// I2C only: the adapter's name in /sys/class/i2c-adapter instead of a path.
        public var adapterName: String?
        public var serial: SerialConfig
        public var spi: SPIConfig
        /// sim-serial: the far end's description file (a Modbus slave table or lines to replay).
        public var peer: String?
        /// Serial lines: the Modbus master's timing (response_timeout_ms, inter_character_timeout_ms, retries).
        public var options: [String: Int] = [:]
        public var line: Int
    }

    public struct Store: Sendable {
        public var path = "store.img"
        public var size: UInt64 = 64 << 20
        public var segmentSize: UInt64 = 32 << 10
        public var keyDir: String? = "keys"
        public var unsigned = false
        public var anchor: String? = "anchor.json"
        public var anchorInterval = 10
        public var ringFull = RingFullPolicy.pause
        public var maxAgeMs = 1000
        public var blockMs = 2000
    }

    public struct LEDSpec: Sendable {
        public var role: String
        /// "class": /sys/class/leds/NAME; "gpio": a line on a chip.
        public var kind: String
        public var name: String
        public var chip: String?
        /// The LED's colour where the board has colour LEDs (IEC 60073: red, yellow or amber, green, blue, white).
        public var colour: String?
    }

    public struct Sensor: Sendable {
        public var name: String
        public var driver: String
        public var bus: String
        public var periodMs: Int
        public var policy: OverloadPolicy
        public var queue: Int
        public var jitterBoundMs: Int
        public var settings: DriverSettings
        /// Simulated buses: the device's image file (registers, frames), relative to the board file.
        public var image: String?
        public var line: Int
    }

    public var file: String
    public var name: String
    public var description: String?
    public var store: Store
    public var buses: [Bus]
    /// The power-fail input and hold-up budget; nil: the board names none (SIGPWR is still heeded).
    public var powerFail: PowerFailSpec?
    public var leds: [LEDSpec]
    public var sensors: [Sensor]
    /// The directory of the board file: image and peer paths are relative to it.
    public var directory: String

    /// The store holds this many source names; two are the engine's own (edgelog, edgelog.time).
    public static let maxSensors = Layout.maxSources - 2

    public func bus(named name: String) -> Bus? { buses.first { $0.name == name } }
}

extension Board {
    public static func load(_ path: String) throws(BoardError) -> Board {
        let bytes: [UInt8]
        do { bytes = try LocalFile.read(path, limit: 1 << 20).bytes } catch {
            throw BoardError(file: path, line: 0, key: nil, why: "cannot read: \(error)")
        }
        return try parse(String(decoding: bytes, as: UTF8.self), file: path)
    }

    public static func parse(_ text: String, file: String) throws(BoardError) -> Board {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw BoardError(file: file, line: 0, key: nil, why: "the file is empty") }
            root = node
        } catch let error as BoardError {
            throw error
        } catch let error as YamlError {
            throw BoardError(file: file, line: Self.line(of: error), key: nil, why: "not valid YAML: \(Self.summary(of: error))")
        } catch {
            throw BoardError(file: file, line: 0, key: nil, why: "not valid YAML: \(error)")
        }
        var top = try YAMLFields(root, file: file, path: "")
        let name = try top.requiredString("board")
        let description = try top.string("description")
        var store = Store()
        if var s = try top.mapping("store") {
            if let v = try s.string("path") { store.path = v }
            if let v = try s.size("size") { store.size = v }
            if let v = try s.size("segment_size") { store.segmentSize = v }
            if let v = try s.string("key_dir") { store.keyDir = v }
            if let v = try s.bool("unsigned") { store.unsigned = v }
            if let v = try s.string("anchor") { store.anchor = v == "none" ? nil : v }
            if let v = try s.integer("anchor_interval_s", in: 1...86_400) { store.anchorInterval = Int(v) }
            if let v = try s.choice("ring_full", RingFullPolicy.allNames) { store.ringFull = RingFullPolicy(rawValue: v) ?? .pause }
            if let v = try s.integer("max_age_ms", in: 1...3_600_000) { store.maxAgeMs = Int(v) }
            if let v = try s.integer("block_ms", in: 0...3_600_000) { store.blockMs = Int(v) }
            try s.rejectUnknown(known: ["path", "size", "segment_size", "key_dir", "unsigned", "anchor", "anchor_interval_s", "ring_full", "max_age_ms", "block_ms"])
        }
        if store.unsigned { store.keyDir = nil }

        var buses: [Bus] = []
        for (i, node) in (try top.sequence("buses") ?? []).enumerated() {
            var b = try YAMLFields(node, file: file, path: "buses[\(i)]")
            let busName = try b.requiredString("name")
            guard buses.allSatisfy({ $0.name != busName }) else { throw b.fail("name", "a bus named \(busName) is already defined") }
            guard let kindText = try b.choice("kind", BusKind.allCases.map(\.rawValue)), let kind = BusKind(rawValue: kindText) else {
                throw BoardError(file: file, line: b.line, key: "buses[\(i)].kind", why: "missing: one of \(BusKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var bus = Bus(name: busName, kind: kind, device: nil, adapterName: nil, serial: SerialConfig(), spi: SPIConfig(), peer: nil, line: b.line)
            var known = ["name", "kind"]
            switch kind {
            case .i2c:
                bus.device = try b.string("device")
                bus.adapterName = try b.string("adapter")
                known += ["device", "adapter"]
                guard (bus.device == nil) != (bus.adapterName == nil) else {
                    throw BoardError(file: file, line: b.line, key: "buses[\(i)]", why: "give either device (/dev/i2c-N) or adapter (its name in /sys/class/i2c-adapter)")
                }
            case .spi:
                bus.device = try b.requiredString("device")
                if let v = try b.integer("mode", in: 0...3) { bus.spi.mode = UInt8(v) }
                if let v = try b.integer("speed_hz", in: 1_000...100_000_000) { bus.spi.speedHz = UInt32(v) }
                // Every driver here sends whole bytes.
                if let v = try b.integer("bits_per_word", in: 8...8) { bus.spi.bitsPerWord = UInt8(v) }
                known += ["device", "mode", "speed_hz", "bits_per_word"]
            case .serial, .simSerial:
                if kind == .serial { bus.device = try b.requiredString("device") } else { bus.peer = try b.requiredString("peer") }
                if let v = try b.integer("baud", in: 1200...921_600) {
                    guard [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600].contains(Int(v)) else {
                        throw b.fail("baud", "\(v) is not a standard rate (1200 ... 921600)")
                    }
                    bus.serial.baud = Int(v)
                }
                if let v = try b.integer("data_bits", in: 5...8) { bus.serial.dataBits = Int(v) }
                if let v = try b.choice("parity", Parity.allCases.map(\.rawValue)) { bus.serial.parity = Parity(rawValue: v) ?? .none }
                if let v = try b.integer("stop_bits", in: 1...2) { bus.serial.stopBits = Int(v) }
                if let v = try b.integer("response_timeout_ms", in: 10...60_000) { bus.options["response_timeout_ms"] = Int(v) }
                if let v = try b.integer("inter_character_timeout_ms", in: 1...1000) { bus.options["inter_character_timeout_ms"] = Int(v) }
                if let v = try b.integer("retries", in: 0...5) { bus.options["retries"] = Int(v) }
                known += [kind == .serial ? "device" : "peer", "baud", "data_bits", "parity", "stop_bits", "response_timeout_ms",
                          "inter_character_timeout_ms", "retries"]
            case .simI2C, .simSPI:
                break
            }
            try b.rejectUnknown(known: known)
            // One owner per device: two entries for one device would poll it from two threads.
            if let twin = buses.first(where: { ($0.device != nil && $0.device == bus.device) || ($0.adapterName != nil && $0.adapterName == bus.adapterName) }) {
                throw BoardError(file: file, line: bus.line, key: "buses[\(i)]", why: "\(bus.device ?? bus.adapterName ?? "") is already bus \(twin.name): name it once")
            }
            buses.append(bus)
        }

        var powerFail: PowerFailSpec?
        if var p = try top.mapping("power_fail") { powerFail = try PowerFailSpec.parse(&p) }
        var leds: [LEDSpec] = []
        if var l = try top.mapping("leds") {
            for role in ["status", "fault", "power"] {
                guard var led = try l.mapping(role) else { continue }
                let kind = try led.choice("kind", ["class", "gpio"]) ?? "class"
                let spec = LEDSpec(role: role, kind: kind, name: try led.requiredString(kind == "class" ? "name" : "line"),
                                   chip: kind == "gpio" ? try led.requiredString("chip") : nil,
                                   colour: try led.choice("colour", ["red", "yellow", "amber", "green", "blue", "white"]))
                try led.rejectUnknown(known: (kind == "class" ? ["kind", "name"] : ["kind", "chip", "line"]) + ["colour"])
                leds.append(spec)
            }
            try l.rejectUnknown(known: ["status", "fault", "power"])
        }

        var sensors: [Sensor] = []
        let sensorNodes = try top.sequence("sensors") ?? []
        // Counted first: the checks below compare sensors pairwise.
        if sensorNodes.count > Board.maxSensors {
            throw BoardError(file: file, line: sensorNodes[Board.maxSensors].mark?.line ?? 0, key: "sensors",
                             why: "\(sensorNodes.count) sensors, but a store keeps sequence numbers for \(Board.maxSensors) sources")
        }
        for (i, node) in sensorNodes.enumerated() {
            var s = try YAMLFields(node, file: file, path: "sensors[\(i)]")
            let sensorName = try s.requiredString("name")
            do { try SourceName.validate(sensorName) } catch { throw s.fail("name", "\(error)") }
            guard sensorName != SourceName.engine, !sensorName.hasPrefix(SourceName.engine + ".") else {
                throw s.fail("name", "names starting with \"edgelog\" are the engine's own")
            }
            guard sensors.allSatisfy({ $0.name != sensorName }) else { throw s.fail("name", "a sensor named \(sensorName) is already defined") }
            guard let driverName = try s.string("driver") else {
                throw BoardError(file: file, line: s.line, key: "sensors[\(i)].driver", why: "missing: one of \(DriverCatalog.names.joined(separator: ", "))")
            }
            guard let driver = DriverCatalog.driver(named: driverName) else {
                throw s.fail("driver", "unknown driver \(driverName) (known: \(DriverCatalog.names.joined(separator: ", ")))")
            }
            if !driver.needsBus && s.has("bus") { throw s.fail("bus", "\(driverName) is not on a bus: leave bus out") }
            let busName = try driver.needsBus ? s.requiredString("bus") : "-"
            var busKind: BusKind?
            if driver.needsBus {
                guard let bus = buses.first(where: { $0.name == busName }) else {
                    throw s.fail("bus", "no bus named \(busName) (buses: \(buses.map(\.name).joined(separator: ", ")))")
                }
                guard driver.busKinds.contains(bus.kind) else {
                    throw s.fail("bus", "\(driverName) needs a bus of kind \(driver.busKinds.map(\.rawValue).joined(separator: " or ")); \(busName) is \(bus.kind.rawValue)")
                }
                busKind = bus.kind
            }
            let period = try s.integer("period_ms", in: 1...86_400_000)
            if driver.polled && period == nil {
                throw BoardError(file: file, line: s.line, key: "sensors[\(i)].period_ms", why: "missing: how often to read, in milliseconds (1 ... 86400000)")
            }
            if !driver.polled && period != nil { throw s.fail("period_ms", "\(driverName) delivers readings as they arrive: it has no period") }
            var policy = OverloadPolicy.drop
            // Default: drop for polled sensors and GPIO edges (an edge held back is lost in the
            // kernel's 16-event buffer without a trace), backpressure for lines (the bytes wait).
            switch try s.choice("overload", ["drop", "backpressure", "decimate"]) ?? (driver.polled || driverName == "gpio_edges" ? "drop" : "backpressure") {
            case "backpressure": policy = .backpressure
            case "decimate": policy = .decimate(factor: Int(try s.integer("decimate_factor", in: 2...1000) ?? 4))
            default: policy = .drop
            }
            if case .decimate = policy {} else if s.has("decimate_factor") { throw s.fail("decimate_factor", "only with overload: decimate") }
            let queue = Int(try s.integer("queue", in: 4...65_536) ?? 64)
            let jitter = Int(try s.integer("jitter_bound_ms", in: 1...60_000) ?? 5)
            let image = try s.string("image")
            if image != nil, busKind != .simI2C, busKind != .simSPI {
                throw s.fail("image", "an image stands in for a device on a simulated bus (sim-i2c, sim-spi)")
            }
            if image == nil, busKind == .simI2C || busKind == .simSPI {
                throw BoardError(file: file, line: s.line, key: "sensors[\(i)].image", why: "missing: a device on a simulated bus needs its image file")
            }
            let settings = try driver.settings(&s)
            try s.rejectUnknown(known: ["name", "driver", "bus", "period_ms", "overload", "decimate_factor", "queue", "jitter_bound_ms", "image"] + driver.keys)
            sensors.append(Sensor(name: sensorName, driver: driverName, bus: busName, periodMs: Int(period ?? 0), policy: policy, queue: queue,
                                  jitterBoundMs: jitter, settings: settings, image: image, line: s.line))
        }
        // Two devices answering one address on one bus would each read the other's registers.
        for (i, a) in sensors.enumerated() {
            guard let address = a.settings.busAddress else { continue }
            if let b = sensors[..<i].first(where: { $0.bus == a.bus && $0.settings.busAddress == address }) {
                throw BoardError(file: file, line: a.line, key: "sensors[\(i)]",
                                 why: "\(a.name) and \(b.name) (line \(b.line)) are both at \(address) on bus \(a.bus)")
            }
        }
        // Standard input is one stream: one source reads it.
        let stdinSources = sensors.indices.filter { sensors[$0].driver == "stdin" }
        if stdinSources.count > 1 {
            throw BoardError(file: file, line: sensors[stdinSources[1]].line, key: "sensors[\(stdinSources[1])].driver",
                             why: "\(sensors[stdinSources[0]].name) already reads standard input: a board has one stdin source")
        }
        // An instrument that prints owns its line: its reader reads whatever arrives.
        for bus in buses where bus.kind == .serial || bus.kind == .simSerial {
            let on = sensors.enumerated().filter { $0.element.bus == bus.name }
            guard on.count > 1, let printer = on.first(where: { !(DriverCatalog.driver(named: $0.element.driver)?.polled ?? true) }),
                  let other = on.first(where: { $0.offset != printer.offset }) else { continue }
            let later = max(printer.offset, other.offset)
            throw BoardError(file: file, line: sensors[later].line, key: "sensors[\(later)].bus",
                             why: "\(printer.element.name) (\(printer.element.driver)) reads everything that arrives on \(bus.name): no other sensor can share that line")
        }
        if let problem = PackedGeometry.problem(storeSize: store.size, sectorSize: 512, segmentSize: Int(clamping: store.segmentSize)) {
            throw BoardError(file: file, line: 0, key: "store", why: problem)
        }
        try top.rejectUnknown(known: ["board", "description", "store", "buses", "power_fail", "leds", "sensors"])
        return Board(file: file, name: name, description: description, store: store, buses: buses, powerFail: powerFail, leds: leds, sensors: sensors,
                     directory: LocalFile.parent(of: file))
    }

    static func line(of error: YamlError) -> Int {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return 0
        }
    }

    static func summary(of error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
        default: return "\(error)"
        }
    }
}

extension RingFullPolicy {
    static var allNames: [String] { ["pause", "overwrite-acked", "overwrite-oldest"] }
}
