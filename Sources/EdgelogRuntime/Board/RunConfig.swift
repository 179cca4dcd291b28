// The writer's settings file for `edgelog run` without a board (docs/CLI.md, "edgelog run"): YAML,
// the same format as board files, read through Yams and checked key by key. Every setting has an
// embedded default, so `edgelog run` works on a development machine with no file at all; a gateway
// keeps its settings in /etc/edgelog/edgelog.yaml. Flags override the file.

import EdgelogLinux
import EdgelogStore
import Yams

public struct RunConfig: Equatable, Sendable {
    public static let systemPath = "/etc/edgelog/edgelog.yaml"

    public var device = "var/store.img"
    public var keyDir: String? = "var/keys"
    public var unsigned = false
    public var anchor: String? = "var/anchor.json"
    public var anchorInterval = 10
    public var source = "stdin"
    public var ringFull = RingFullPolicy.pause
    public var maxAgeMs = 1000
    public var blockMs = 2000
    /// Size of a file store created when `device` does not exist (never for a block device).
    public var storeSize: UInt64 = 64 << 20
    public var segmentSize: UInt64 = 32 << 10
    public var stepThresholdMs = 100
    public var untrustedErrorMs = 1000
    public var timeStateInterval = 600

    public init() {}

    public static let keys = ["device", "key_dir", "unsigned", "anchor", "anchor_interval", "source", "ring_full", "max_age_ms", "block_ms",
                              "store_size", "segment_size", "step_threshold_ms", "untrusted_error_ms", "time_state_interval"]

    /// Reads `path` over the defaults; every key must be known and every value valid.
    public static func load(_ path: String) throws(BoardError) -> RunConfig {
        var fields = try YAMLFields.load(path, what: "settings file")
        var config = RunConfig()
        if let v = try fields.string("device") { config.device = v }
        if let v = try fields.string("key_dir") { config.keyDir = v }
        if let v = try fields.bool("unsigned") { config.unsigned = v }
        if let v = try fields.string("anchor") { config.anchor = v == "none" ? nil : v }
        if let v = try fields.integer("anchor_interval", in: 1...86_400) { config.anchorInterval = Int(v) }
        if let v = try fields.string("source") { config.source = v }
        if let v = try fields.choice("ring_full", RingFullPolicy.allNames) { config.ringFull = RingFullPolicy(rawValue: v) ?? .pause }
        if let v = try fields.integer("max_age_ms", in: 1...3_600_000) { config.maxAgeMs = Int(v) }
        if let v = try fields.integer("block_ms", in: 0...3_600_000) { config.blockMs = Int(v) }
        if let v = try fields.size("store_size") { config.storeSize = v }
        if let v = try fields.size("segment_size") { config.segmentSize = v }
        if let v = try fields.integer("step_threshold_ms", in: 1...3_600_000) { config.stepThresholdMs = Int(v) }
        if let v = try fields.integer("untrusted_error_ms", in: 0...16_000) { config.untrustedErrorMs = Int(v) }
        if let v = try fields.integer("time_state_interval", in: 1...86_400) { config.timeStateInterval = Int(v) }
        try fields.rejectUnknown(known: keys)
        if let problem = PackedGeometry.problem(storeSize: config.storeSize, sectorSize: 512, segmentSize: Int(clamping: config.segmentSize)) {
            throw BoardError(file: path, line: fields.lineOf(fields.has("store_size") ? "store_size" : "segment_size"), key: "store_size", why: problem)
        }
        return config
    }
}

extension RunConfig {
    /// The writer's settings these stand for (`run` without a board).
    public var writerSettings: WriterSettings {
        var writer = WriterSettings(device: device)
        writer.ringFull = ringFull
        writer.maxAgeMs = maxAgeMs
        writer.blockMs = blockMs
        writer.keyDir = unsigned ? nil : keyDir
        writer.anchor = anchor
        writer.anchorInterval = anchorInterval
        writer.time = WriterJob.timeConfig(stepThresholdMs: stepThresholdMs, untrustedErrorMs: untrustedErrorMs, stateIntervalS: timeStateInterval)
        return writer
    }
}
