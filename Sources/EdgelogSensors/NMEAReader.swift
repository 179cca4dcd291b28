// NMEA 0183 sentences from a GNSS receiver on a serial line.
// Source: NMEA 0183 (version 2.3/3.01/4.10 sentence structure as publicly documented, e.g. the
// gpsd project's "NMEA revealed" and receiver manuals): "$" + address (2-character talker id +
// 3-character sentence formatter) + comma-separated fields + "*" + two hex digits, the XOR of every
// byte between "$" and "*", then CR LF; at most 82 characters including "$" and CR LF. GGA: UTC
// time, latitude ddmm.mmmm N/S, longitude dddmm.mmmm E/W, fix quality (0 invalid), satellites in
// use, HDOP, altitude (M), geoid separation (M), DGPS age and station. RMC: UTC time, status (A
// valid, V warning), latitude, longitude, speed over ground in knots, course over ground in
// degrees true, date ddmmyy, magnetic variation, mode (2.3 and later).

import EdgelogHAL

public final class NMEAReader: EventSensor {
    /// 80 characters from "$" to the checksum: 82 with CR LF.
    public static let maxSentence = 80

    public let port: SerialPort
    public let requireChecksum: Bool
    private var source: LineSource

    public var location: String { port.path }

    /// Settings: `require_checksum` (default true; NMEA 0183 makes the checksum mandatory for GGA and
    /// RMC since version 2.3: false also accepts sentences without one).
    public init(port: SerialPort, requireChecksum: Bool = true) {
        self.port = port
        self.requireChecksum = requireChecksum
        self.source = LineSource(port: port, maxLength: Self.maxSentence)
    }

    public func start() throws(HardwareError) {
        try source.start()
    }

    public func next(timeoutMs: Int) throws(HardwareError) -> EventOutcome? {
        let path = port.path
        let require = requireChecksum
        return try source.next(timeoutMs: timeoutMs) { line in
            // Noise before a sentence (a burst without a line end) is rejected on its own, and the
            // sentence after it, starting at the last "$" or "!", is still read.
            var outcomes: [EventOutcome] = []
            var sentence = line[...]
            if let start = line.lastIndex(where: { $0 == UInt8(ascii: "$") || $0 == UInt8(ascii: "!") }), start > 0 {
                outcomes.append(.rejected(HardwareError(.badFrame, device: path, detail: "\(start) bytes of noise before a sentence")))
                sentence = line[start...]
            }
            do {
                outcomes.append(.reading(try Self.parse(Array(sentence), device: path, requireChecksum: require)))
            } catch let error as HardwareError {
                outcomes.append(.rejected(error))
            } catch {
                outcomes.append(.rejected(HardwareError(.badFrame, device: path, detail: "\(error)")))
            }
            return outcomes
        }
    }

    /// XOR of the bytes between "$" and "*".
    public static func checksum<C: Collection>(_ body: C) -> UInt8 where C.Element == UInt8 {
        body.reduce(0, ^)
    }

    /// One sentence (without CR LF) to its payload; `.checksum` or `.badFrame` errors name the sentence.
    public static func parse(_ line: [UInt8], device: String, requireChecksum: Bool = true) throws(HardwareError) -> Reading {
        func bad(_ detail: String, _ kind: HardwareError.Kind = .badFrame, _ what: String? = nil) -> HardwareError {
            HardwareError(kind, device: device, register: what, detail: detail)
        }
        guard line.count <= maxSentence else { throw bad("sentence of \(line.count) characters, NMEA allows \(maxSentence)") }
        guard let text = printableText(line) else { throw bad("non-printable byte in a sentence") }
        guard let first = line.first, first == UInt8(ascii: "$") || first == UInt8(ascii: "!") else {
            throw bad("line does not start with $: \(text.prefix(16))")
        }
        var body = line.dropFirst()
        if let star = body.lastIndex(of: UInt8(ascii: "*")) {
            let given = body[(star + 1)...]
            body = body[..<star]
            guard given.count == 2, let sum = UInt8(String(decoding: given, as: UTF8.self), radix: 16) else {
                throw bad("checksum field *\(String(decoding: given, as: UTF8.self)) is not two hex digits", .checksum, sentenceName(body))
            }
            let computed = checksum(body)
            guard sum == computed else {
                throw bad("checksum *\(String(decoding: given, as: UTF8.self)) does not match \(hex2(computed)) computed", .checksum, sentenceName(body))
            }
        } else if requireChecksum {
            throw bad("no checksum", .checksum, sentenceName(body))
        }
        let fields = String(decoding: body, as: UTF8.self).split(separator: ",", omittingEmptySubsequences: false)
        guard let address = fields.first, address.utf8.count >= 2,
              address.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) }) else {
            throw bad("no sentence address (talker and formatter)")
        }
        // A proprietary sentence is "P" + manufacturer + type; otherwise two-letter talker + formatter.
        let talker = address.first == "P" ? "P" : String(address.prefix(2))
        let formatter = String(address.dropFirst(talker.count))
        let name = "sentence \(address)"
        var reading: Reading
        do {
            switch formatter {
            case "GGA": reading = try gga(fields)
            case "RMC": reading = try rmc(fields)
            default:
                reading = Reading([("talker", .text(talker)), ("sentence", .text(formatter))])
                for (i, field) in fields.dropFirst().enumerated() {
                    reading.fields.append(("f\(i + 1)", .text(String(field))))
                }
                return reading
            }
        } catch let problem as FieldProblem {
            throw bad(problem.detail, .badFrame, name)
        } catch {
            throw bad("\(error)", .badFrame, name)
        }
        reading.fields.insert(contentsOf: [("talker", .text(talker)), ("sentence", .text(formatter))], at: 0)
        return reading
    }

    static func sentenceName(_ body: ArraySlice<UInt8>) -> String {
        let address = body.prefix { $0 != UInt8(ascii: ",") }.prefix(8)
        return "sentence " + String(decoding: address.filter { (0x20...0x7E).contains($0) }, as: UTF8.self)
    }

    struct FieldProblem: Error {
        let detail: String
    }

    private static func field(_ fields: [Substring], _ i: Int) -> Substring {
        i < fields.count ? fields[i] : ""
    }

    /// GGA: time_utc, lat_deg, lon_deg, fix_quality, satellites, hdop, altitude_m, geoid_separation_m.
    static func gga(_ f: [Substring]) throws -> Reading {
        guard f.count >= 10 else { throw FieldProblem(detail: "GGA with \(f.count - 1) fields, at least 9 needed") }
        let fix = try integer(field(f, 6), "fix quality", 0...9)
        let reading = Reading([
            ("time_utc", try time(field(f, 1))),
            ("lat_deg", try coordinate(field(f, 2), hemisphere: field(f, 3), latitude: true)),
            ("lon_deg", try coordinate(field(f, 4), hemisphere: field(f, 5), latitude: false)),
            ("fix_quality", fix),
            ("satellites", try integer(field(f, 7), "satellites", 0...99)),
            ("hdop", try decimal(field(f, 8), "hdop")),
            ("altitude_m", try decimal(field(f, 9), "altitude")),
            ("geoid_separation_m", try decimal(field(f, 11), "geoid separation")),
        ], quality: fix == .int(0) || fix == .null ? "no_fix" : nil)
        return reading
    }

    /// RMC: time_utc, status, lat_deg, lon_deg, speed_kn, course_deg, date, and mode if sent.
    static func rmc(_ f: [Substring]) throws -> Reading {
        guard f.count >= 10 else { throw FieldProblem(detail: "RMC with \(f.count - 1) fields, at least 9 needed") }
        let status = field(f, 2)
        guard status == "A" || status == "V" else { throw FieldProblem(detail: "RMC status \"\(status)\" is neither A nor V") }
        var fields: [(name: String, value: Value)] = [
            ("time_utc", try time(field(f, 1))),
            ("status", .text(String(status))),
            ("lat_deg", try coordinate(field(f, 3), hemisphere: field(f, 4), latitude: true)),
            ("lon_deg", try coordinate(field(f, 5), hemisphere: field(f, 6), latitude: false)),
            ("speed_kn", try decimal(field(f, 7), "speed")),
            ("course_deg", try decimal(field(f, 8), "course")),
            ("date", try date(field(f, 9))),
        ]
        let mode = field(f, 12)
        if !mode.isEmpty { fields.append(("mode", .text(String(mode)))) }
        return Reading(fields, quality: status == "V" || mode == "N" ? "no_fix" : nil)
    }

    static func decimal(_ text: Substring, _ what: String) throws -> Value {
        if text.isEmpty { return .null }
        guard let parsed = ExactDecimal.parse(text) else { throw FieldProblem(detail: "\(what) \"\(text)\" is not a number") }
        return ExactDecimal.value(parsed)
    }

    static func integer(_ text: Substring, _ what: String, _ range: ClosedRange<Int64>) throws -> Value {
        if text.isEmpty { return .null }
        guard text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), text.utf8.count <= 4, let n = Int64(text), range.contains(n) else {
            throw FieldProblem(detail: "\(what) \"\(text)\" is not an integer in \(range)")
        }
        return .int(n)
    }

    /// hhmmss[.s...] to "hh:mm:ss[.s...]".
    static func time(_ text: Substring) throws -> Value {
        if text.isEmpty { return .null }
        let b = Array(text.utf8)
        let digits = b.prefix(6)
        guard digits.count == 6, digits.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw FieldProblem(detail: "time \"\(text)\" is not hhmmss")
        }
        let hh = Int(digits[0] - 48) * 10 + Int(digits[1] - 48), mm = Int(digits[2] - 48) * 10 + Int(digits[3] - 48)
        let ss = Int(digits[4] - 48) * 10 + Int(digits[5] - 48)
        let fraction = b.dropFirst(6)
        guard hh < 24, mm < 60, ss < 61,
              fraction.isEmpty || (fraction.first == UInt8(ascii: ".") && fraction.count <= 10 && fraction.dropFirst().allSatisfy({ (0x30...0x39).contains($0) })) else {
            throw FieldProblem(detail: "time \"\(text)\" is not a UTC time of day")
        }
        let s = String(decoding: b, as: UTF8.self)
        let chars = Array(s)
        return .text(String(chars[0..<2]) + ":" + String(chars[2..<4]) + ":" + String(chars[4...]))
    }

    /// ddmmyy to "20yy-mm-dd" (yy 00...79) or "19yy-mm-dd" (80...99): NMEA sends two year digits.
    static func date(_ text: Substring) throws -> Value {
        if text.isEmpty { return .null }
        let b = Array(text.utf8)
        guard b.count == 6, b.allSatisfy({ (0x30...0x39).contains($0) }) else { throw FieldProblem(detail: "date \"\(text)\" is not ddmmyy") }
        let dd = Int(b[0] - 48) * 10 + Int(b[1] - 48), mm = Int(b[2] - 48) * 10 + Int(b[3] - 48), yy = Int(b[4] - 48) * 10 + Int(b[5] - 48)
        guard (1...31).contains(dd), (1...12).contains(mm) else { throw FieldProblem(detail: "date \"\(text)\" is not a calendar date") }
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return .text("\(yy < 80 ? 2000 + yy : 1900 + yy)-\(two(mm))-\(two(dd))")
    }

    /// ddmm.mmmm (latitude, 2 degree digits) or dddmm.mmmm (longitude, 3) with N/S or E/W to signed
    /// decimal degrees: degrees + minutes / 60, rounded half away from zero to three more decimals
    /// than the minutes carry (finer than the minutes' own resolution, which is 1/60 of it).
    static func coordinate(_ text: Substring, hemisphere: Substring, latitude: Bool) throws -> Value {
        if text.isEmpty && hemisphere.isEmpty { return .null }
        let what = latitude ? "latitude" : "longitude"
        let degreeDigits = latitude ? 2 : 3
        let b = Array(text.utf8)
        let point = b.firstIndex(of: UInt8(ascii: ".")) ?? b.count
        let minuteDecimals = b.count - Swift.min(b.count, point + 1)
        guard point == degreeDigits + 2, minuteDecimals <= 9,
              b[..<point].allSatisfy({ (0x30...0x39).contains($0) }),
              b[Swift.min(b.count, point + 1)...].allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw FieldProblem(detail: "\(what) \"\(text)\" is not \(latitude ? "ddmm.mmmm" : "dddmm.mmmm")")
        }
        var degrees: Int64 = 0
        for d in b[..<degreeDigits] { degrees = degrees * 10 + Int64(d - 48) }
        var minutes: Int64 = 0  // at scale minuteDecimals
        for d in b[degreeDigits..<point] { minutes = minutes * 10 + Int64(d - 48) }
        for d in b[Swift.min(b.count, point + 1)...] { minutes = minutes * 10 + Int64(d - 48) }
        var tenPower: Int64 = 1
        for _ in 0..<minuteDecimals { tenPower *= 10 }
        guard minutes < 60 * tenPower else { throw FieldProblem(detail: "\(what) \"\(text)\" has 60 or more minutes") }
        let scale = minuteDecimals + 3
        // degrees · 10^scale + round(minutes · 10^3 / 60) (minutes at scale minuteDecimals).
        let fraction = (minutes * 100 + 3) / 6
        let mantissa = degrees * tenPower * 1000 + fraction
        guard mantissa <= (latitude ? 90 : 180) * tenPower * 1000 else { throw FieldProblem(detail: "\(what) \"\(text)\" is out of range") }
        let positive = latitude ? "N" : "E", negative = latitude ? "S" : "W"
        guard hemisphere == positive || hemisphere == negative else {
            throw FieldProblem(detail: "\(what) hemisphere \"\(hemisphere)\" is not \(positive) or \(negative)")
        }
        return .fixed(hemisphere == negative ? -mantissa : mantissa, scale: scale)
    }

    private static func hex2(_ b: UInt8) -> String { String(b.hex.dropFirst(2)) }
}
