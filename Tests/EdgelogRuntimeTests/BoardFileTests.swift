// Board files: every kind of mistake is an error naming the file, the line and the key; the shipped
// boards are valid.

import EdgelogLinux
import EdgelogRuntime
import Testing

@Suite("Board files")
struct BoardFileTests {
    static let good = """
        board: t
        store:
          path: store.img
        buses:
          - name: i2c
            kind: i2c
            device: /dev/i2c-1
        sensors:
          - name: env
            driver: bme280
            bus: i2c
            address: 0x76
            period_ms: 100
        """

    func check(_ text: String) -> BoardError? {
        do {
            let board = try Board.parse(text, file: "t.yaml")
            _ = try BoardSources.build(board, check: true)
            return nil
        } catch {
            return error
        }
    }

    @Test("a valid board parses")
    func valid() throws {
        let board = try Board.parse(Self.good, file: "t.yaml")
        #expect(board.sensors.count == 1 && board.sensors[0].settings.busAddress == "0x76" && board.sensors[0].periodMs == 100)
    }

    @Test("each kind of mistake names its file, line and key", arguments: [
        // (edit, expected line, expected key, words in the reason)
        ("    period_ms: 100\n    colour: red", 14, "sensors[0].colour", "unknown key"),
        ("", 9, "sensors[0].period_ms", "missing"),
        ("    period_ms: 0", 13, "sensors[0].period_ms", "outside 1...86400000"),
        ("    period_ms: often", 13, "sensors[0].period_ms", "whole number"),
        ("    period_ms: 100\n  - name: env2\n    driver: bme280\n    bus: i2c\n    address: 0x76\n    period_ms: 100", 14, "sensors[1]", "both at 0x76"),
        ("    period_ms: 100\n  - name: x\n    driver: bme999\n    bus: i2c\n    period_ms: 5", 15, "sensors[1].driver", "unknown driver bme999"),
        ("    period_ms: 100\n  - name: x\n    driver: bme280\n    bus: nowhere\n    period_ms: 5", 16, "sensors[1].bus", "no bus named nowhere"),
        ("    period_ms: 100\n  - name: edgelog.x\n    driver: bme280\n    bus: i2c\n    period_ms: 5", 14, "sensors[1].name", "engine's own"),
    ])
    func mistakes(edit: String, line: Int, key: String, words: String) throws {
        let text = Self.good.replacingAll("    period_ms: 100", edit)
        let error = try #require(check(text))
        #expect(error.file == "t.yaml" && error.line == line && error.key == key && error.why.contains(words), "\(error)")
    }

    @Test("a bad address is refused by the driver's own rule, naming the sensor")
    func badAddress() throws {
        let error = try #require(check(Self.good.replacingAll("address: 0x76", "address: 0x50")))
        #expect(error.line == 9 && error.key == "sensors[0]" && error.why.contains("0x76 or 0x77"), "\(error)")
        let range = try #require(check(Self.good.replacingAll("address: 0x76", "address: 0x80")))
        #expect(range.line == 12 && range.key == "sensors[0].address" && range.why.contains("outside"), "\(range)")
    }

    @Test("a default address counts as an address; a printing instrument owns its line; the store's geometry is checked")
    func crossChecks() throws {
        let twoDefaults = Self.good.replacingAll("    address: 0x76\n", "") + "\n  - name: env2\n    driver: bme280\n    bus: i2c\n    period_ms: 100\n"
        let duplicate = try #require(check(twoDefaults))
        #expect(duplicate.key == "sensors[1]" && duplicate.why.contains("both at 0x76"), "\(duplicate)")
        let shared = """
            board: t
            buses:
              - {name: line, kind: serial, device: /dev/ttyS1}
            sensors:
              - {name: gps, driver: nmea, bus: line}
              - {name: meter, driver: modbus, bus: line, slave: 1, function: 3, register: 0, count: 1, period_ms: 100}
            """
        let owner = try #require(check(shared))
        #expect(owner.line == 6 && owner.key == "sensors[1].bus" && owner.why.contains("no other sensor can share"), "\(owner)")
        let small = try #require(check(Self.good.replacingAll("  path: store.img", "  path: store.img\n  size: 64K")))
        #expect(small.key == "store" && small.why.contains("segments"), "\(small)")
        let modbus = try #require(check(shared.replacingAll("  - {name: gps, driver: nmea, bus: line}\n", "").replacingAll("slave: 1, ", "")))
        #expect(modbus.key == "sensors[0].slave" && modbus.why.contains("missing"), "\(modbus)")
    }

    @Test("hostile values are board errors, never a crash: a huge Modbus offset, a bus on a bus-less driver, one device named twice")
    func hostileValues() throws {
        let modbus = """
            board: t
            buses:
              - {name: line, kind: serial, device: /dev/ttyS1}
            sensors:
              - name: meter
                driver: modbus
                bus: line
                slave: 1
                function: 3
                register: 0
                count: 2
                period_ms: 100
                fields:
                  - {name: x, offset: 9223372036854775807}
            """
        let offset = try #require(check(modbus))
        #expect(offset.key == "sensors[0]" && offset.why.contains("offset 0...124"), "\(offset)")
        let gpio = try #require(check("board: t\nsensors:\n  - {name: p, driver: gpio_edges, chip: gpiochip0, line: PULSE, bus: x}\n"))
        #expect(gpio.key == "sensors[0].bus" && gpio.why.contains("not on a bus"), "\(gpio)")
        let twice = try #require(check("board: t\nbuses:\n  - {name: a, kind: serial, device: /dev/ttyS1}\n  - {name: b, kind: serial, device: /dev/ttyS1}\n"))
        #expect(twice.key == "buses[1]" && twice.why.contains("already bus a"), "\(twice)")
    }

    @Test("YAML that does not parse, a missing board name, and more sensors than the store holds")
    func wholeFile() throws {
        let syntax = try #require(check("board: t\nsensors: [\n"))
        #expect(syntax.line >= 2 && syntax.why.contains("not valid YAML"), "\(syntax)")
        let unnamed = try #require(check("store:\n  path: x\n"))
        #expect(unnamed.key == "board" && unnamed.why.contains("missing"), "\(unnamed)")
        var many = "board: t\nbuses:\n  - name: s\n    kind: sim-spi\nsensors:\n"
        for i in 0..<31 { many += "  - name: s\(i)\n    driver: max31855\n    bus: s\n    image: x.yaml\n    period_ms: 10\n" }
        let tooMany = try #require(check(many))
        #expect(tooMany.key == "sensors" && tooMany.why.contains("30 sources") && tooMany.line == 5 + 30 * 5 + 1, "\(tooMany)")
        let unknownTop = try #require(check(Self.good + "\nextra: 1\n"))
        #expect(unknownTop.key == "extra" && unknownTop.why.contains("unknown key"), "\(unknownTop)")
    }

    @Test("the shipped boards are valid", arguments: ["sim.yaml", "qemu.yaml", "raspberry-pi-4.yaml", "beaglebone-black.yaml"])
    func shipped(name: String) throws {
        let path = Self.repository + "/board/" + name
        let board = try Board.load(path)
        let built = try BoardSources.build(board, check: true)
        #expect(built.specs.count == board.sensors.count && !board.sensors.isEmpty)
    }

    static var repository: String {
        var dir = #filePath
        for _ in 0..<3 { dir = LocalFile.parent(of: dir) }
        return dir
    }
}

extension String {
    func replacingAll(_ a: String, _ b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
