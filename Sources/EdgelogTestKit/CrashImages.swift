// Builds the images a power cut can leave, from a FaultBlockDevice's log (docs/DESIGN.md, proof).
// A cut at operation k means operations 0..<k were issued and k, if a write, was in progress.
// Writes issued since the last successful flush may each have landed or not (any subset: the
// device may reorder); the write in progress may be torn at sector granularity, and the sectors
// it did not reach may hold their old bytes or garbage.

import EdgelogStore

public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public enum CrashVariant: String, CaseIterable, Sendable {
    /// Every pending write landed; the cut write did not start.
    case pendingKept = "kept"
    /// No pending write landed.
    case pendingDropped = "dropped"
    /// A random subset of pending writes landed (reordering).
    case pendingReordered = "reordered"
    /// Pending kept; the cut write landed up to a random 512-byte boundary.
    case torn512 = "torn512"
    /// Pending kept; the cut write landed up to a random 4 KiB boundary.
    case torn4K = "torn4k"
    /// Random pending subset; a random subset of the cut write's sectors landed, the rest garbage.
    case garbage = "garbage"
}

public struct CrashPoint: CustomStringConvertible, Sendable {
    public var cut: Int
    public var variant: CrashVariant
    public var seed: UInt64
    public init(cut: Int, variant: CrashVariant, seed: UInt64) {
        self.cut = cut
        self.variant = variant
        self.seed = seed
    }
    public var description: String { "cut=\(cut) variant=\(variant.rawValue) seed=\(seed)" }
}

public struct CrashImageBuilder {
    public let base: [UInt8]
    public let log: [FaultBlockDevice.Operation]

    public init(device: FaultBlockDevice) {
        base = device.base
        log = device.log
    }

    /// Op indices at which a cut is interesting: every operation, and the end.
    public var cuts: Range<Int> { 0..<(log.count + 1) }

    /// The image after a cut, reproducible from the point's seed.
    public func image(at point: CrashPoint, sectorSize: Int) -> [UInt8] {
        var rng = SplitMix64(seed: point.seed)
        // Durable: base plus every write before the last successful flush before the cut.
        var lastFlush = -1
        for i in 0..<point.cut where log[i] == .flush { lastFlush = i }
        var image = base
        var pending: [(UInt64, [UInt8])] = []
        for i in 0..<point.cut {
            guard case .write(let offset, let data) = log[i] else { continue }
            if i < lastFlush {
                apply(&image, offset, data)
            } else {
                pending.append((offset, data))
            }
        }
        let keep: (Int) -> Bool
        switch point.variant {
        case .pendingKept, .torn512, .torn4K: keep = { _ in true }
        case .pendingDropped: keep = { _ in false }
        case .pendingReordered, .garbage:
            let mask = (0..<pending.count).map { _ in Bool.random(using: &rng) }
            keep = { mask[$0] }
        }
        for (i, write) in pending.enumerated() where keep(i) { apply(&image, write.0, write.1) }

        guard point.cut < log.count, case .write(let offset, let data) = log[point.cut] else { return image }
        switch point.variant {
        case .torn512, .torn4K:
            let unit = point.variant == .torn512 ? 512 : 4096
            let units = (data.count + unit - 1) / unit
            let landed = Int.random(in: 0...max(0, units - 1), using: &rng) * unit
            apply(&image, offset, Array(data[0..<min(landed, data.count)]))
        case .garbage:
            let sectors = data.count / sectorSize
            for s in 0..<sectors {
                let range = (s * sectorSize)..<((s + 1) * sectorSize)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: apply(&image, offset + UInt64(range.lowerBound), Array(data[range]))
                case 1: apply(&image, offset + UInt64(range.lowerBound), (0..<sectorSize).map { _ in UInt8.random(in: 0...255, using: &rng) })
                default: break
                }
            }
        default:
            break
        }
        return image
    }

    private func apply(_ image: inout [UInt8], _ offset: UInt64, _ data: [UInt8]) {
        guard !data.isEmpty else { return }
        image.replaceSubrange(Int(offset)..<(Int(offset) + data.count), with: data)
    }
}
