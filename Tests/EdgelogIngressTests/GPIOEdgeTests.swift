// GPIO edges as an event source: every edge a reading with the kernel's timestamp and a running
// count; a line that fails is recorded, requested again, and goes on.

import EdgelogHAL
import EdgelogIngress
import EdgelogStore
import EdgelogSensors
import EdgelogTestKit
import Glibc
import Testing

@Suite("GPIO edge source", .serialized)
struct GPIOEdgeTests {
    @Test("edges become readings with kernel timestamps and a count; a failing line is faulted, requested again and recovers")
    func edges() throws {
        let rig = try IngressRig()
        let line = SimulatedGPIOInput(name: "PULSE", sleep: { usleep(UInt32($0) * 1000) })
        var opens = 0
        let source = GPIOEdgeSource(location: "sim line PULSE", edges: .both) { () throws(HardwareError) -> GPIOInput in
            opens += 1
            return line
        }
        rig.engine.start([SourceSpec(name: "pulse", kind: .event(source), bus: "gpio", backoff: Backoff(baseNs: 5_000_000, maxNs: 10_000_000))])
        for i in 0..<4 { line.inject(rising: i % 2 == 0, timestampNs: 1_000_000_000 + UInt64(i) * 1000) }
        usleep(300_000)
        line.fail(with: .vanished)
        usleep(300_000)
        line.fail(with: nil)
        line.inject(rising: true, timestampNs: 2_000_000_000)
        usleep(500_000)
        try rig.engine.stop()
        try rig.pipeline.close()
        let mine = try exported(rig.device).filter { $0.source == "pulse" }
        let data = mine.filter { $0.type == 1 }.map { fields($0.payload) }
        #expect(data.count == 5)
        #expect(data.map { $0["count"]?.int ?? 0 } == [1, 2, 3, 4, 5])
        #expect(data.prefix(4).map { $0["edge"]?.text ?? "" } == ["rising", "falling", "rising", "falling"])
        #expect(data.first?["kernel_ns"]?.int == 1_000_000_000 && data.last?["kernel_ns"]?.int == 2_000_000_000)
        let types = mine.map { RecordType.exportName($0.type) }
        #expect(types.contains("source_fault") && types.contains("source_recovered"))
        #expect(opens >= 2, "the line is requested again after the failure")
    }
}
