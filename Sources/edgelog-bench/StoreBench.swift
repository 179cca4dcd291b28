// Contender a: the edgelog evidence store. Records are encoded into a SegmentBuilder until the next
// one does not fit, then the segment is committed (segment write + metadata write + one fdatasync),
// as StoreDriver does, without its bookkeeping dictionaries.

import EdgelogLinux
import EdgelogSeal
import EdgelogStore
import EdgelogTimebase
import Glibc

/// Opens a freshly formatted file-backed store of `size` bytes.
func freshStore(path: String, size: UInt64, segmentSize: Int,
                identity: SealIdentity = .unsigned()) -> (FileBlockDevice, EvidenceStore) {
    let device: FileBlockDevice
    do {
        try FileBlockDevice.createFile(path: path, size: size)
        device = try FileBlockDevice(path: path)
    } catch {
        die("cannot create \(path): \(error)")
    }
    do {
        try EvidenceStore.format(device: device, sectorSize: nil, segmentSize: segmentSize,
                                 storeUUID: SystemClock.randomBytes(16), wallNs: SystemClock.now().wallNs, force: true)
        let (store, _) = try EvidenceStore.open(device: device, policy: .pause, identity: identity, clock: SystemClock.now)
        return (device, store)
    } catch {
        die("cannot format/open \(path): \(error)")
    }
}

final class StoreContender: Contender {
    let name: String
    let device: FileBlockDevice
    let store: EvidenceStore
    var sequencer: Sequencer
    let builder: SegmentBuilder
    let bytes = RecordBytes()
    /// Bytes of the largest (full) segment image written.
    private(set) var fullWriteLength = 0
    var note = ""

    /// Records of Shape that fill one segment: the batch size every contender uses.
    var recordsPerSegment: Int { builder.dataCapacity / Shape.recordLength }
    var direct: Bool { device.direct }
    var sectorSize: Int { store.metadata.geometry.sectorSize }

    /// With a timebase, every record's time comes from it (time flags, step detection, adjtimex
    /// sampling) instead of the two bare clock reads.
    let timebase: Timebase?
    private var before: [TimeRecord] = []

    init(path: String, name: String = "store", identity: SealIdentity = .unsigned(), timebase: Timebase? = nil) {
        self.name = name
        self.timebase = timebase
        (device, store) = freshStore(path: path, size: Shape.throughputStoreSize, segmentSize: Shape.segmentSize, identity: identity)
        sequencer = Sequencer(from: store.metadata)
        builder = SegmentBuilder(geometry: store.metadata.geometry)
    }

    func batch(_ range: Range<Int>, index: Int) -> UInt64 {
        let source = UnsafeRawBufferPointer(bytes.source)
        let payload = UnsafeRawBufferPointer(bytes.payload)
        for i in range {
            // The driver's batches are exactly what fits in a segment: fill, never overflow.
            guard builder.fits(sourceLength: source.count, payloadLength: payload.count) else {
                die("record \(i) does not fit in segment \(index + 1)")
            }
            let seq: UInt64, mono: UInt64
            do {
                (seq, mono) = try sequencer.next(for: Shape.source)
            } catch {
                die("sequencer: \(error)")
            }
            bytes.setNumber(i)
            let time: CaptureTime
            if let timebase {
                time = timebase.capture(before: &before)
                if !before.isEmpty { before.removeAll(keepingCapacity: true) }
            } else {
                time = SystemClock.now()
            }
            guard builder.append(type: .data, source: source, seq: seq, mono: mono, time: time, payload: payload) else {
                die("append refused a record that fits")
            }
        }
        if range.count == recordsPerSegment && builder.fits(sourceLength: source.count, payloadLength: payload.count) {
            die("a full batch left room in the segment")
        }
        fullWriteLength = max(fullWriteLength, store.metadata.geometry.writeLength(payloadLength: builder.payloadLength))
        sequencer.reserveEvidence(for: builder, count: 4 + builder.pendingDrops.count)
        let t0 = monoNs()
        do {
            _ = try store.commit(builder)
        } catch {
            die("store commit failed: \(error)")
        }
        let t = monoNs() &- t0
        builder.reset()
        return t
    }

    func finish(records: Int) {
        let committed = store.metadata.recordsTotal
        if committed != UInt64(records) { die("store reports \(committed) records committed, expected \(records)") }
        do { try store.close() } catch { die("store close failed: \(error)") }
        note = "\(recordsPerSegment) records/segment; per commit: segment write of \(fullWriteLength) B "
            + "+ metadata write of \(Layout.metadataSlotSize) B + fdatasync"
    }
}
