// A store in memory with the real pipeline, time path and ingress engine, for the ingress tests.

import EdgelogCore
import EdgelogHAL
import EdgelogIngress
import EdgelogLinux
import EdgelogStore
import EdgelogTestKit
import EdgelogTimebase
import FoundationEssentials
import Glibc

final class IngressRig {
    let device: MemoryBlockDevice
    let store: EvidenceStore
    let pipeline: any RecordPipeline
    let timebase: Timebase
    let queue: IngressQueue
    let engine: IngressEngine

    init(size: Int = 4 << 20) throws {
        device = MemoryBlockDevice(size: size)
        _ = try EvidenceStore.format(device: device, segmentSize: 16 << 10, storeUUID: [UInt8](repeating: 7, count: 16), wallNs: 1_790_000_000_000_000_000, force: false)
        let source = LinuxTimeSource()
        (store, _) = try EvidenceStore.open(device: device, clock: { Timebase.oneShot(source: source, config: TimebaseConfig()) })
        pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 20_000_000)) { _ in }
        timebase = Timebase(source: source, config: TimebaseConfig())
        queue = IngressQueue(timebase: timebase)
        engine = IngressEngine(pipeline: pipeline, queue: queue)
    }

    /// Runs the sources for `seconds`, stops, closes the store and returns what it committed.
    func run(_ specs: [SourceSpec], seconds: Double) throws -> [Exported] {
        engine.start(specs)
        usleep(UInt32(seconds * 1_000_000))
        try engine.stop()
        try pipeline.close()
        return try exported(device).map { Exported(type: $0.type, source: $0.source, seq: $0.seq, payload: $0.payload) }
    }
}

struct Exported {
    var type: UInt16
    var source: String
    var seq: UInt64
    var payload: String
    var typeName: String { RecordType.exportName(type) }
}

/// A polled sensor whose reads follow a script (then repeat the last step), optionally slow.
final class ScriptedSensor: PolledSensor, @unchecked Sendable {
    enum Step {
        case value(Int64)
        case fail(HardwareError.Kind)
    }

    let location: String
    private var steps: [Step]
    private let delayUs: UInt32
    private(set) var starts = 0
    private(set) var reads = 0

    init(_ location: String, steps: [Step], delayUs: UInt32 = 0) {
        self.location = location
        self.steps = steps
        self.delayUs = delayUs
    }

    func start() throws(HardwareError) { starts += 1 }

    func read() throws(HardwareError) -> Reading {
        reads += 1
        if delayUs > 0 { usleep(delayUs) }
        let step = steps.count > 1 ? steps.removeFirst() : steps[0]
        switch step {
        case .value(let v): return Reading([("value", .int(v))])
        case .fail(let kind):
            throw HardwareError(kind, device: "/dev/i2c-9", address: "0x40", register: "register 0x00", errno: kind == .timeout ? ETIMEDOUT : EIO, detail: "scripted")
        }
    }
}

/// A flat JSON value of a payload, as FoundationEssentials' decoder reads it.
enum Scalar: Decodable, Equatable {
    case int(Int64), number(Double), text(String), bool(Bool), null, other

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let v = try? c.decode(Int64.self) { self = .int(v) }
        else if let v = try? c.decode(Double.self) { self = .number(v) }
        else if let v = try? c.decode(Bool.self) { self = .bool(v) }
        else if let v = try? c.decode(String.self) { self = .text(v) }
        else { self = .other }
    }

    var int: Int64? { if case .int(let v) = self { v } else { nil } }
    var text: String? { if case .text(let v) = self { v } else { nil } }
}

/// The payload's members (nested values are `.other`).
func fields(_ payload: String) -> [String: Scalar] {
    (try? JSONDecoder().decode([String: Scalar].self, from: Data(payload.utf8))) ?? [:]
}
