import Testing
import EdgelogHAL
@testable import EdgelogSensors

let gga = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
let rmc = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"

@Suite struct NMEATests {
    @Test func knownChecksums() {
        // The classic GGA and RMC examples with their published checksums *47 and *6A.
        #expect(NMEAReader.checksum(Array(gga.utf8).dropFirst().prefix { $0 != UInt8(ascii: "*") }) == 0x47)
        #expect(NMEAReader.checksum(Array(rmc.utf8).dropFirst().prefix { $0 != UInt8(ascii: "*") }) == 0x6A)
    }

    @Test func ggaFields() throws {
        let r = try NMEAReader.parse(Array(gga.utf8), device: "d")
        // 48° 07.038' N = 48.1173°, 11° 31.000' E = 11.516666...° rounded to 6 decimals.
        #expect(json(r) == #"{"talker":"GP","sentence":"GGA","time_utc":"12:35:19","lat_deg":48.117300,"lon_deg":11.516667,"fix_quality":1,"satellites":8,"hdop":0.9,"altitude_m":545.4,"geoid_separation_m":46.9}"#)
    }

    @Test func rmcFields() throws {
        let r = try NMEAReader.parse(Array(rmc.utf8), device: "d")
        #expect(json(r) == #"{"talker":"GP","sentence":"RMC","time_utc":"12:35:19","status":"A","lat_deg":48.117300,"lon_deg":11.516667,"speed_kn":22.4,"course_deg":84.4,"date":"1994-03-23"}"#)
    }

    @Test func southWestNoFixAndOtherSentences() throws {
        let body = "GNGGA,001043.00,3351.6219,S,15112.5740,W,0,00,99.99,,,,,,"
        let line = "$" + body + "*" + String(NMEAReader.checksum(Array(body.utf8)), radix: 16, uppercase: true).leftPadded
        let r = try NMEAReader.parse(Array(line.utf8), device: "d")
        #expect(r["lat_deg"] == .fixed(-338_603_650, scale: 7))  // 33 + 51.6219/60 = 33.8603650
        #expect(r["lon_deg"] == .fixed(-1_512_095_667, scale: 7))  // 151 + 12.5740/60 = 151.20956666...
        #expect(r["time_utc"] == .text("00:10:43.00"))
        #expect(r["altitude_m"] == .null)
        #expect(r.quality == "no_fix")
        // A sentence the reader does not parse is kept as its fields' text.
        let gsv = "$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74"
        let other = try NMEAReader.parse(Array(gsv.utf8), device: "d")
        #expect(other["talker"] == .text("GP") && other["sentence"] == .text("GSV"))
        #expect(other["f1"] == .text("3") && other["f19"] == .text("00"))
    }

    @Test func rejectsWithoutStopping() throws {
        let talker = LineTalkerSimulator(lines: [gga, "\u{01}\u{02}garbage", rmc, "$GPGGA," + String(repeating: "9", count: 100) + "*00", gga], intervalMs: 1000, repeats: false)
        let port = SimulatedSerialPort(path: "/dev/ttyUSB0", config: SerialConfig(baud: 4800), peer: talker)
        let reader = NMEAReader(port: port)
        try reader.start()
        var outcomes: [EventOutcome] = []
        for _ in 0..<10 {
            if let o = try reader.next(timeoutMs: 1000) { outcomes.append(o) }
        }
        #expect(outcomes.count == 5)
        guard outcomes.count == 5 else { return }
        if case .reading(let r) = outcomes[0] { #expect(r["sentence"] == .text("GGA")) } else { Issue.record("first not a reading") }
        if case .rejected(let e) = outcomes[1] { #expect(e.kind == .badFrame && e.device == "/dev/ttyUSB0") } else { Issue.record("garbage accepted") }
        if case .reading(let r) = outcomes[2] { #expect(r["sentence"] == .text("RMC")) } else { Issue.record("RMC not read") }
        if case .rejected(let e) = outcomes[3] { #expect(e.kind == .badFrame && e.detail.contains("longer than 80")) } else { Issue.record("over-long accepted") }
        if case .reading = outcomes[4] {} else { Issue.record("reader did not go on") }
    }

    @Test func noiseBeforeASentence() throws {
        // A burst of noise without a line end, then a sentence on the same line (the HIL talker's case).
        let port = SimulatedSerialPort(peer: LineTalkerSimulator(lines: ["\u{AA}U noise $GPGGA,12", "xx" + gga], repeats: false))
        let reader = NMEAReader(port: port)
        var outcomes: [EventOutcome] = []
        for _ in 0..<6 { if let o = try reader.next(timeoutMs: 1000) { outcomes.append(o) } }
        #expect(outcomes.count == 4)
        guard outcomes.count == 4 else { return }
        if case .rejected(let e) = outcomes[0] { #expect(e.detail == "10 bytes of noise before a sentence") } else { Issue.record("noise accepted") }
        if case .rejected(let e) = outcomes[1] { #expect(e.kind == .checksum) } else { Issue.record("cut sentence accepted") }
        if case .rejected = outcomes[2] {} else { Issue.record("noise accepted") }
        if case .reading(let r) = outcomes[3] { #expect(r["fix_quality"] == .int(1)) } else { Issue.record("sentence after noise lost") }
    }

    @Test func badChecksumsInjected() throws {
        let talker = LineTalkerSimulator(lines: [gga, rmc], intervalMs: 100, corruptEvery: 2)
        let port = SimulatedSerialPort(peer: talker)
        let reader = NMEAReader(port: port)
        var kinds: [String] = []
        for _ in 0..<4 {
            switch try reader.next(timeoutMs: 100) {
            case .reading(let r)?: kinds.append("reading " + (r["sentence"].map { "\($0)" } ?? ""))
            case .rejected(let e)?: kinds.append("rejected \(e.kind.rawValue) \(e.register ?? "")")
            case nil: kinds.append("none")
            }
        }
        #expect(kinds == ["reading text(\"GGA\")", "rejected checksum sentence GPRMC", "reading text(\"GGA\")", "rejected checksum sentence GPRMC"])
        #expect(LineTalkerSimulator.corrupt(Array("$GPXXX,1*47".utf8)) == Array("$GPXXX,1*1D".utf8))
    }

    @Test func malformedSentences() {
        func reject(_ s: String) -> HardwareError? {
            do { _ = try NMEAReader.parse(Array(s.utf8), device: "d"); return nil } catch { return error }
        }
        #expect(reject("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48")?.kind == .checksum)
        #expect(reject("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")?.kind == .checksum)
        #expect(reject("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*4")?.kind == .checksum)
        #expect(reject("GPGGA,123519*47")?.kind == .badFrame)
        // Field errors with a valid checksum: minutes over 60, hemisphere, time.
        for body in ["GPGGA,123519,4861.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
                     "GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
                     "GPGGA,253519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
                     "GPRMC,123519,Q,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"] {
            let line = "$" + body + "*" + String(NMEAReader.checksum(Array(body.utf8)), radix: 16, uppercase: true).leftPadded
            let error = reject(line)
            #expect(error?.kind == .badFrame)
            #expect(error?.register?.hasPrefix("sentence GP") == true)
        }
        // Without a checksum, accepted only when the board file says so.
        let bare = Array(gga.utf8.dropLast(3))
        #expect((try? NMEAReader.parse(bare, device: "d", requireChecksum: false))?["fix_quality"] == .int(1))
    }
}

extension String {
    var leftPadded: String { count < 2 ? "0" + self : self }
}


@Suite struct DelimitedLineTests {
    @Test func balanceLines() throws {
        let talker = LineTalkerSimulator(lines: ["ST,GS,+  123.45 g", "US,GS,-   0.07 g", "ST,GS,+12.3", "OL,GS,++++++ g", "ST,GS", "ST,NT,+  1.50 kg"],
                                         intervalMs: 500, repeats: false, lineEnding: "\r\n")
        let port = SimulatedSerialPort(path: "/dev/ttyS2", config: SerialConfig(baud: 9600), peer: talker)
        let reader = try DelimitedLineReader(port: port, delimiter: ",", fields: [LineField("stability", .text), LineField("mode", .skip), LineField("weight")])
        try reader.start()
        var outcomes: [EventOutcome] = []
        for _ in 0..<8 { if let o = try reader.next(timeoutMs: 500) { outcomes.append(o) } }
        #expect(outcomes.count == 6)
        guard outcomes.count == 6 else { return }
        if case .reading(let r) = outcomes[0] {
            #expect(json(r) == #"{"stability":"ST","weight":123.45,"weight_unit":"g"}"#)
        } else { Issue.record("line 1") }
        if case .reading(let r) = outcomes[1] { #expect(r["weight"] == .fixed(-7, scale: 2)) } else { Issue.record("line 2") }
        if case .reading(let r) = outcomes[2] { #expect(json(r) == #"{"stability":"ST","weight":12.3}"#) } else { Issue.record("line 3") }
        if case .rejected(let e) = outcomes[3] { #expect(e.kind == .badFrame && e.register == "field weight") } else { Issue.record("overload accepted") }
        if case .rejected(let e) = outcomes[4] { #expect(e.kind == .badFrame && e.detail.hasPrefix("2 fields")) } else { Issue.record("short line accepted") }
        if case .reading(let r) = outcomes[5] { #expect(r["weight_unit"] == .text("kg")) } else { Issue.record("reader did not go on") }
    }

    @Test func whitespaceDelimitedMeter() throws {
        let port = SimulatedSerialPort(peer: LineTalkerSimulator(lines: ["  12.340   0.0561  V\t"], repeats: false))
        let reader = try DelimitedLineReader(port: port, delimiter: " ", fields: [LineField("voltage_v"), LineField("current_a"), LineField("unit", .text)])
        guard case .reading(let r)? = try reader.next(timeoutMs: 10) else {
            Issue.record("no reading")
            return
        }
        #expect(json(r) == #"{"voltage_v":12.340,"current_a":0.0561,"unit":"V"}"#)
    }

    @Test func overlongAndControlBytes() throws {
        let port = SimulatedSerialPort(peer: LineTalkerSimulator(lines: [String(repeating: "1", count: 300), "1;2\u{07}", "3;4"], repeats: false))
        let reader = try DelimitedLineReader(port: port, delimiter: ";", fields: [LineField("a"), LineField("b")], maxLineLength: 64)
        var outcomes: [EventOutcome] = []
        for _ in 0..<5 { if let o = try reader.next(timeoutMs: 1000) { outcomes.append(o) } }
        #expect(outcomes.count == 3)
        guard outcomes.count == 3 else { return }
        if case .rejected(let e) = outcomes[0] { #expect(e.detail == "line of 300 bytes, longer than 64: dropped") } else { Issue.record("over-long accepted") }
        if case .rejected(let e) = outcomes[1] { #expect(e.kind == .badFrame) } else { Issue.record("control byte accepted") }
        if case .reading(let r) = outcomes[2] { #expect(json(r) == #"{"a":3,"b":4}"#) } else { Issue.record("reader did not go on") }
    }

    @Test func invalidSettings() {
        let port = SimulatedSerialPort(peer: LineTalkerSimulator(lines: []))
        #expect(throws: HardwareError.self) { try DelimitedLineReader(port: port, delimiter: "", fields: [LineField("a")]) }
        #expect(throws: HardwareError.self) { try DelimitedLineReader(port: port, fields: []) }
        #expect(throws: HardwareError.self) { try DelimitedLineReader(port: port, fields: [LineField("a"), LineField("a")]) }
        #expect(throws: HardwareError.self) { try DelimitedLineReader(port: port, fields: [LineField("Weight")]) }
        #expect(throws: HardwareError.self) { try DelimitedLineReader(port: port, fields: [LineField("w"), LineField("w_unit", .text)]) }
        #expect(throws: HardwareError.self) { try DelimitedLineReader(port: port, fields: [LineField("a")], maxLineLength: 4) }
    }
}
