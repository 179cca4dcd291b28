// Fixed places and sizes of the partition (docs/FORMAT.md section 1).

import EdgelogCore

public enum Layout {
    public static let formatVersion: UInt16 = 5
    public static let metadataSlotSize = 4096
    public static let metadataSlotOffsets: [UInt64] = [0, 4096]
    public static let ringOffset: UInt64 = 8192
    public static let minRingSlots = 4
    public static let minSegmentSize = 4096
    public static let maxSegmentSize = 16 << 20
    public static let segmentHeaderSize = 128
    public static let commitMarkerSize = 432
    /// Offset of marker_crc inside the commit marker (it covers the bytes before it).
    public static let markerCRCOffset = 428
    /// Ids and generations stay below this (FORMAT.md section 2), so no `+ 1` on them can overflow.
    public static let idLimit: UInt64 = 1 << 62
    public static let recordHeadSize = 60
    public static let recordFixedSize = recordHeadSize + 8 // head + crc + end marker
    public static let maxBadBlocks = 64
    public static let maxSources = 32

    public static let metadataMagic = magic64("EDGELOGM")
    public static let segmentMagic = magic64("EDGELOGS")
    public static let markerMagic = magic64("EDGELOGC")
    public static let recordEndMagic = magic32("RECE")

    public static func slotName(_ index: Int) -> String { index == 0 ? "A" : "B" }
}

/// The shape of one store, fixed at format time and repeated in both metadata slots.
public struct Geometry: Equatable, Sendable {
    public var storeSize: UInt64
    public var sectorSize: Int
    public var segmentSize: Int
    public var ringSlots: Int

    public var ringOffset: UInt64 { Layout.ringOffset }
    /// Bytes of records one segment can hold.
    public var payloadCapacity: Int { segmentSize - Layout.segmentHeaderSize - Layout.commitMarkerSize }

    public func slotOffset(_ slot: Int) -> UInt64 { ringOffset + UInt64(slot) * UInt64(segmentSize) }

    /// Bytes actually written for a segment holding `payloadLength` bytes of records.
    public func writeLength(payloadLength: Int) -> Int {
        let raw = Layout.segmentHeaderSize + payloadLength + Layout.commitMarkerSize
        return (raw + sectorSize - 1) / sectorSize * sectorSize
    }

    /// The geometry a device of `storeSize` bytes gets, or why it cannot hold a store.
    public static func make(storeSize: UInt64, sectorSize: Int, segmentSize: Int) throws(StoreError) -> Geometry {
        guard sectorSize == 512 || sectorSize == 4096 else {
            throw .invalidArgument("sector size must be 512 or 4096, not \(sectorSize)")
        }
        guard segmentSize >= Layout.minSegmentSize, segmentSize <= Layout.maxSegmentSize, segmentSize % 4096 == 0 else {
            throw .invalidArgument("segment size must be a multiple of 4096 from \(Layout.minSegmentSize) to \(Layout.maxSegmentSize), not \(segmentSize)")
        }
        let ring = storeSize > Layout.ringOffset ? (storeSize - Layout.ringOffset) / UInt64(segmentSize) : 0
        guard ring >= UInt64(Layout.minRingSlots) else {
            let need = Layout.ringOffset + UInt64(Layout.minRingSlots * segmentSize)
            throw .invalidArgument("\(storeSize) bytes hold fewer than \(Layout.minRingSlots) segments of \(segmentSize) bytes; need at least \(need) bytes")
        }
        guard ring <= UInt64(UInt32.max) else { throw .invalidArgument("too many segments: use a larger segment size") }
        return Geometry(storeSize: storeSize, sectorSize: sectorSize, segmentSize: segmentSize, ringSlots: Int(ring))
    }
}
