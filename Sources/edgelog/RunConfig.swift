// The logger's configuration file (docs/CLI.md, "edgelog run"): `key = value` lines, `#` comments.
// Every setting has an embedded default, so `edgelog run` works on a development machine with no
// file at all; a gateway keeps its settings in /etc/edgelog/edgelog.conf. Flags override the file.

import EdgelogLinux
import EdgelogStore

struct RunConfig: Equatable {
    static let systemPath = "/etc/edgelog/edgelog.conf"

    var device = "var/store.img"
    var keyDir: String? = "var/keys"
    var unsigned = false
    var anchor: String? = "var/anchor.json"
    var anchorInterval = 10
    var source = "stdin"
    var ringFull = RingFullPolicy.pause
    var maxAgeMs = 1000
    var blockMs = 2000
    /// Size of a file store created when `device` does not exist (never for a block device).
    var storeSize: UInt64 = 64 << 20
    var segmentSize: UInt64 = 32 << 10
    var stepThresholdMs = 100
    var untrustedErrorMs = 1000
    var timeStateInterval = 600

    struct Problem: Error, CustomStringConvertible {
        let path: String
        let line: Int
        let why: String
        var description: String { "\(path) line \(line): \(why)" }
    }

    /// Reads `path` over the defaults; every key must be known and every value valid.
    static func load(_ path: String) throws -> RunConfig {
        let text: String
        do { text = String(decoding: try LocalFile.read(path, limit: 64 << 10).bytes, as: UTF8.self) } catch {
            throw Problem(path: path, line: 0, why: "\(error)")
        }
        var config = RunConfig()
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            guard line.contains(where: { !$0.isWhitespace }) else { continue }
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw Problem(path: path, line: index + 1, why: "expected `key = value`")
            }
            let (key, value) = (parts[0], parts[1])
            func fail(_ why: String) -> Problem { Problem(path: path, line: index + 1, why: "\(key): \(why)") }
            func integer(_ range: ClosedRange<Int>) throws -> Int {
                guard let n = Int(value), range.contains(n) else { throw fail("\(value) is not a whole number in \(range)") }
                return n
            }
            func size() throws -> UInt64 {
                guard let s = ByteSize(argument: value) else { throw fail("\(value) is not a size (bytes, or with K, M, G)") }
                return s.bytes
            }
            switch key {
            case "device": config.device = value
            case "key_dir": config.keyDir = value
            case "unsigned":
                guard value == "true" || value == "false" else { throw fail("must be true or false") }
                config.unsigned = value == "true"
            case "anchor": config.anchor = value == "none" ? nil : value
            case "anchor_interval": config.anchorInterval = try integer(1...86_400)
            case "source": config.source = value
            case "ring_full":
                guard let policy = RingFullPolicy(rawValue: value) else { throw fail("must be pause, overwrite-acked or overwrite-oldest") }
                config.ringFull = policy
            case "max_age_ms": config.maxAgeMs = try integer(1...3_600_000)
            case "block_ms": config.blockMs = try integer(0...3_600_000)
            case "store_size": config.storeSize = try size()
            case "segment_size": config.segmentSize = try size()
            case "step_threshold_ms": config.stepThresholdMs = try integer(1...3_600_000)
            case "untrusted_error_ms": config.untrustedErrorMs = try integer(0...16_000)
            case "time_state_interval": config.timeStateInterval = try integer(1...86_400)
            default: throw fail("unknown setting")
            }
        }
        return config
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}
