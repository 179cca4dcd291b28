// The stamping queue's overload policies, driven directly: nothing degrades without a record.

import EdgelogCore
import EdgelogIngress
import EdgelogLinux
import EdgelogStore
import EdgelogTimebase
import Testing

@Suite("Ingress queue policies")
struct QueuePolicyTests {
    func makeQueue() -> IngressQueue { IngressQueue(timebase: Timebase(source: LinuxTimeSource(), config: TimebaseConfig())) }

    func drain(_ queue: IngressQueue) -> [QueuedRecord] {
        var out: [QueuedRecord] = []
        while let r = queue.take(timeoutNs: 0) { out.append(r) }
        return out
    }

    @Test("drop: readings that find the queue full are counted, and the count is recorded before the next reading")
    func dropPolicy() {
        let queue = makeQueue()
        let s = queue.register(name: "a", policy: .drop, limits: QueueLimits(capacity: 8))
        var outcomes: [OfferOutcome] = []
        for i in 0..<12 { outcomes.append(queue.offer(s, payload: Array("{\"i\":\(i)}".utf8), nowNs: Int64(i) * 1_000_000)) }
        #expect(outcomes.filter { $0 == .queued }.count == 8)
        #expect(outcomes.filter { $0 == .dropped }.count == 4)
        #expect(drain(queue).count == 8)
        #expect(queue.offer(s, payload: Array("{\"i\":12}".utf8), nowNs: 20_000_000) == .queued)
        let after = drain(queue).filter { $0.source == "a" }
        #expect(after.map(\.type) == [.ingressDrop, .data])
        let note = fields(String(decoding: after[0].payload, as: UTF8.self))
        #expect(note["drop_cnt"]?.int == 4 && note["reason_code"]?.text == "queue_full" && note["window_ms"]?.int == 3)
        #expect(queue.counters(s).dropped == 4)
    }

    @Test("decimate: above the high-water mark one reading in `factor` is kept, and the window is declared at its start and end")
    func decimatePolicy() {
        let queue = makeQueue()
        let s = queue.register(name: "d", policy: .decimate(factor: 3), limits: QueueLimits(capacity: 8))
        for i in 0..<6 { #expect(queue.offer(s, payload: [0x7B, 0x7D], nowNs: Int64(i)) == .queued) }
        // At 6 queued (the high-water mark) decimation starts: kept, discarded, discarded, kept.
        var outcomes: [OfferOutcome] = []
        for i in 6..<10 { outcomes.append(queue.offer(s, payload: [0x7B, 0x7D], nowNs: Int64(i))) }
        #expect(outcomes == [.queued, .decimated, .decimated, .queued])
        let first = drain(queue)
        #expect(first.filter { $0.type == .decimation }.count == 1)
        let start = fields(String(decoding: first.first { $0.type == .decimation }!.payload, as: UTF8.self))
        #expect(start["state"]?.text == "start" && start["factor"]?.int == 3)
        _ = queue.offer(s, payload: [0x7B, 0x7D], nowNs: 1_000_000_000)
        let second = drain(queue)
        #expect(second.map(\.type) == [.decimation, .data])
        let end = fields(String(decoding: second[0].payload, as: UTF8.self))
        #expect(end["state"]?.text == "end" && end["kept"]?.int == 2 && end["discarded"]?.int == 2)
        #expect(queue.counters(s).decimated == 2)
    }

    @Test("backpressure: polls are held back above the high-water mark with bp_state on, and resume below the low one with bp_state off")
    func backpressurePolicy() {
        let queue = makeQueue()
        let s = queue.register(name: "b", policy: .backpressure, limits: QueueLimits(capacity: 8))
        for i in 0..<6 {
            #expect(queue.admit(s, nowNs: Int64(i)))
            queue.offer(s, payload: [0x7B, 0x7D], nowNs: Int64(i))
        }
        #expect(!queue.admit(s, nowNs: 10))
        #expect(!queue.admit(s, nowNs: 11))
        let held = drain(queue)
        let on = held.filter { $0.type == .backpressure }
        #expect(on.count == 1 && fields(String(decoding: on[0].payload, as: UTF8.self))["bp_state"]?.text == "on")
        #expect(queue.admit(s, nowNs: 2_000_000_000))
        let resumed = drain(queue)
        #expect(resumed.count == 1 && resumed[0].type == .backpressure)
        let off = fields(String(decoding: resumed[0].payload, as: UTF8.self))
        #expect(off["bp_state"]?.text == "off" && off["skipped_polls"]?.int == 2)
        #expect(queue.counters(s).skippedPolls == 2)
    }

    @Test("the queue's order is the order of ingress: capture times never go back across sources")
    func orderIsIngressOrder() {
        let queue = makeQueue()
        let a = queue.register(name: "a", policy: .drop, limits: QueueLimits(capacity: 1000))
        let b = queue.register(name: "b", policy: .drop, limits: QueueLimits(capacity: 1000))
        for i in 0..<500 { queue.offer(i % 3 == 0 ? a : b, payload: [0x7B, 0x7D], nowNs: Int64(i)) }
        let records = drain(queue)
        #expect(records.count >= 500)
        for (x, y) in zip(records, records.dropFirst()) { #expect(x.time.bootNs <= y.time.bootNs) }
    }
}
