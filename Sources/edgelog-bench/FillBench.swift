// The producer side alone: records appended into a segment buffer (seq, mono, both clocks, CRC),
// no commit. Tells CPU per record apart from device time in the throughput figures.

import EdgelogLinux
import EdgelogStore

enum FillBench {
    static func run(records: Int) -> (nsPerRecord: Double, clockNsPerRecord: Double) {
        guard let geometry = try? Geometry.make(storeSize: 1 << 20, sectorSize: 512, segmentSize: Shape.segmentSize) else { return (0, 0) }
        let builder = SegmentBuilder(geometry: geometry)
        var meta = Metadata(storeUUID: Array(repeating: 1, count: 16), generation: 0, geometry: geometry)
        meta.monoHWM = 0
        var sequencer = Sequencer(from: meta)
        let bytes = RecordBytes()
        var sink: UInt64 = 0
        let t0 = monoNs()
        let source = UnsafeRawBufferPointer(bytes.source)
        let payload = UnsafeRawBufferPointer(bytes.payload)
        for _ in 0..<records {
            if !builder.fits(sourceLength: source.count, payloadLength: payload.count) { builder.reset() }
            guard let next = try? sequencer.next(for: Shape.source) else { break }
            let time: CaptureTime = SystemClock.now()
            _ = builder.append(type: RecordType.data, source: source, seq: next.seq, mono: next.mono, time: time, payload: payload)
            sink &+= next.seq
        }
        let fill = Double(monoNs() &- t0) / Double(records)
        let t1 = monoNs()
        for _ in 0..<records { sink &+= UInt64(truncatingIfNeeded: SystemClock.now().bootNs) }
        let clock = Double(monoNs() &- t1) / Double(records)
        if sink == 42 { print("") }
        return (fill, clock)
    }
}
