// Readings as a logger's usual load makes them (issue 12, workload a): N BME280-like sources polled
// once a second, values that random-walk as a room's or a field's do, printed as the BME280 driver
// prints them (temperature in centidegrees, pressure in 1/256 Pa, humidity in 1/1024 %RH, exactly),
// with capture times a few hundred microseconds apart inside each second, and the time quality of a
// synchronized clock whose error estimate moves a little every few seconds.

import EdgelogStore

public struct SensorWorkload {
    public let sources: Int
    private var rng: SplitMix64
    private var temperature: [Int]      // centidegrees
    private var pressureQ: [Int]        // Pa × 256
    private var humidityQ: [Int]        // %RH × 1024
    private var seq: [UInt64]
    public private(set) var mono: UInt64
    private var second: Int64 = 0
    private let wallBase: Int64 = 1_790_000_000_000_000_000
    private let bootBase: Int64 = 12_000_000_000
    private var maxError: UInt32 = 8_000
    private var estError: UInt32 = 350

    public init(sources: Int = 20, seed: UInt64 = 12, firstMono: UInt64 = 1) {
        self.sources = sources
        rng = SplitMix64(seed: seed)
        var r = SplitMix64(seed: seed ^ 0x5EED)
        temperature = (0..<sources).map { _ in 1800 + Int(r.next() % 700) }
        pressureQ = (0..<sources).map { _ in (98_000 + Int(r.next() % 5000)) * 256 + Int(r.next() % 256) }
        humidityQ = (0..<sources).map { _ in (30 + Int(r.next() % 40)) * 1024 + Int(r.next() % 1024) }
        seq = Array(repeating: 0, count: sources)
        mono = firstMono - 1
    }

    private mutating func step(_ range: Int) -> Int { Int(rng.next() % UInt64(2 * range + 1)) - range }

    private static func fixed(_ units: Int, denominatorPower2: Int, decimals: Int) -> String {
        // units / 2^p printed with `decimals` digits, exactly (2^p divides 10^decimals).
        let whole = units >> denominatorPower2
        let frac = units & ((1 << denominatorPower2) - 1)
        var scaled = frac
        for _ in 0..<decimals { scaled *= 10 }
        scaled >>= denominatorPower2
        var digits = String(scaled)
        while digits.count < decimals { digits = "0" + digits }
        return "\(whole).\(digits)"
    }

    /// One second's readings: one record per source.
    public mutating func nextSecond() -> [PackedRecord] {
        second += 1
        if second % 8 == 0 {
            maxError = UInt32(clamping: Int(maxError) + step(400))
            estError = UInt32(clamping: max(50, Int(estError) + step(40)))
        }
        var out: [PackedRecord] = []
        out.reserveCapacity(sources)
        var offsetNs: Int64 = Int64(rng.next() % 2_000_000)
        for i in 0..<sources {
            temperature[i] += step(3)
            pressureQ[i] += step(40)
            humidityQ[i] += step(60)
            let t = temperature[i]
            let tText = "\(t / 100).\(String(repeating: "0", count: t % 100 < 10 ? 1 : 0))\(t % 100)"
            let json = "{\"temperature_c\":\(tText),\"pressure_pa\":\(Self.fixed(pressureQ[i], denominatorPower2: 8, decimals: 8)),"
                + "\"humidity_pct\":\(Self.fixed(humidityQ[i], denominatorPower2: 10, decimals: 10))}"
            seq[i] += 1
            mono += 1
            offsetNs += 300_000 + Int64(rng.next() % 400_000)
            let wall = wallBase + second * 1_000_000_000 + offsetNs
            let boot = bootBase + second * 1_000_000_000 + offsetNs + 17
            let time = CaptureTime(wallNs: wall, bootNs: boot, flags: [.synced], maxErrorUs: maxError, estErrorUs: estError,
                                   lastSyncNs: wallBase + (second / 16) * 16_000_000_000)
            out.append(PackedRecord(rawType: 1, source: "env.bme280-\(i + 1)", seq: seq[i], mono: mono, time: time, bootSeq: 3,
                                    payload: Array(json.utf8)))
        }
        return out
    }
}
