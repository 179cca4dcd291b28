// The scheduler against what users of gateway software report (Telegraf #11782/#12021, ThingsBoard
// gateway #2065/#2132/#905/#474, EdgeX device-modbus #685): one dead device never delays or discards
// the others, a failed read is recorded as a failure (never the last value again), no fault stops
// polling for good, and every error names its device, address and register.

import EdgelogCore
import EdgelogHAL
import EdgelogIngress
import EdgelogSensors
import EdgelogStore
import EdgelogTestKit
import Glibc
import Testing

@Suite("Ingress scheduler", .serialized)
struct SchedulerTests {
    @Test("a device that times out on one bus neither delays nor discards the readings of another bus")
    func offlineDeviceDoesNotDelayOthers() throws {
        let rig = try IngressRig()
        let dead = ScriptedSensor("/dev/i2c-9 0x40", steps: [.fail(.timeout)], delayUs: 200_000)
        let bus = SimulatedI2CBus(path: "sim-b")
        bus.attach(RegisterDevice(registers: [0xD0: 0x60]), at: 0x76)
        let healthy = ScriptedSensor("sim-b", steps: [.value(1)])
        let records = try rig.run([
            SourceSpec(name: "dead", kind: .polled(dead, periodNs: 20_000_000), bus: "a", backoff: Backoff(baseNs: 50_000_000, maxNs: 400_000_000)),
            SourceSpec(name: "alive", kind: .polled(healthy, periodNs: 20_000_000), bus: "b"),
        ], seconds: 1.2)
        let alive = records.filter { $0.source == "alive" && $0.typeName == "data" }
        // 60 polls are due; sharing a thread with the dead source would allow about 6. The margin is
        // for a machine loaded by other tests (polls that could not start in time are skipped).
        #expect(alive.count >= 30, "the healthy source kept its period: \(alive.count) readings in 1.2 s at 20 ms")
        // Its seq has no holes and nothing of it was dropped or faulted (a loaded machine may add
        // poll_overrun records, which take their place in the seq).
        let aliveAll = records.filter { $0.source == "alive" }
        #expect(aliveAll.map(\.seq) == Array(1...UInt64(aliveAll.count)))
        #expect(aliveAll.allSatisfy { $0.typeName == "data" || $0.typeName == "poll_overrun" })
        let all = records.filter { $0.source == "dead" }
        #expect(!all.contains { $0.typeName == "data" }, "a failed read is a fault record, never a value")
        // Its 200 ms reads overran its 20 ms period: that is recorded too (at stop at the latest).
        #expect(all.contains { $0.typeName == "poll_overrun" })
        let dead_ = all.filter { $0.typeName == "source_fault" }
        #expect(!dead_.isEmpty)
        let first = fields(dead_[0].payload)
        #expect(first["error"]?.text == "timeout" && first["device"]?.text == "/dev/i2c-9" && first["address"]?.text == "0x40"
                && first["register"]?.text == "register 0x00" && first["errno"]?.int == 110 && first["failures"]?.int == 1)
        // Backoff: far fewer attempts than polls, and the count of failures in a row climbs.
        #expect(dead.reads < 10, "\(dead.reads) attempts")
        #expect(dead_.map { fields($0.payload)["failures"]?.int ?? 0 } == Array(1...Int64(dead_.count)))
    }

    @Test("failures, then recovery: fault records in the source's own sequence, then a recovered record, then values again")
    func failureThenRecovery() throws {
        let rig = try IngressRig()
        let flaky = ScriptedSensor("dev", steps: [.value(1), .fail(.nack), .fail(.io), .value(2), .value(3)])
        let records = try rig.run([
            SourceSpec(name: "flaky", kind: .polled(flaky, periodNs: 5_000_000), bus: "x", backoff: Backoff(baseNs: 1_000_000, maxNs: 2_000_000)),
        ], seconds: 0.3)
        let all = records.filter { $0.source == "flaky" }
        #expect(all.map(\.seq) == Array(1...UInt64(all.count)), "faults and recoveries take their place in the source's seq")
        // Late polls on a loaded machine are recorded as poll_overrun; the order of the rest is the point.
        let mine = all.filter { $0.typeName != "poll_overrun" }
        #expect(Array(mine.prefix(5)).map(\.typeName) == ["data", "source_fault", "source_fault", "source_recovered", "data"])
        #expect(fields(mine[3].payload)["failures"]?.int == 2)
        #expect(fields(mine[4].payload)["value"]?.int == 2, "the first value after recovery is a new reading")
        #expect(flaky.starts >= 3, "a device that failed is set up again before its next read")
    }

    @Test("no fault stops polling for good: a device dead for many attempts is still retried and recovers")
    func neverGivesUp() throws {
        let rig = try IngressRig()
        let steps: [ScriptedSensor.Step] = Array(repeating: .fail(.vanished), count: 12) + [.value(7)]
        let sensor = ScriptedSensor("dev", steps: steps)
        let records = try rig.run([
            SourceSpec(name: "late", kind: .polled(sensor, periodNs: 2_000_000), bus: "x", backoff: Backoff(baseNs: 1_000_000, maxNs: 8_000_000)),
        ], seconds: 0.6)
        let mine = records.filter { $0.source == "late" && $0.typeName != "poll_overrun" }
        #expect(mine.filter { $0.typeName == "source_fault" }.count == 12)
        #expect(mine.contains { $0.typeName == "source_recovered" } && mine.last?.typeName == "data")
    }

    @Test("a real driver over a bus whose device goes away and comes back: BME280 readings, faults, recovery")
    func driverOverVanishingDevice() throws {
        let rig = try IngressRig()
        let bus = SimulatedI2CBus(path: "sim-i2c")
        let image = RegisterDevice(registers: [0xD0: 0x60])
        image.load(0x88, [0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC, 0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B, 0x27, 0x0B, 0x8C, 0x00, 0xF9, 0xFF, 0x8C, 0x3C, 0xF8, 0xC6, 0x70, 0x17, 0x00, 0x4B])
        image.load(0xE1, [0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E])
        image.load(0xF7, [0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x71, 0x61])
        bus.attach(image, at: 0x76)
        let sensor = try BME280(bus: bus, address: 0x76)
        rig.engine.start([SourceSpec(name: "env", kind: .polled(sensor, periodNs: 10_000_000), bus: "i2c", backoff: Backoff(baseNs: 5_000_000, maxNs: 20_000_000))])
        usleep(200_000)
        bus.detach(0x76)
        usleep(300_000)
        bus.attach(image, at: 0x76)
        usleep(400_000)
        try rig.engine.stop()
        try rig.pipeline.close()
        // Late polls on a loaded machine are recorded too; they are not what this test is about.
        let mine = try exported(rig.device).filter { $0.source == "env" }.map { RecordType.exportName($0.type) }.filter { $0 != "poll_overrun" }
        let firstFault = try #require(mine.firstIndex(of: "source_fault"))
        let recovered = try #require(mine.firstIndex(of: "source_recovered"))
        #expect(firstFault > 3 && recovered > firstFault && mine.last == "data")
        #expect(mine[..<firstFault].allSatisfy { $0 == "data" })
        #expect(mine[firstFault..<recovered].allSatisfy { $0 == "source_fault" })
        let payloads = try exported(rig.device).filter { $0.source == "env" && $0.type == 1 }.map(\.payload)
        #expect(payloads.allSatisfy { $0.hasPrefix("{\"temperature_c\":25.08,") })
    }
}
